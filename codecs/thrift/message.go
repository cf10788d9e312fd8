package thrift

import (
	"encoding/binary"
	"math"
	"unicode/utf8"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// Message types, as on the wire.
const (
	msgCall      = 1
	msgReply     = 2
	msgException = 3
	msgOneway    = 4
)

var messageTypeNames = [...]string{msgCall: "call", msgReply: "reply", msgException: "exception", msgOneway: "oneway"}

const (
	binaryVersionByte = 0x80 // first byte of a strict binary message: version 0x8001
	compactProtocolID = 0x82
	compactVersion    = 1
)

// msgHeader is where the parts of a message start, as offsets into the message bytes.
type msgHeader struct {
	protocol protocol
	strict   bool // binary only: the 0x8001 version word, not the old name-length-first form
	typ      uint8
	nameOff  int
	nameLen  int
	seqOff   int
	seqLen   int // 4 in binary; the varint's length in compact
	seq      uint32
	bodyOff  int
}

// window is the bytes a parser may read. When complete, the message must fit in b; when
// not, b is a prefix of a stream and the message may not extend past limit.
type window struct {
	b        []byte
	complete bool
	limit    int
}

// need checks that n bytes from off are present: errShort if more may come, ErrFrameTooLarge
// if they would pass the limit, ErrMalformed if the message is complete and they are not.
func (w window) need(off int, n int64) error {
	end := int64(off) + n
	if end <= int64(len(w.b)) {
		return nil
	}
	if w.complete {
		return malformed("message truncated: %d bytes needed, %d present", end, len(w.b))
	}
	if end > int64(w.limit) {
		return tooLarge(end, int64(w.limit))
	}
	return errShort
}

// uvarint reads an unsigned LEB128 varint of at most maxLen bytes at off.
func (w window) uvarint(off, maxLen int) (v uint64, n int, err error) {
	for i := 0; i < maxLen; i++ {
		if err := w.need(off+i, 1); err != nil {
			return 0, 0, err
		}
		c := w.b[off+i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1, nil
		}
	}
	return 0, 0, malformed("varint longer than %d bytes", maxLen)
}

// variant is the form of binary messages a stream must use.
type variant uint8

const (
	variantAny variant = iota
	variantStrict
	variantNonStrict
)

// parseHeader parses the message header (name, type, seqid) at the start of b. want is the
// protocol the stream must use, or protocolAuto; v the binary variant.
func parseHeader(b []byte, want protocol, v variant, complete bool, limit int) (h msgHeader, err error) {
	w := window{b: b, complete: complete, limit: limit}
	if err := w.need(0, 1); err != nil {
		return h, err
	}
	switch b0 := b[0]; {
	case b0 == binaryVersionByte:
		h.protocol, h.strict = protocolBinary, true
		if want == protocolCompact {
			return h, malformed("binary message on a compact stream")
		}
		if v == variantNonStrict {
			return h, malformed("strict binary message on a non-strict binary stream")
		}
		if err := w.need(0, 4); err != nil {
			return h, err
		}
		if b[1] != 0x01 {
			return h, malformed("binary protocol version %#04x, want 0x8001", binary.BigEndian.Uint16(b))
		}
		h.typ = b[3]
		if err := checkType(h.typ); err != nil {
			return h, err
		}
		if err := w.need(4, 4); err != nil {
			return h, err
		}
		n := int32(binary.BigEndian.Uint32(b[4:]))
		if n < 0 {
			return h, malformed("negative message name length %d", n)
		}
		if err := w.need(8, int64(n)+4); err != nil {
			return h, err
		}
		h.nameOff, h.nameLen = 8, int(n)
		h.seqOff, h.seqLen = 8+int(n), 4
		h.seq = binary.BigEndian.Uint32(b[h.seqOff:])
		h.bodyOff = h.seqOff + 4
	case b0 == compactProtocolID:
		h.protocol = protocolCompact
		if want == protocolBinary {
			return h, malformed("compact message on a binary stream")
		}
		if err := w.need(0, 2); err != nil {
			return h, err
		}
		if b[1]&0x1f != compactVersion {
			return h, malformed("compact protocol version %d, want %d", b[1]&0x1f, compactVersion)
		}
		h.typ = b[1] >> 5
		if err := checkType(h.typ); err != nil {
			return h, err
		}
		seq, n, err := w.uvarint(2, 5)
		if err != nil {
			return h, err
		}
		if seq > math.MaxUint32 {
			return h, malformed("seqid varint %d does not fit 32 bits", seq)
		}
		h.seq, h.seqOff, h.seqLen = uint32(seq), 2, n
		nameLen, m, err := w.uvarint(2+n, 5)
		if err != nil {
			return h, err
		}
		if nameLen > math.MaxInt32 {
			return h, malformed("message name length %d", nameLen)
		}
		h.nameOff, h.nameLen = 2+n+m, int(nameLen)
		if err := w.need(h.nameOff, int64(nameLen)); err != nil {
			return h, err
		}
		h.bodyOff = h.nameOff + h.nameLen
	case b0 < 0x80:
		// Old binary: name length (a non-negative i32), name, type byte, seqid.
		h.protocol = protocolBinary
		if want == protocolCompact {
			return h, malformed("binary message on a compact stream")
		}
		if v == variantStrict {
			return h, malformed("non-strict binary message (or another transport) on a strict binary stream")
		}
		if err := w.need(0, 4); err != nil {
			return h, err
		}
		n := int(binary.BigEndian.Uint32(b))
		if err := w.need(4, int64(n)+5); err != nil {
			return h, err
		}
		h.nameOff, h.nameLen = 4, n
		if err := checkNonStrictName(b[4 : 4+n]); err != nil {
			return h, err
		}
		h.typ = b[4+n]
		if err := checkType(h.typ); err != nil {
			return h, err
		}
		h.seqOff, h.seqLen = 5+n, 4
		h.seq = binary.BigEndian.Uint32(b[h.seqOff:])
		h.bodyOff = h.seqOff + 4
	default:
		return h, malformed("first byte %#02x starts no binary or compact message", b0)
	}
	return h, nil
}

// checkNonStrictName rejects old-binary names that would make transport detection ambiguous.
// Unframed non-strict messages are told apart from framed ones by the first name byte (see
// detectTransport), and an error reply names the bare method after a "Service:" prefix, so
// no byte of the name may be a control byte and the name must be UTF-8: then neither the
// name nor any suffix after ':' starts with 0x00, 0x0f or a 0x80/0x82 protocol byte.
func checkNonStrictName(name []byte) error {
	for _, c := range name {
		if c < 0x20 {
			return malformed("non-strict binary message name has control byte %#02x", c)
		}
	}
	if !utf8.Valid(name) {
		return malformed("non-strict binary message name is not UTF-8")
	}
	return nil
}

func checkType(t uint8) error {
	if t < msgCall || t > msgOneway {
		return malformed("message type %d", t)
	}
	return nil
}

// parseMessage parses the complete message f.msg and sets the frame's kind and id.
func (f *frame) parseMessage(want protocol, v variant) error {
	h, err := parseHeader(f.msg, want, v, true, len(f.msg))
	if err != nil {
		return err
	}
	f.hdr = h
	return f.setKind()
}

// setKind derives kind, id and protocol from f.hdr.
func (f *frame) setKind() error {
	f.protocol, f.seq = f.hdr.protocol, f.hdr.seq
	switch f.hdr.typ {
	case msgCall:
		f.kind = codecs.KindRequest
	case msgOneway:
		f.kind = codecs.KindOneway
	case msgException:
		f.kind = codecs.KindErrorResponse
	default:
		// A result struct holds the return value as field 0 (absent for void) or one declared
		// exception under its own, non-zero, id.
		id, stop, err := firstField(f.msg, f.hdr.bodyOff, f.protocol)
		if err != nil {
			return err
		}
		f.kind = codecs.KindResponse
		if !stop && id != 0 {
			f.kind = codecs.KindErrorResponse
		}
	}
	return nil
}

// firstField reads the header of the first field of the struct at off in a complete message.
func firstField(b []byte, off int, p protocol) (id int16, stop bool, err error) {
	w := window{b: b, complete: true, limit: len(b)}
	if err := w.need(off, 1); err != nil {
		return 0, false, malformed("reply has no result struct")
	}
	if b[off] == 0 {
		return 0, true, nil
	}
	if p == protocolBinary {
		if err := w.need(off, 3); err != nil {
			return 0, false, err
		}
		return int16(binary.BigEndian.Uint16(b[off+1:])), false, nil
	}
	// Compact: a non-zero high nibble is the delta from the previous id, 0 at the start.
	if d := b[off] >> 4; d != 0 {
		return int16(d), false, nil
	}
	v, _, err := w.uvarint(off+1, 3)
	if err != nil {
		return 0, false, err
	}
	return int16(unzigzag(v)), false, nil
}

func unzigzag(v uint64) int64 { return int64(v>>1) ^ -int64(v&1) }

func zigzag32(v int32) uint32 { return uint32(v<<1) ^ uint32(v>>31) }

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}
