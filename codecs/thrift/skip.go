package thrift

import (
	"encoding/binary"
	"math"
)

// maxDepth bounds the nesting of structs and containers the skipper accepts. Generated code
// recurses once per level, so real messages stay far below it; a hostile one stops here.
const maxDepth = 64

// Thrift value types, numbered as in the binary protocol. Compact types are mapped onto them.
const (
	typeStop   = 0
	typeBool   = 2
	typeByte   = 3
	typeDouble = 4
	typeI16    = 6
	typeI32    = 8
	typeI64    = 10
	typeString = 11
	typeStruct = 12
	typeMap    = 13
	typeSet    = 14
	typeList   = 15
	typeUUID   = 16
	typeNone   = 0xff // not a valid type
)

// compactTypes maps compact type ids to binary ones. 1 and 2 are bool (true and false in a
// field header, where they carry the value; either marks bool elements in containers).
var compactTypes = [16]uint8{
	typeNone, typeBool, typeBool, typeByte, typeI16, typeI32, typeI64, typeDouble,
	typeString, typeList, typeSet, typeMap, typeStruct, typeUUID, typeNone, typeNone,
}

// minSize is the fewest bytes a value of the type takes, per protocol (binary, compact);
// 0 for invalid types. Container sizes are checked against it, so that a declared size can
// never promise more elements than the remaining bytes can hold.
func minSize(t uint8, compact bool) int64 {
	switch t {
	case typeBool, typeByte, typeStruct:
		return 1
	case typeDouble:
		return 8
	case typeUUID:
		return 16
	case typeI16, typeI32, typeI64, typeString, typeMap, typeSet, typeList:
		if compact {
			return 1
		}
		switch t {
		case typeI16:
			return 2
		case typeI32, typeString:
			return 4
		case typeI64:
			return 8
		case typeMap:
			return 6
		}
		return 5 // list, set
	}
	return 0
}

// fixedSize is the size of every value of t when it does not vary, else 0.
func fixedSize(t uint8, compact bool) int {
	switch t {
	case typeBool, typeByte:
		return 1
	case typeDouble:
		return 8
	case typeUUID:
		return 16
	case typeI16, typeI32, typeI64:
		if !compact {
			return int(minSize(t, false))
		}
	}
	return 0
}

// level is one open struct or container.
type level struct {
	kind uint8  // typeStruct, typeList (lists and sets) or typeMap
	elem uint8  // list element type; map key type
	val  uint8  // map value type
	left uint64 // list: elements left; map: keys and values left, two per entry
}

// skipper walks one Thrift struct without knowing its schema, iteratively: it holds its own
// stack of open levels, so depth costs no Go stack, and it can stop where the bytes end and
// resume there when more arrive. It commits only whole items, so a stop never splits one.
type skipper struct {
	compact bool
	depth   int
	pos     int
	stack   [maxDepth]level
}

// reset prepares to skip a struct that starts at pos.
func (s *skipper) reset(compact bool, pos int) {
	s.compact, s.pos, s.depth = compact, pos, 1
	s.stack[0] = level{kind: typeStruct}
}

// run skips from s.pos to the end of the struct, leaving s.pos just after it. b holds the
// bytes; if complete, the struct must end within b, otherwise it may continue up to limit
// and run returns errShort, with its place kept, when b ends first.
func (s *skipper) run(b []byte, complete bool, limit int) error {
	w := window{b: b, complete: complete, limit: limit}
	if complete {
		w.limit = len(b)
	}
	for s.depth > 0 {
		top := &s.stack[s.depth-1]
		switch top.kind {
		case typeStruct:
			t, inline, p, err := s.fieldHeader(w, s.pos)
			if err != nil {
				return err
			}
			if t == typeStop {
				s.pos = p
				s.depth--
				continue
			}
			if p, err = s.value(w, p, t, inline); err != nil {
				return err
			}
			s.pos = p
		case typeList, typeMap:
			if top.left == 0 {
				s.depth--
				continue
			}
			t := top.elem
			if top.kind == typeMap && top.left%2 == 1 {
				t = top.val
			}
			if size := fixedSize(t, s.compact); size > 0 && top.kind == typeList {
				// Skip every element that is present at once.
				n := min(uint64((len(b)-s.pos)/size), top.left)
				s.pos += int(n) * size
				top.left -= n
				if top.left > 0 {
					return w.need(s.pos, int64(size))
				}
				continue
			}
			p, err := s.value(w, s.pos, t, false)
			if err != nil {
				return err
			}
			top.left--
			s.pos = p
		}
	}
	return nil
}

// fieldHeader reads a field header at p: the field's type (typeStop at the end of a struct),
// whether the header itself holds a bool value (compact), and the position after it.
func (s *skipper) fieldHeader(w window, p int) (t uint8, inline bool, next int, err error) {
	if err := w.need(p, 1); err != nil {
		return 0, false, 0, err
	}
	c := w.b[p]
	if c == typeStop {
		return typeStop, false, p + 1, nil
	}
	if !s.compact {
		if err := w.need(p, 3); err != nil {
			return 0, false, 0, err
		}
		return c, false, p + 3, nil
	}
	t = compactTypes[c&0x0f]
	if t == typeNone {
		return 0, false, 0, malformed("compact field type %d", c&0x0f)
	}
	next = p + 1
	if c>>4 == 0 {
		// No delta: the field id follows as a zigzag varint i16.
		_, n, err := w.uvarint(next, 3)
		if err != nil {
			return 0, false, 0, err
		}
		next += n
	}
	return t, t == typeBool, next, nil
}

