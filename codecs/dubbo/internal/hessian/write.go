package hessian

import "unicode/utf8"

// chunkUnits is the size, in UTF-16 units, of the non-final chunks AppendString writes (the
// size Java's Hessian2Output uses); a final chunk may hold up to 0xffff.
const chunkUnits = 0x8000

// AppendNull appends a Hessian null.
func AppendNull(dst []byte) []byte { return append(dst, TagNull) }

// AppendInt appends v in the shortest int form.
func AppendInt(dst []byte, v int32) []byte {
	switch {
	case v >= -0x10 && v <= 0x2f:
		return append(dst, byte(0x90+v))
	case v >= -0x800 && v <= 0x7ff:
		return append(dst, byte(0xc8+(v>>8)), byte(v))
	case v >= -0x40000 && v <= 0x3ffff:
		return append(dst, byte(0xd4+(v>>16)), byte(v>>8), byte(v))
	}
	return append(dst, tagInt, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

// AppendMapStart appends the start of an untyped map; close it with AppendMapEnd.
func AppendMapStart(dst []byte) []byte { return append(dst, tagMapUntyped) }

// AppendMapEnd appends the end of a map.
func AppendMapEnd(dst []byte) []byte { return append(dst, TagEnd) }

// AppendString appends s as a Hessian string the way Java writes one, which is what every
// reader accepts: lengths in UTF-16 units, characters outside the Basic Multilingual Plane as
// two 3-byte surrogate sequences, chunks of at most chunkUnits units (never splitting a
// surrogate pair). Bytes of s that are not valid UTF-8 are written as U+FFFD.
func AppendString(dst []byte, s string) []byte {
	for {
		units, i := 0, 0
		for i < len(s) && units < chunkUnits {
			c := s[i]
			if c < utf8.RuneSelf {
				units++
				i++
				continue
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			u := 1
			if r >= 0x10000 {
				u = 2
			}
			if units+u > chunkUnits {
				break
			}
			units += u
			i += size
		}
		final := i == len(s)
		switch {
		case !final:
			dst = append(dst, tagStringChunk, byte(units>>8), byte(units))
		case units <= 0x1f:
			dst = append(dst, byte(units))
		case units <= 0x3ff:
			dst = append(dst, byte(0x30+units>>8), byte(units))
		default:
			dst = append(dst, tagString, byte(units>>8), byte(units))
		}
		dst = appendCESU8(dst, s[:i])
		if final {
			return dst
		}
		s = s[i:]
	}
}

// appendCESU8 appends s with supplementary characters as surrogate pairs.
func appendCESU8(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		if s[i] < utf8.RuneSelf {
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r != utf8.RuneError && r < 0x10000 {
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		if r == utf8.RuneError {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			r -= 0x10000
			dst = appendUnit(dst, 0xd800+r>>10)
			dst = appendUnit(dst, 0xdc00+r&0x3ff)
		}
		i += size
		start = i
	}
	return append(dst, s[start:]...)
}

// appendUnit appends one surrogate code unit as a 3-byte sequence.
func appendUnit(dst []byte, u rune) []byte {
	return append(dst, byte(0xe0|u>>12), byte(0x80|(u>>6)&0x3f), byte(0x80|u&0x3f))
}
