package thrift

import (
	"errors"
	"fmt"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
)

var protocols = []struct {
	name    string
	compact bool
}{{"binary", false}, {"compact", true}}

// skipWhole skips the struct at the start of b with b complete.
func skipWhole(b []byte, compact bool) (int, error) {
	var s skipper
	s.reset(compact, 0)
	if err := s.run(b, true, len(b)); err != nil {
		return 0, err
	}
	return s.pos, nil
}

// skipTrickle feeds b to one skipper a byte at a time, as an unframed stream arrives, with
// limit as the frame limit. It returns the end, or the first error that is not errShort.
func skipTrickle(b []byte, compact bool, limit int) (int, error) {
	var s skipper
	s.reset(compact, 0)
	for i := 0; i <= len(b) && i <= limit; i++ {
		err := s.run(b[:i], false, limit)
		if err == nil {
			return s.pos, nil
		}
		if err != errShort {
			return 0, err
		}
	}
	return 0, errShort
}

func TestSkipEveryType(t *testing.T) {
	for _, p := range protocols {
		t.Run(p.name, func(t *testing.T) {
			e := &tenc{compact: p.compact}
			e.everything()
			b := append(e.b, "trailing bytes of the next message"...)
			end, err := skipWhole(b, p.compact)
			if err != nil || end != len(e.b) {
				t.Fatalf("skip: end %d err %v, want end %d", end, err, len(e.b))
			}
			end, err = skipTrickle(b, p.compact, len(b))
			if err != nil || end != len(e.b) {
				t.Fatalf("skip a byte at a time: end %d err %v, want end %d", end, err, len(e.b))
			}
			for i := range len(e.b) {
				if _, err := skipWhole(e.b[:i], p.compact); !errors.Is(err, codecs.ErrMalformed) {
					t.Fatalf("complete struct cut to %d bytes: %v, want ErrMalformed", i, err)
				}
				var s skipper
				s.reset(p.compact, 0)
				if err := s.run(e.b[:i], false, 1<<20); err != errShort {
					t.Fatalf("stream prefix of %d bytes: %v, want need-more", i, err)
				}
			}
		})
	}
}

// TestSkipGolden skips the body of every library-made message.
func TestSkipGolden(t *testing.T) {
	for _, g := range loadGolden(t) {
		f := decodeOne(t, newCodec(t, nil), g.Bytes)
		end, err := skipWhole(f.msg[f.hdr.bodyOff:], f.protocol == protocolCompact)
		if err != nil || f.hdr.bodyOff+end != len(f.msg) {
			t.Errorf("%s: body skipped to %d (err %v), message ends at %d", g.File, f.hdr.bodyOff+end, err, len(f.msg))
		}
	}
}

func TestSkipDepthLimit(t *testing.T) {
	nestStructs := func(compact bool, n int) []byte {
		e := &tenc{compact: compact}
		e.structBegin()
		for range n {
			e.field(typeStruct, 1)
			e.structBegin()
		}
		for range n {
			e.structEnd()
		}
		e.structEnd()
		return e.b
	}
	nestLists := func(compact bool, n int) []byte {
		e := &tenc{compact: compact}
		e.structBegin()
		e.field(typeList, 1)
		for range n - 1 {
			e.list(typeList, typeList, 1)
		}
		e.list(typeList, typeI32, 0)
		e.structEnd()
		return e.b
	}
	nestMaps := func(compact bool, n int) []byte {
		e := &tenc{compact: compact}
		e.structBegin()
		e.field(typeMap, 1)
		for range n - 1 {
			e.mapBegin(typeI32, typeMap, 1)
			e.i32(1)
		}
		e.mapBegin(typeI32, typeI32, 1)
		e.i32(1)
		e.i32(2)
		e.structEnd()
		return e.b
	}
	for _, p := range protocols {
		for name, nest := range map[string]func(bool, int) []byte{"structs": nestStructs, "lists": nestLists, "maps": nestMaps} {
			// The outer struct is one level: maxDepth-1 nested levels fit, one more does not.
			ok := nest(p.compact, maxDepth-1)
			if end, err := skipWhole(ok, p.compact); err != nil || end != len(ok) {
				t.Errorf("%s %s: %d levels: end %d err %v", p.name, name, maxDepth, end, err)
			}
			if _, err := skipWhole(nest(p.compact, maxDepth), p.compact); !errors.Is(err, codecs.ErrMalformed) {
				t.Errorf("%s %s: %d levels: %v, want ErrMalformed", p.name, name, maxDepth+1, err)
			}
			// A hostile depth fails fast, even a byte at a time, without growing the stack.
			deep := nest(p.compact, 200000)
			if _, err := skipTrickle(deep, p.compact, len(deep)); !errors.Is(err, codecs.ErrMalformed) {
				t.Errorf("%s %s: 200000 levels: %v, want ErrMalformed", p.name, name, err)
			}
		}
	}
}