// value skips a value of type t at p and returns the position after it. For a struct or
// container it reads only the container's header and opens a level.
func (s *skipper) value(w window, p int, t uint8, inline bool) (int, error) {
	if size := fixedSize(t, s.compact); size > 0 {
		if inline {
			return p, nil
		}
		if err := w.need(p, int64(size)); err != nil {
			return 0, err
		}
		return p + size, nil
	}
	switch t {
	case typeI16, typeI32, typeI64: // compact varints
		_, n, err := w.uvarint(p, 10)
		if err != nil {
			return 0, err
		}
		return p + n, nil
	case typeString:
		n, hdr, err := s.size(w, p)
		if err != nil {
			return 0, err
		}
		if err := s.fits(w, p+hdr, n, 1); err != nil {
			return 0, err
		}
		if err := w.need(p+hdr, n); err != nil {
			return 0, err
		}
		return p + hdr + int(n), nil
	case typeStruct:
		if err := s.push(level{kind: typeStruct}); err != nil {
			return 0, err
		}
		return p, nil
	case typeList, typeSet:
		return s.listHeader(w, p)
	case typeMap:
		return s.mapHeader(w, p)
	}
	return 0, malformed("value type %d", t)
}

// size reads a string or map size: an i32 in binary, a varint in compact.
func (s *skipper) size(w window, p int) (n int64, hdr int, err error) {
	if s.compact {
		v, hdr, err := w.uvarint(p, 5)
		if err != nil {
			return 0, 0, err
		}
		if v > math.MaxInt32 {
			return 0, 0, malformed("size %d", v)
		}
		return int64(v), hdr, nil
	}
	if err := w.need(p, 4); err != nil {
		return 0, 0, err
	}
	v := int32(binary.BigEndian.Uint32(w.b[p:]))
	if v < 0 {
		return 0, 0, malformed("negative size %d", v)
	}
	return int64(v), 4, nil
}

// fits checks that n items of at least each bytes can fit between p and the limit.
func (s *skipper) fits(w window, p int, n, each int64) error {
	if need := int64(p) + n*each; need > int64(w.limit) {
		if w.complete {
			return malformed("size %d does not fit the %d bytes left", n, int64(w.limit)-int64(p))
		}
		return tooLarge(need, int64(w.limit))
	}
	return nil
}

func (s *skipper) elemType(t uint8) (uint8, error) {
	if s.compact {
		t = compactTypes[t&0x0f]
	}
	if minSize(t, s.compact) == 0 {
		return 0, malformed("container element type %d", t)
	}
	return t, nil
}

func (s *skipper) listHeader(w window, p int) (int, error) {
	var et uint8
	var n int64
	next := p
	if s.compact {
		if err := w.need(p, 1); err != nil {
			return 0, err
		}
		et, n, next = w.b[p]&0x0f, int64(w.b[p]>>4), p+1
		if n == 15 {
			v, hdr, err := s.size(w, next)
			if err != nil {
				return 0, err
			}
			n, next = v, next+hdr
		}
	} else {
		if err := w.need(p, 5); err != nil {
			return 0, err
		}
		et = w.b[p]
		v, _, err := s.size(w, p+1)
		if err != nil {
			return 0, err
		}
		n, next = v, p+5
	}
	et, err := s.elemType(et)
	if err != nil {
		return 0, err
	}
	if err := s.fits(w, next, n, minSize(et, s.compact)); err != nil {
		return 0, err
	}
	if err := s.push(level{kind: typeList, elem: et, left: uint64(n)}); err != nil {
		return 0, err
	}
	return next, nil
}

func (s *skipper) mapHeader(w window, p int) (int, error) {
	var kt, vt uint8
	var n int64
	var next int
	if s.compact {
		v, hdr, err := s.size(w, p)
		if err != nil {
			return 0, err
		}
		n, next = v, p+hdr
		if n == 0 {
			return next, nil // an empty map has no types byte
		}
		if err := w.need(next, 1); err != nil {
			return 0, err
		}
		kt, vt = w.b[next]>>4, w.b[next]&0x0f
		next++
	} else {
		if err := w.need(p, 6); err != nil {
			return 0, err
		}
		kt, vt = w.b[p], w.b[p+1]
		v, _, err := s.size(w, p+2)
		if err != nil {
			return 0, err
		}
		n, next = v, p+6
	}
	kt, err := s.elemType(kt)
	if err != nil {
		return 0, err
	}
	if vt, err = s.elemType(vt); err != nil {
		return 0, err
	}
	if err := s.fits(w, next, n, minSize(kt, s.compact)+minSize(vt, s.compact)); err != nil {
		return 0, err
	}
	if err := s.push(level{kind: typeMap, elem: kt, val: vt, left: 2 * uint64(n)}); err != nil {
		return 0, err
	}
	return next, nil
}

func (s *skipper) push(l level) error {
	if s.depth >= maxDepth {
		return malformed("values nested deeper than %d levels", maxDepth)
	}
	s.stack[s.depth] = l
	s.depth++
	return nil
}
