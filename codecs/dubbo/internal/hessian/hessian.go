// Package hessian reads Hessian 2.0 serialized data in place, without materialising it, and
// writes the few value forms the Dubbo codec emits.
//
// It exists so the Dubbo codec can reach the attachments at the end of a request body without
// decoding the arguments in front of them: Reader.Skip steps over any value, whatever its
// type, and ReadString returns strings that alias the input when their encoding allows it.
//
// Everything here covers the whole of Hessian 2.0 (strings in every form including chunks,
// binary, ints, longs, doubles, dates, null, booleans, typed and untyped lists and maps, class
// definitions and the objects that use them, and references). Skipping bounds its nesting
// depth (MaxDepth) so hostile input cannot exhaust the stack, takes time linear in the input,
// and never panics.
package hessian

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
	"unsafe"
)

// MaxDepth bounds the nesting of lists, maps and objects that Skip accepts. Real payloads
// nest a handful of levels; the bound keeps a hostile value from exhausting the stack.
const MaxDepth = 128

// Errors of this package; the Dubbo codec wraps them into codecs.ErrMalformed.
var (
	// ErrTruncated: a value runs past the end of the data.
	ErrTruncated = errors.New("hessian: value truncated")
	// ErrInvalid: the bytes are not valid Hessian 2.0 (or not the type the caller asked for).
	ErrInvalid = errors.New("hessian: invalid encoding")
	// ErrTooDeep: values nest deeper than MaxDepth.
	ErrTooDeep = errors.New("hessian: nesting too deep")
)

func truncated(off int) error { return fmt.Errorf("%w at offset %d", ErrTruncated, off) }

func invalid(off int, what string) error {
	return fmt.Errorf("%w at offset %d: %s", ErrInvalid, off, what)
}

// Tags that callers walking a stream themselves need.
const (
	TagNull = 'N' // null
	TagRef  = 'Q' // reference to an earlier list, map or object
	TagEnd  = 'Z' // end of a variable list or a map
)

// Tags of the Hessian 2.0 grammar that this package names.
const (
	tagBinaryChunk  = 'A'
	tagBinary       = 'B'
	tagClassDef     = 'C'
	tagDouble       = 'D'
	tagFalse        = 'F'
	tagMapUntyped   = 'H'
	tagInt          = 'I'
	tagDate         = 0x4a
	tagDateMinute   = 0x4b
	tagLong         = 'L'
	tagMap          = 'M'
	tagObject       = 'O'
	tagStringChunk  = 'R'
	tagString       = 'S'
	tagTrue         = 'T'
	tagListVar      = 0x55
	tagListFixed    = 'V'
	tagListVarUntyp = 0x57
	tagListFixUntyp = 0x58
	tagLongInt      = 0x59
)

// fixedSize gives the encoded size, tag included, of the values whose size the tag alone
// decides; 0 for the others.
var fixedSize = func() (t [256]uint8) {
	set := func(lo, hi byte, n uint8) {
		for c := int(lo); c <= int(hi); c++ {
			t[c] = n
		}
	}
	set(TagNull, TagNull, 1)
	set(tagTrue, tagTrue, 1)
	set(tagFalse, tagFalse, 1)
	// int: [x80-xbf], [xc0-xcf] b0, [xd0-xd7] b1 b0, 'I' b3..b0
	set(0x80, 0xbf, 1)
	set(0xc0, 0xcf, 2)
	set(0xd0, 0xd7, 3)
	set(tagInt, tagInt, 5)
	// long: [xd8-xef], [xf0-xff] b0, [x38-x3f] b1 b0, x59 b3..b0, 'L' b7..b0
	set(0xd8, 0xef, 1)
	set(0xf0, 0xff, 2)
	set(0x38, 0x3f, 3)
	set(tagLongInt, tagLongInt, 5)
	set(tagLong, tagLong, 9)
	// double: x5b, x5c, x5d b0, x5e b1 b0, x5f b3..b0, 'D' b7..b0
	set(0x5b, 0x5c, 1)
	set(0x5d, 0x5d, 2)
	set(0x5e, 0x5e, 3)
	set(0x5f, 0x5f, 5)
	set(tagDouble, tagDouble, 9)
	// date: x4a b7..b0, x4b b3..b0 (minutes)
	set(tagDate, tagDate, 9)
	set(tagDateMinute, tagDateMinute, 5)
	return t
}()