// TestSkipBogus feeds structs with impossible sizes and types.
func TestSkipBogus(t *testing.T) {
	type tc struct {
		name  string
		build func(e *tenc)
		// want is the error of a complete skip; stream is the error when the bytes are a
		// prefix of a stream limited to 1 MiB (nil: need more).
		want, stream error
	}
	cases := []tc{
		{"negative string size", func(e *tenc) {
			e.field(typeString, 1)
			if e.compact {
				e.b = append(e.b, 0xfe, 0xff, 0xff, 0xff, 0x0f) // 2^32-2: negative as an i32
			} else {
				e.b = append(e.b, 0xff, 0xff, 0xff, 0xfe)
			}
		}, codecs.ErrMalformed, codecs.ErrMalformed},
		{"string past the end", func(e *tenc) { e.field(typeString, 1); e.size(100); e.b = append(e.b, "short"...) }, codecs.ErrMalformed, nil},
		{"string past the limit", func(e *tenc) { e.field(typeString, 1); e.size(1 << 30) }, codecs.ErrMalformed, codecs.ErrFrameTooLarge},
		{"list size past the limit", func(e *tenc) { e.field(typeList, 1); e.list(typeList, typeI64, 1<<28) }, codecs.ErrMalformed, codecs.ErrFrameTooLarge},
		{"list of structs past the limit", func(e *tenc) { e.field(typeList, 1); e.list(typeList, typeStruct, 1<<21) }, codecs.ErrMalformed, codecs.ErrFrameTooLarge},
		{"list size within the limit", func(e *tenc) { e.field(typeList, 1); e.list(typeList, typeI32, 1000) }, codecs.ErrMalformed, nil},
		{"map size past the limit", func(e *tenc) { e.field(typeMap, 1); e.mapBegin(typeString, typeString, 1<<29) }, codecs.ErrMalformed, codecs.ErrFrameTooLarge},
		{"list element type stop", func(e *tenc) {
			e.field(typeList, 1)
			e.b = append(e.b, 0x10)
			if !e.compact {
				e.b = append(e.b[:len(e.b)-1], 0, 0, 0, 0, 1)
			}
		}, codecs.ErrMalformed, codecs.ErrMalformed},
		{"map value type invalid", func(e *tenc) {
			e.field(typeMap, 1)
			if e.compact {
				e.b = append(e.b, 1, 0x8e)
			} else {
				e.b = append(e.b, typeString, 7, 0, 0, 0, 1)
			}
		}, codecs.ErrMalformed, codecs.ErrMalformed},
		{"field type invalid", func(e *tenc) { e.b = append(e.b, 0x1e, 0, 1) }, codecs.ErrMalformed, codecs.ErrMalformed},
		{"varint too long", func(e *tenc) {
			e.field(typeI64, 1)
			e.b = append(e.b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
			if !e.compact {
				e.b = append(e.b[:len(e.b)-11], 1, 2, 3, 4, 5, 6, 7, 8, 0xff)
			}
		}, codecs.ErrMalformed, codecs.ErrMalformed},
	}
	for _, p := range protocols {
		for _, c := range cases {
			e := &tenc{compact: p.compact}
			e.structBegin()
			c.build(e)
			b := e.b
			if c.name == "field type invalid" && !p.compact {
				b = []byte{7, 0, 1, 0} // binary type 7 does not exist
			}
			if c.name == "varint too long" && !p.compact {
				continue // binary has no varints
			}
			if _, err := skipWhole(b, p.compact); !errors.Is(err, c.want) {
				t.Errorf("%s %s: complete: %v, want %v", p.name, c.name, err, c.want)
			}
			var s skipper
			s.reset(p.compact, 0)
			err := s.run(b, false, 1<<20)
			if c.stream == nil {
				if err != errShort {
					t.Errorf("%s %s: stream: %v, want need-more", p.name, c.name, err)
				}
			} else if !errors.Is(err, c.stream) {
				t.Errorf("%s %s: stream: %v, want %v", p.name, c.name, err, c.stream)
			}
		}
	}
}

// TestSkipResumeMatchesWhole checks that stopping and resuming anywhere gives the same end.
func TestSkipResumeMatchesWhole(t *testing.T) {
	for _, g := range loadGolden(t) {
		if g.Stream != "unframed/binary" && g.Stream != "unframed/compact" {
			continue
		}
		f := decodeOne(t, newCodec(t, nil), g.Bytes)
		body := f.msg[f.hdr.bodyOff:]
		compact := f.protocol == protocolCompact
		for _, chunk := range []int{1, 2, 5, 13} {
			var s skipper
			s.reset(compact, 0)
			var err error
			for i := chunk; ; i += chunk {
				if err = s.run(body[:min(i, len(body))], false, len(body)); err != errShort {
					break
				}
			}
			if err != nil || s.pos != len(body) {
				t.Errorf("%s chunk %d: end %d err %v, want %d", g.File, chunk, s.pos, err, len(body))
			}
		}
	}
}

func ExampleFactory() {
	c, _ := Factory{}.New(codecs.Options{})
	conn := c.NewConn()
	// A framed, strict-binary CALL of "Calc:add" with seqid 7 and an empty args struct.
	msg := []byte{0x80, 1, 0, 1, 0, 0, 0, 8, 'C', 'a', 'l', 'c', ':', 'a', 'd', 'd', 0, 0, 0, 7, 0}
	frame := append([]byte{0, 0, 0, byte(len(msg))}, msg...)
	f, n, err := conn.Decode(frame)
	if err != nil {
		panic(err)
	}
	svc, _ := f.Attribute("service")
	method, _ := f.Attribute("method")
	fmt.Println(n, conn.Mode(), f.Kind(), f.RequestID(), svc, method)
	// Output: 25 framed/binary request 7 Calc add
}
