package thrift

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"slices"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// THeader layout: length (4), magic 0x0FFF (2), flags (2), seq id (4), header size in 4-byte
// words (2), then the header block and the payload.
const (
	headerFixed      = 14
	headerSeqOff     = 8
	headerSizeOff    = 12
	maxHeaderBlock   = 0xffff * 4
	headerProtoBin   = 0
	headerProtoComp  = 2
	transformNone    = 0
	transformZlib    = 1
	infoKeyValue     = 1
	maxHeaderVarint  = 5 // header block varints are 32-bit
	headerMagicByte0 = 0x0f
	headerMagicByte1 = 0xff
)

// parseTHeader parses the THeader frame in f.raw: the header block, then the payload's
// message. want is the protocol the stream must use, or protocolAuto.
func (f *frame) parseTHeader(want protocol, v variant, maxFrame int) error {
	raw := f.raw
	if len(raw) < headerFixed {
		return malformed("THeader frame of %d bytes is too short", len(raw))
	}
	if raw[4] != headerMagicByte0 || raw[5] != headerMagicByte1 {
		return malformed("no THeader magic (%#04x): not a THeader frame", binary.BigEndian.Uint16(raw[4:]))
	}
	blockEnd := headerFixed + 4*int(binary.BigEndian.Uint16(raw[headerSizeOff:]))
	if blockEnd > len(raw) {
		return malformed("THeader header block ends at %d, past the %d-byte frame", blockEnd, len(raw))
	}
	w := window{b: raw[:blockEnd], complete: true, limit: blockEnd}
	p := headerFixed
	id, n, err := w.uvarint(p, maxHeaderVarint)
	if err != nil {
		return err
	}
	p += n
	switch id {
	case headerProtoBin:
		f.protocol = protocolBinary
	case headerProtoComp:
		f.protocol = protocolCompact
	default:
		return malformed("THeader protocol id %d", id)
	}
	if want != protocolAuto && want != f.protocol {
		return malformed("THeader frame of protocol %v on a %v stream", f.protocol, want)
	}
	count, n, err := w.uvarint(p, maxHeaderVarint)
	if err != nil {
		return err
	}
	p += n
	if count > uint64(blockEnd-p) {
		return malformed("THeader declares %d transforms in %d bytes", count, blockEnd-p)
	}
	for range count {
		t, n, err := w.uvarint(p, maxHeaderVarint)
		if err != nil {
			return err
		}
		p += n
		switch t {
		case transformNone:
		case transformZlib:
			f.zlib++
		default:
			return malformed("THeader transform %d is not supported", t)
		}
	}
	if err := f.parseInfo(w, p); err != nil {
		return err
	}
	f.blockEnd = blockEnd
	f.msg = raw[blockEnd:]
	if f.zlib > 0 {
		for range f.zlib {
			if f.msg, err = inflate(f.msg, maxFrame); err != nil {
				return err
			}
		}
		f.origRaw = raw
	}
	if err := f.parseMessage(f.protocol, v); err != nil {
		return err
	}
	f.origSeq = f.seq
	return nil
}

// parseInfo validates the info sections that start at p and records where the key/value
// sections end. Like the Thrift libraries, it stops at padding (type 0) or at the first type
// it does not know; unknown sections are kept verbatim for re-encoding.
func (f *frame) parseInfo(w window, p int) error {
	end := len(w.b)
	f.infoStart, f.infoEnd, f.tailStart = p, p, end
	for p < end {
		t, n, err := w.uvarint(p, maxHeaderVarint)
		if err != nil {
			return err
		}
		if t != infoKeyValue {
			if t != 0 {
				f.tailStart = p
			}
			return nil
		}
		p += n
		count, n, err := w.uvarint(p, maxHeaderVarint)
		if err != nil {
			return err
		}
		p += n
		if count > uint64(end-p)/2 {
			return malformed("THeader declares %d headers in %d bytes", count, end-p)
		}
		for range 2 * count {
			l, n, err := w.uvarint(p, maxHeaderVarint)
			if err != nil {
				return err
			}
			if l > uint64(end-p-n) {
				return malformed("THeader string of %d bytes overruns the header block", l)
			}
			p += n + int(l)
		}
		f.infoEnd = p
	}
	return nil
}

// rangeRaw calls fn with each info key/value in wire order until fn returns false. The
// strings point into f.raw.
func (f *frame) rangeRaw(fn func(k, v string) bool) {
	if f.transport != transportHeader {
		return
	}
	b := f.raw[:f.infoEnd]
	p := f.infoStart
	next := func() (string, bool) {
		l, n := readUvarint(b, p)
		if n == 0 || l > uint64(len(b)-p-n) {
			return "", false
		}
		s := f.str(p+n, int(l))
		p += n + int(l)
		return s, true
	}
	for p < len(b) {
		_, n := readUvarint(b, p) // the section type, KEYVALUE: checked at decode
		if n == 0 {
			return
		}
		p += n
		count, n := readUvarint(b, p)
		if n == 0 {
			return
		}
		p += n
		for ; count > 0; count-- {
			k, ok := next()
			if !ok {
				return
			}
			v, ok := next()
			if !ok || !fn(k, v) {
				return
			}
		}
	}
}