// IsStringTag reports whether tag starts a string (or a chunk of one).
func IsStringTag(tag byte) bool {
	return tag <= 0x1f || (tag >= 0x30 && tag <= 0x33) || tag == tagString || tag == tagStringChunk
}

// IsIntTag reports whether tag starts an int.
func IsIntTag(tag byte) bool { return tag >= 0x80 && tag <= 0xd7 || tag == tagInt }

// DefinesRefs reports whether the value starting with tag may define a reference target or
// a class definition (lists, maps, objects, and class definitions in front of a value).
// Removing or replacing such a value would renumber what later references point at; any
// other value can be dropped or replaced without disturbing the rest of the stream.
func DefinesRefs(tag byte) bool {
	switch {
	case tag == tagMap || tag == tagMapUntyped, tag == tagObject, tag == tagClassDef:
		return true
	case tag >= tagListVar && tag <= tagListFixUntyp: // x55 'V' x57 x58
		return true
	case tag >= 0x60 && tag <= 0x7f: // compact objects and compact lists
		return true
	}
	return false
}

// MapStart checks that b[off] starts a map, untyped ('H') or typed ('M' and its type), and
// returns the offset of its first entry (or of the 'Z' that closes an empty map).
func MapStart(b []byte, off int) (int, error) {
	if off >= len(b) {
		return 0, truncated(off)
	}
	switch b[off] {
	case tagMapUntyped:
		return off + 1, nil
	case tagMap:
		return skipType(b, off+1)
	}
	return 0, invalid(off, fmt.Sprintf("tag %#x is not a map", b[off]))
}

// ReadInt reads an int or a long at b[off] (Dubbo writes small numbers such as the response
// type as ints; Java readers accept longs there too). It returns the value and the offset
// just past it.
func ReadInt(b []byte, off int) (v int64, end int, err error) {
	if off >= len(b) {
		return 0, 0, truncated(off)
	}
	tag := b[off]
	n := int(fixedSize[tag])
	if n == 0 || off+n > len(b) {
		if n == 0 {
			return 0, 0, invalid(off, fmt.Sprintf("tag %#x is not an int", tag))
		}
		return 0, 0, truncated(off)
	}
	p := b[off+1 : off+n]
	switch {
	case tag >= 0x80 && tag <= 0xbf:
		v = int64(tag) - 0x90
	case tag >= 0xc0 && tag <= 0xcf:
		v = (int64(tag)-0xc8)<<8 | int64(p[0])
	case tag >= 0xd0 && tag <= 0xd7:
		v = (int64(tag)-0xd4)<<16 | int64(p[0])<<8 | int64(p[1])
	case tag == tagInt || tag == tagLongInt:
		v = int64(int32(binary.BigEndian.Uint32(p)))
	case tag >= 0xd8 && tag <= 0xef:
		v = int64(tag) - 0xe0
	case tag >= 0xf0:
		v = (int64(tag)-0xf8)<<8 | int64(p[0])
	case tag >= 0x38 && tag <= 0x3f:
		v = (int64(tag)-0x3c)<<16 | int64(p[0])<<8 | int64(p[1])
	case tag == tagLong:
		v = int64(binary.BigEndian.Uint64(p))
	default:
		return 0, 0, invalid(off, fmt.Sprintf("tag %#x is not an int", tag))
	}
	return v, off + n, nil
}

// readInt32 reads an int (the grammar requires the int forms for lengths, class indexes,
// field counts, type and value references).
func readInt32(b []byte, off int) (int, int, error) {
	if off >= len(b) {
		return 0, 0, truncated(off)
	}
	if !IsIntTag(b[off]) {
		return 0, 0, invalid(off, fmt.Sprintf("tag %#x where an int is required", b[off]))
	}
	v, end, err := ReadInt(b, off)
	return int(v), end, err
}

