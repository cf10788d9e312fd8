package thrift

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"unsafe"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// frame is one decoded Thrift message with its transport framing.
//
// Attribute strings are built without copying, over raw and msg. That is safe because the
// bytes they cover are never written after decode: SetRequestID patches only seqid bytes in
// place, and whenever the frame's length changes it builds a new buffer and leaves the old
// one, still referenced by earlier strings, untouched.
type frame struct {
	raw       []byte // the encoded frame as it stands
	msg       []byte // the message: a suffix of raw, or the inflated payload of a zlib frame
	hdr       msgHeader
	kind      codecs.Kind
	transport transport
	protocol  protocol
	seq       uint32

	// THeader frames only: offsets into raw of the key/value info sections, the info
	// sections of unknown types (up to blockEnd) and the payload (from blockEnd).
	infoStart, infoEnd, tailStart, blockEnd int
	zlib                                    int    // number of zlib transforms on the payload
	origRaw                                 []byte // zlib frames: raw as decoded
	origSeq                                 uint32 // zlib frames: the seqid in origRaw
	muts                                    []mutation
}

func (f *frame) Kind() codecs.Kind { return f.kind }

func (f *frame) RequestID() uint64 { return uint64(f.seq) }

func (f *frame) Size() int { return len(f.raw) }

// str returns raw[off:off+n] as a string without copying.
func (f *frame) str(off, n int) string {
	if n == 0 {
		return ""
	}
	return unsafe.String(&f.raw[off], n)
}

// name returns the message name as sent, without copying.
func (f *frame) name() string {
	if f.hdr.nameLen == 0 {
		return ""
	}
	return unsafe.String(&f.msg[f.hdr.nameOff], f.hdr.nameLen)
}

// method is the name without a TMultiplexedProtocol "Service:" prefix.
func (f *frame) method() string {
	n := f.name()
	if i := strings.IndexByte(n, ':'); i >= 0 {
		return n[i+1:]
	}
	return n
}

func (f *frame) Attribute(name string) (string, bool) {
	switch name {
	case "method":
		return f.method(), true
	case "service":
		n := f.name()
		if i := strings.IndexByte(n, ':'); i >= 0 {
			return n[:i], true
		}
		return "", false
	case "message_type":
		return messageTypeNames[f.hdr.typ], true
	}
	return f.header(name)
}

func (f *frame) RangeHeaders(fn func(name, value string) bool) { f.rangeRaw(fn) }

func (f *frame) SetHeader(name, value string) error { return f.mutate(name, value, false) }

func (f *frame) DelHeader(name string) error { return f.mutate(name, "", true) }

func (f *frame) AppendTo(dst []byte) ([]byte, error) {
	if len(f.muts) > 0 {
		return f.appendMutated(dst)
	}
	return append(dst, f.raw...), nil
}

func (f *frame) SetRequestID(id uint64) error {
	if id > math.MaxUint32 {
		return fmt.Errorf("thrift: request id %d does not fit a 32-bit seqid: %w", id, codecs.ErrIDRange)
	}
	v := uint32(id)
	if f.zlib > 0 {
		f.setZlibSeq(v)
		return nil
	}
	if f.protocol == protocolBinary {
		binary.BigEndian.PutUint32(f.msg[f.hdr.seqOff:], v)
	} else {
		msgOff := len(f.raw) - len(f.msg)
		if raw, moved := setCompactSeq(f.raw, msgOff, &f.hdr, v); moved {
			if f.transport != transportUnframed {
				binary.BigEndian.PutUint32(raw, uint32(len(raw)-4))
			}
			f.raw, f.msg = raw, raw[msgOff:]
		}
	}
	if f.transport == transportHeader {
		binary.BigEndian.PutUint32(f.raw[headerSeqOff:], v)
	}
	f.seq = v
	return nil
}

// setCompactSeq writes v as the compact seqid of the message at msgOff in buf. A varint of
// the same length is patched in place and buf returned; otherwise the bytes are spliced into
// a new buffer (moved), buf is left as it was, and h's offsets are shifted.
func setCompactSeq(buf []byte, msgOff int, h *msgHeader, v uint32) (_ []byte, moved bool) {
	var tmp [5]byte
	enc := binary.AppendUvarint(tmp[:0], uint64(v))
	at := msgOff + h.seqOff
	if len(enc) == h.seqLen {
		copy(buf[at:], enc)
		return buf, false
	}
	nb := make([]byte, 0, len(buf)+len(enc)-h.seqLen)
	nb = append(nb, buf[:at]...)
	nb = append(nb, enc...)
	nb = append(nb, buf[at+h.seqLen:]...)
	delta := len(enc) - h.seqLen
	h.seqLen = len(enc)
	h.nameOff += delta
	h.bodyOff += delta
	return nb, true
}

// setZlibSeq is SetRequestID's slow path for a zlib-transformed THeader frame: patch the
// inflated payload, deflate it again and rebuild the frame. The original bytes are restored
// when the original id comes back, so that a rewrite there and back is byte-exact.
func (f *frame) setZlibSeq(v uint32) {
	if f.protocol == protocolBinary {
		binary.BigEndian.PutUint32(f.msg[f.hdr.seqOff:], v)
	} else {
		f.msg, _ = setCompactSeq(f.msg, 0, &f.hdr, v)
	}
	f.seq = v
	if v == f.origSeq {
		f.raw = f.origRaw
		return
	}
	payload := f.msg
	for range f.zlib {
		payload = deflate(payload)
	}
	raw := make([]byte, 0, f.blockEnd+len(payload))
	raw = append(raw, f.origRaw[:f.blockEnd]...)
	raw = append(raw, payload...)
	binary.BigEndian.PutUint32(raw, uint32(len(raw)-4))
	binary.BigEndian.PutUint32(raw[headerSeqOff:], v)
	f.raw = raw
}