// readUvarint reads a header-block varint at p in bytes parseInfo validated; n is 0 if the
// bytes do not hold one.
func readUvarint(b []byte, p int) (v uint64, n int) {
	for i := 0; i < maxHeaderVarint && p+i < len(b); i++ {
		c := b[p+i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// header returns the value of the last info header called name.
func (f *frame) header(name string) (value string, ok bool) {
	f.rangeRaw(func(k, v string) bool {
		if k == name {
			value, ok = v, true
		}
		return true
	})
	return value, ok
}

// mutation is a recorded SetHeader (del false) or DelHeader.
type mutation struct {
	name, value string
	del         bool
	done        bool // written in the current encoding pass
}

func (f *frame) mutate(name, value string, del bool) error {
	if f.transport != transportHeader {
		return fmt.Errorf("thrift: %s frames cannot carry headers: %w", modeNames[f.transport][f.protocol], codecs.ErrHeadersUnsupported)
	}
	for i := range f.muts {
		if f.muts[i].name == name {
			f.muts[i].value, f.muts[i].del = value, del
			return nil
		}
	}
	f.muts = append(f.muts, mutation{name: name, value: value, del: del})
	return nil
}

// rangeMutated calls fn for each header as the mutations leave them: an original header
// that a SetHeader names keeps its place with the new value (once, if it was repeated),
// deleted ones are left out, and new ones follow in the order they were first set.
func (f *frame) rangeMutated(fn func(k, v string)) {
	for i := range f.muts {
		f.muts[i].done = false
	}
	f.rangeRaw(func(k, v string) bool {
		for i := range f.muts {
			if m := &f.muts[i]; m.name == k {
				if !m.del && !m.done {
					fn(k, m.value)
					m.done = true
				}
				return true
			}
		}
		fn(k, v)
		return true
	})
	for i := range f.muts {
		if m := &f.muts[i]; !m.del && !m.done {
			fn(m.name, m.value)
			m.done = true
		}
	}
}

// appendMutated appends the THeader frame with a new header block holding the mutated
// headers; the payload bytes are copied as they are.
func (f *frame) appendMutated(dst []byte) ([]byte, error) {
	raw := f.raw
	prefix := raw[headerFixed:f.infoStart] // protocol id and transforms
	tail := raw[f.tailStart:f.blockEnd]    // info sections of unknown types
	payload := raw[f.blockEnd:]
	count, kvLen := 0, 0
	f.rangeMutated(func(k, v string) {
		count++
		kvLen += uvarintLen(uint64(len(k))) + len(k) + uvarintLen(uint64(len(v))) + len(v)
	})
	block := len(prefix) + len(tail)
	if count > 0 {
		block += 1 + uvarintLen(uint64(count)) + kvLen
	}
	pad := (4 - block%4) % 4
	if block+pad > maxHeaderBlock {
		return dst, fmt.Errorf("thrift: THeader header block of %d bytes exceeds the %d the format allows: %w", block+pad, maxHeaderBlock, codecs.ErrFrameTooLarge)
	}
	frameLen := 10 + block + pad + len(payload)
	if frameLen > 0x7fffffff {
		return dst, fmt.Errorf("thrift: THeader frame of %d bytes: %w", frameLen, codecs.ErrFrameTooLarge)
	}
	dst = slices.Grow(dst, 4+frameLen)
	dst = binary.BigEndian.AppendUint32(dst, uint32(frameLen))
	dst = append(dst, raw[4:headerSizeOff]...) // magic, flags and the current seq id
	dst = binary.BigEndian.AppendUint16(dst, uint16((block+pad)/4))
	dst = append(dst, prefix...)
	if count > 0 {
		dst = append(dst, infoKeyValue)
		dst = binary.AppendUvarint(dst, uint64(count))
		f.rangeMutated(func(k, v string) {
			dst = binary.AppendUvarint(dst, uint64(len(k)))
			dst = append(dst, k...)
			dst = binary.AppendUvarint(dst, uint64(len(v)))
			dst = append(dst, v...)
		})
	}
	dst = append(dst, tail...)
	dst = append(dst, make([]byte, pad)...)
	return append(dst, payload...), nil
}

// inflate decompresses a zlib payload of at most limit bytes.
func inflate(b []byte, limit int) ([]byte, error) {
	r := bytes.NewReader(b)
	zr, err := zlib.NewReader(r)
	if err != nil {
		return nil, malformed("THeader zlib payload: %v", err)
	}
	// Read one byte past the limit to tell a payload of exactly limit bytes from a larger one
	// without inflating a zip bomb any further.
	out, err := io.ReadAll(io.LimitReader(zr, int64(limit)+1))
	if err != nil {
		return nil, malformed("THeader zlib payload: %v", err)
	}
	if len(out) > limit {
		return nil, fmt.Errorf("thrift: THeader zlib payload inflates past the %d-byte limit: %w", limit, codecs.ErrFrameTooLarge)
	}
	if r.Len() != 0 {
		return nil, malformed("%d bytes after the THeader zlib stream", r.Len())
	}
	return out, nil
}

// deflate compresses b as the zlib transform does.
func deflate(b []byte) []byte {
	var buf bytes.Buffer
	zw := zlib.NewWriter(&buf)
	// Writes to a bytes.Buffer cannot fail.
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}