// stringChunk decodes the header of one string chunk at b[off]: the number of UTF-16 code
// units it holds, where its data starts, and whether it is the final chunk.
func stringChunk(b []byte, off int) (units, data int, final bool, err error) {
	if off >= len(b) {
		return 0, 0, false, truncated(off)
	}
	tag := b[off]
	switch {
	case tag <= 0x1f:
		return int(tag), off + 1, true, nil
	case tag >= 0x30 && tag <= 0x33:
		if off+2 > len(b) {
			return 0, 0, false, truncated(off)
		}
		return int(tag-0x30)<<8 | int(b[off+1]), off + 2, true, nil
	case tag == tagString || tag == tagStringChunk:
		if off+3 > len(b) {
			return 0, 0, false, truncated(off)
		}
		return int(binary.BigEndian.Uint16(b[off+1:])), off + 3, tag == tagString, nil
	}
	return 0, 0, false, invalid(off, fmt.Sprintf("tag %#x is not a string", tag))
}

// scanUnits steps over n UTF-16 code units of string data starting at b[off]. Hessian counts
// string lengths in UTF-16 units while the bytes are UTF-8: Java writes a supplementary
// character as its two surrogates, each a 3-byte sequence (CESU-8); a 4-byte UTF-8 sequence
// is accepted as the same two units. It returns the end of the data and whether a high
// surrogate was seen (the data then needs converting to be valid UTF-8).
func scanUnits(b []byte, off, n int) (end int, surrogates bool, err error) {
	// Plain ASCII is the common case for names and ids: when the n bytes ahead are all
	// ASCII, they are the n units.
	if off+n <= len(b) && isASCII(b, off, off+n) {
		return off + n, false, nil
	}
	for n > 0 {
		if off >= len(b) {
			return 0, false, truncated(off)
		}
		c := b[off]
		switch {
		case c < 0x80:
			off++
		case c < 0xc0:
			return 0, false, invalid(off, "UTF-8 continuation byte where a character starts")
		case c < 0xe0:
			off += 2
		case c < 0xf0:
			if c == 0xed && off+1 < len(b) && b[off+1] >= 0xa0 && b[off+1] <= 0xaf {
				surrogates = true
			}
			off += 3
		case c < 0xf8:
			if n < 2 {
				return 0, false, invalid(off, "4-byte UTF-8 sequence where one UTF-16 unit is left")
			}
			n--
			off += 4
		default:
			return 0, false, invalid(off, "invalid UTF-8 lead byte")
		}
		n--
	}
	if off > len(b) {
		return 0, false, truncated(len(b))
	}
	return off, surrogates, nil
}

const highBits = 0x8080808080808080

// isASCII reports whether b[start:end] holds only ASCII bytes, eight or sixteen at a time. A
// short range is checked with one load of the eight bytes that end it, the bytes before
// start shifted out, so that short names cost no loop.
func isASCII(b []byte, start, end int) bool {
	n := end - start
	if n < 8 && end >= 8 {
		return binary.LittleEndian.Uint64(b[end-8:end])>>(8*(8-n))&highBits == 0
	}
	p := b[start:end]
	for len(p) >= 16 {
		if (binary.LittleEndian.Uint64(p)|binary.LittleEndian.Uint64(p[8:]))&highBits != 0 {
			return false
		}
		p = p[16:]
	}
	if len(p) == 0 {
		return true
	}
	if n >= 8 {
		// What is left, fewer than 16 bytes, is covered by the last eight bytes of the
		// range and, when needed, the first eight of what is left (overlaps are harmless).
		w := binary.LittleEndian.Uint64(b[end-8 : end])
		if len(p) > 8 {
			w |= binary.LittleEndian.Uint64(p)
		}
		return w&highBits == 0
	}
	for _, c := range p {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// skipString steps over a string (all its chunks) at b[off].
func skipString(b []byte, off int) (int, error) {
	for {
		units, data, final, err := stringChunk(b, off)
		if err != nil {
			return 0, err
		}
		if off, _, err = scanUnits(b, data, units); err != nil {
			return 0, err
		}
		if final {
			return off, nil
		}
	}
}

// StringSpan locates the string or null at b[off] without copying it. When plain is true
// the string is exactly the UTF-8 bytes b[data:dataEnd]; otherwise (a chunked string, or
// one holding surrogate pairs) ReadString builds it. end is the offset just past the value;
// null reports a Hessian null.
func StringSpan(b []byte, off int) (data, dataEnd, end int, plain, null bool, err error) {
	if off < len(b) {
		// Fast path: a short ASCII string in the compact form, what names and most
		// attachment values are.
		if n := int(b[off]); n <= 0x1f && off+1+n <= len(b) && isASCII(b, off+1, off+1+n) {
			return off + 1, off + 1 + n, off + 1 + n, true, false, nil
		}
		if b[off] == TagNull {
			return off + 1, off + 1, off + 1, true, true, nil
		}
	}
	units, data, final, err := stringChunk(b, off)
	if err != nil {
		return 0, 0, 0, false, false, err
	}
	dataEnd, surrogates, err := scanUnits(b, data, units)
	if err != nil {
		return 0, 0, 0, false, false, err
	}
	if final {
		return data, dataEnd, dataEnd, !surrogates, false, nil
	}
	if end, err = skipString(b, dataEnd); err != nil {
		return 0, 0, 0, false, false, err
	}
	return data, dataEnd, end, false, false, nil
}

// ReadString reads a string or null at b[off] and returns it with the offset just past it.
// null reports a Hessian null (s is then "").
//
// When the string is a single chunk of plain UTF-8, s aliases b (no copy): the caller must
// never modify those bytes of b afterwards. Chunked strings and strings holding surrogate
// pairs are copied into a new, valid UTF-8 string.
func ReadString(b []byte, off int) (s string, end int, null bool, err error) {
	data, dataEnd, end, plain, null, err := StringSpan(b, off)
	switch {
	case err != nil:
		return "", 0, false, err
	case plain:
		return unsafe.String(unsafe.SliceData(b[data:]), dataEnd-data), end, null, nil
	}
	// Rare path: gather every chunk, then convert surrogate pairs (which may straddle chunks).
	raw := make([]byte, 0, end-off)
	final := false
	for off < end && !final {
		var units int
		if units, data, final, err = stringChunk(b, off); err != nil {
			return "", 0, false, err
		}
		if off, _, err = scanUnits(b, data, units); err != nil {
			return "", 0, false, err
		}
		raw = append(raw, b[data:off]...)
	}
	raw = joinSurrogates(raw)
	return unsafe.String(unsafe.SliceData(raw), len(raw)), end, false, nil
}

// joinSurrogates rewrites, in place, each CESU-8 surrogate pair (two 3-byte sequences) into
// the 4-byte UTF-8 sequence of the character it stands for. Lone surrogates stay as they are.
func joinSurrogates(p []byte) []byte {
	w := 0
	for r := 0; r < len(p); {
		if r+6 <= len(p) && p[r] == 0xed && p[r+1] >= 0xa0 && p[r+1] <= 0xaf &&
			p[r+3] == 0xed && p[r+4] >= 0xb0 && p[r+4] <= 0xbf {
			hi := rune(p[r+1]&0x0f)<<6 | rune(p[r+2]&0x3f)
			lo := rune(p[r+4]&0x0f)<<6 | rune(p[r+5]&0x3f)
			w += utf8.EncodeRune(p[w:], 0x10000+(hi<<10|lo))
			r += 6
			continue
		}
		p[w] = p[r]
		w++
		r++
	}
	return p[:w]
}

// Reader steps over the values of one Hessian 2.0 stream. Class definitions are numbered per
// stream, so one Reader must see every value of the stream in order (Skip or SkipClassDefs);
// the zero Reader is ready for use once Reset.
type Reader struct {
	b []byte
	// Field counts of the class definitions seen so far, by definition index. The first
	// ones live inline so that typical payloads need no allocation.
	inline  [16]int32
	n       int
	spilled []int32
}

// Reset starts a new stream over b.
func (r *Reader) Reset(b []byte) {
	r.b = b
	r.n = 0
	r.spilled = r.spilled[:0]
}

// Classes is the number of class definitions seen so far.
func (r *Reader) Classes() int { return r.n }

func (r *Reader) addClass(fields int) {
	if r.n < len(r.inline) {
		r.inline[r.n] = int32(fields)
	} else {
		r.spilled = append(r.spilled, int32(fields))
	}
	r.n++
}

func (r *Reader) classFields(idx int) (int, bool) {
	switch {
	case idx < 0 || idx >= r.n:
		return 0, false
	case idx < len(r.inline):
		return int(r.inline[idx]), true
	default:
		return int(r.spilled[idx-len(r.inline)]), true
	}
}

// Skip steps over the value at off (with any class definitions in front of it) and returns
// the offset just past it.
func (r *Reader) Skip(off int) (int, error) { return r.skip(off, 0) }

// SkipClassDefs steps over class definitions at off, recording them, and returns the offset
// of the first byte that is not one.
func (r *Reader) SkipClassDefs(off int) (int, error) {
	var err error
	for off < len(r.b) && r.b[off] == tagClassDef {
		if off, err = r.classDef(off); err != nil {
			return 0, err
		}
	}
	return off, nil
}

// classDef reads the class definition at off: 'C' string int string*.
func (r *Reader) classDef(off int) (int, error) {
	off, err := skipString(r.b, off+1) // class name
	if err != nil {
		return 0, err
	}
	fields, off, err := readInt32(r.b, off)
	if err != nil {
		return 0, err
	}
	if fields < 0 || fields > len(r.b)-off {
		return 0, invalid(off, fmt.Sprintf("class definition with %d fields", fields))
	}
	for range fields {
		if off, err = skipString(r.b, off); err != nil { // field name
			return 0, err
		}
	}
	r.addClass(fields)
	return off, nil
}

// skipType steps over the type of a typed list or map: a type name or a type reference.
func skipType(b []byte, off int) (int, error) {
	if off >= len(b) {
		return 0, truncated(off)
	}
	if IsIntTag(b[off]) {
		_, end, err := ReadInt(b, off)
		return end, err
	}
	return skipString(b, off)
}

// skipLength reads the length of a fixed list and checks it against the bytes left (every
// value takes at least one byte), so a hostile length fails at once.
func (r *Reader) skipLength(off int) (n, end int, err error) {
	n, end, err = readInt32(r.b, off)
	if err != nil {
		return 0, 0, err
	}
	if n < 0 || n > len(r.b)-end {
		return 0, 0, invalid(off, fmt.Sprintf("list length %d", n))
	}
	return n, end, nil
}

func (r *Reader) skipN(off, n, depth int) (int, error) {
	var err error
	for range n {
		if off, err = r.skip(off, depth); err != nil {
			return 0, err
		}
	}
	return off, nil
}

// skipUntilEnd steps over values up to and including the 'Z' that ends a variable list or
// map.
func (r *Reader) skipUntilEnd(off, depth int) (int, error) {
	var err error
	for {
		if off >= len(r.b) {
			return 0, truncated(off)
		}
		if r.b[off] == TagEnd {
			return off + 1, nil
		}
		if off, err = r.skip(off, depth); err != nil {
			return 0, err
		}
	}
}

func (r *Reader) skip(off, depth int) (int, error) {
	b := r.b
	var err error
	for {
		if off >= len(b) {
			return 0, truncated(off)
		}
		tag := b[off]
		if n := int(fixedSize[tag]); n > 0 {
			if off+n > len(b) {
				return 0, truncated(off)
			}
			return off + n, nil
		}
		// Short ASCII strings are most of what a payload holds: step over them here.
		if n := int(tag); n <= 0x1f && off+1+n <= len(b) && isASCII(b, off+1, off+1+n) {
			return off + 1 + n, nil
		}
		switch {
		case IsStringTag(tag):
			return skipString(b, off)
		case tag == tagClassDef:
			// "class-def value": the definition, then the value it precedes.
			if off, err = r.classDef(off); err != nil {
				return 0, err
			}
			continue
		case tag == TagRef:
			_, end, err := readInt32(b, off+1)
			return end, err
		case tag >= 0x20 && tag <= 0x2f, tag >= 0x34 && tag <= 0x37, tag == tagBinary, tag == tagBinaryChunk:
			return skipBinary(b, off)
		}
		// Containers: one level deeper.
		if depth >= MaxDepth {
			return 0, fmt.Errorf("%w: more than %d levels at offset %d", ErrTooDeep, MaxDepth, off)
		}
		depth++
		switch {
		case tag == tagMapUntyped:
			return r.skipMapEntries(off+1, depth)
		case tag == tagMap:
			if off, err = skipType(b, off+1); err != nil {
				return 0, err
			}
			return r.skipMapEntries(off, depth)
		case tag == tagListVar:
			if off, err = skipType(b, off+1); err != nil {
				return 0, err
			}
			return r.skipUntilEnd(off, depth)
		case tag == tagListVarUntyp:
			return r.skipUntilEnd(off+1, depth)
		case tag == tagListFixed, tag == tagListFixUntyp:
			off++
			if tag == tagListFixed {
				if off, err = skipType(b, off); err != nil {
					return 0, err
				}
			}
			n, off, err := r.skipLength(off)
			if err != nil {
				return 0, err
			}
			return r.skipN(off, n, depth)
		case tag >= 0x70 && tag <= 0x77:
			if off, err = skipType(b, off+1); err != nil {
				return 0, err
			}
			return r.skipN(off, int(tag-0x70), depth)
		case tag >= 0x78 && tag <= 0x7f:
			return r.skipN(off+1, int(tag-0x78), depth)
		case tag == tagObject, tag >= 0x60 && tag <= 0x6f:
			idx := int(tag) - 0x60
			off++
			if tag == tagObject {
				if idx, off, err = readInt32(b, off); err != nil {
					return 0, err
				}
			}
			fields, ok := r.classFields(idx)
			if !ok {
				return 0, invalid(off, fmt.Sprintf("object of undefined class %d", idx))
			}
			return r.skipN(off, fields, depth)
		}
		return 0, invalid(off, fmt.Sprintf("tag %#x starts no value", tag))
	}
}

// skipMapEntries steps over key/value pairs up to and including the closing 'Z'. Keys and
// values are both values, so this is the same walk as a variable list.
func (r *Reader) skipMapEntries(off, depth int) (int, error) {
	var err error
	for {
		if off >= len(r.b) {
			return 0, truncated(off)
		}
		if r.b[off] == TagEnd {
			return off + 1, nil
		}
		if off, err = r.skip(off, depth); err != nil { // key
			return 0, err
		}
		if off, err = r.skip(off, depth); err != nil { // value
			return 0, err
		}
	}
}

// skipBinary steps over binary data (all its chunks) at b[off].
func skipBinary(b []byte, off int) (int, error) {
	for {
		if off >= len(b) {
			return 0, truncated(off)
		}
		tag := b[off]
		var n, data int
		final := true
		switch {
		case tag >= 0x20 && tag <= 0x2f:
			n, data = int(tag-0x20), off+1
		case tag >= 0x34 && tag <= 0x37:
			if off+2 > len(b) {
				return 0, truncated(off)
			}
			n, data = int(tag-0x34)<<8|int(b[off+1]), off+2
		case tag == tagBinary || tag == tagBinaryChunk:
			if off+3 > len(b) {
				return 0, truncated(off)
			}
			n, data, final = int(binary.BigEndian.Uint16(b[off+1:])), off+3, tag == tagBinary
		default:
			return 0, invalid(off, fmt.Sprintf("tag %#x where a binary chunk is required", tag))
		}
		if data+n > len(b) {
			return 0, truncated(off)
		}
		off = data + n
		if final {
			return off, nil
		}
	}
}
