package hessian

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"

	hessian2 "github.com/apache/dubbo-go-hessian2"
)

// encode writes values with dubbo-go-hessian2, an encoder we did not write, in one stream
// (so class definitions and references are shared between them as on the wire).
func encode(t testing.TB, vs ...any) []byte {
	t.Helper()
	e := hessian2.NewEncoder()
	for _, v := range vs {
		if err := e.Encode(v); err != nil {
			t.Fatalf("dubbo-go-hessian2 encode %T: %v", v, err)
		}
	}
	return e.Buffer()
}

// skipAll skips every value of b with one Reader and checks it ends exactly at len(b) after
// want values.
func skipAll(t *testing.T, name string, b []byte, want int) {
	t.Helper()
	var r Reader
	r.Reset(b)
	off, n := 0, 0
	for off < len(b) {
		end, err := r.Skip(off)
		if err != nil {
			t.Fatalf("%s: value %d at offset %d: %v (bytes %x)", name, n, off, err, b)
		}
		if end <= off {
			t.Fatalf("%s: Skip made no progress at %d", name, off)
		}
		off = end
		n++
	}
	if n != want {
		t.Fatalf("%s: skipped %d values, want %d", name, n, want)
	}
}

// checkTruncation: every strict prefix of a single value fails to skip, with ErrTruncated
// when the cut is what broke it.
func checkTruncation(t *testing.T, name string, b []byte) {
	t.Helper()
	for i := range len(b) {
		var r Reader
		r.Reset(b[:i])
		if end, err := r.Skip(0); err == nil {
			t.Fatalf("%s: prefix of %d/%d bytes skipped to %d without error", name, i, len(b), end)
		}
	}
}

type objectMap = map[string]any

func TestSkipValuesFromDubboGoHessian2(t *testing.T) {
	shared := map[any]any{"k": "v"}
	cases := []struct {
		name string
		v    any
	}{
		{"null", nil},
		{"true", true},
		{"false", false},
		{"int zero", int32(0)},
		{"int compact min", int32(-16)},
		{"int compact max", int32(47)},
		{"int byte", int32(-2048)},
		{"int byte max", int32(2047)},
		{"int short", int32(-262144)},
		{"int short max", int32(262143)},
		{"int full", int32(math.MinInt32)},
		{"long compact", int64(-8)},
		{"long compact max", int64(15)},
		{"long byte", int64(2047)},
		{"long short", int64(-262144)},
		{"long int", int64(math.MaxInt32)},
		{"long full", int64(math.MinInt64)},
		{"double zero", 0.0},
		{"double one", 1.0},
		{"double byte", 127.0},
		{"double short", -32768.0},
		{"double float", 1.5},
		{"double full", 1e300},
		{"date", time.UnixMilli(1700000000123)},
		{"string empty", ""},
		{"string compact", "hello"},
		{"string 31", strings.Repeat("a", 31)},
		{"string 32", strings.Repeat("a", 32)},
		{"string 1023", strings.Repeat("b", 1023)},
		{"string 1024", strings.Repeat("c", 1024)},
		{"string chunked", strings.Repeat("d", 9000)},
		{"string unicode", "héllo wörld ünïcödé 中文"},
		{"string supplementary", "emoji 😀 and 𝄞 music"},
		{"string supplementary chunked", strings.Repeat("😀", 3000)},
		{"binary empty", []byte{}},
		{"binary 15", bytes.Repeat([]byte{1}, 15)},
		{"binary 16", bytes.Repeat([]byte{2}, 16)},
		{"binary 1023", bytes.Repeat([]byte{3}, 1023)},
		{"binary 1024", bytes.Repeat([]byte{4}, 1024)},
		{"binary chunked", bytes.Repeat([]byte{5}, 70000)},
		{"untyped list", []any{int32(1), "two", nil, 3.5}},
		{"empty list", []any{}},
		{"long list", make([]any, 40)},
		{"typed string list", []string{"a", "b", "c"}},
		{"typed int list", []int32{1, 2, 3, 4, 5, 6, 7, 8, 9}},
		{"map", map[any]any{"a": int32(1), int32(2): []any{"x"}, "nested": map[any]any{"b": nil}}},
		{"string map", map[string]string{"path": "com.example.Svc", "version": "1.0"}},
		{"object", objectMap{"_class": "com.example.User", "name": "ann", "age": int32(42)}},
		{"objects sharing a class", []any{
			objectMap{"_class": "com.example.User", "name": "ann", "age": int32(42)},
			objectMap{"_class": "com.example.User", "name": "bob", "age": int32(7)},
		}},
		{"refs", []any{shared, shared, shared}},
	}
	for _, c := range cases {
		b := encode(t, c.v)
		skipAll(t, c.name, b, 1)
		if len(b) < 5000 {
			checkTruncation(t, c.name, b)
		}
	}
	// All of them in one stream: class definitions and references carry across values.
	var all []any
	for _, c := range cases {
		all = append(all, c.v)
	}
	all = append(all, objectMap{"_class": "com.example.User", "name": "cy", "age": int32(1)})
	skipAll(t, "one stream", encode(t, all...), len(all))
}

// Forms that the Go encoder does not produce but the grammar allows, built by hand.
func TestSkipHandBuiltForms(t *testing.T) {
	str := func(s string) []byte { return AppendString(nil, s) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	cases := []struct {
		name string
		b    []byte
	}{
		{"long from int 0x59", []byte{0x59, 0, 0, 1, 0}},
		{"long 'L'", []byte{'L', 0, 0, 0, 0, 0, 0, 0, 1}},
		{"date minutes 0x4b", []byte{0x4b, 0, 0x1a, 0x2b, 0x3c}},
		{"double byte 0x5d", []byte{0x5d, 0x80}},
		{"double short 0x5e", []byte{0x5e, 0x80, 0x00}},
		{"double mill 0x5f", []byte{0x5f, 0, 0, 0x10, 0}},
		{"double 'D'", []byte{'D', 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18}},
		{"string long form 'S'", []byte{'S', 0, 5, 'h', 'e', 'l', 'l', 'o'}},
		{"string short form 0x30", []byte{0x30, 3, 'a', 'b', 'c'}},
		{"string chunked 'R'", []byte{'R', 0, 2, 'a', 'b', 'R', 0, 1, 'c', 0x02, 'd', 'e'}},
		{"string chunked then 'S'", []byte{'R', 0, 1, 'a', 'S', 0, 1, 'b'}},
		{"string CESU-8 pair", []byte{0x02, 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80}},
		{"string 4-byte UTF-8 counts two", []byte{0x02, 0xf0, 0x9f, 0x98, 0x80}},
		{"binary short 0x34", cat([]byte{0x35, 0x01}, make([]byte, 257))},
		{"binary chunked 'A'", []byte{'A', 0, 2, 1, 2, 'B', 0, 1, 3}},
		{"binary chunked then compact", []byte{'A', 0, 1, 9, 0x21, 8}},
		{"variable typed list 0x55", cat([]byte{0x55}, str("[int"), []byte{0x91, 0x92, 'Z'})},
		{"variable typed list with type ref", []byte{0x55, 0x90, 0x91, 'Z'}},
		{"fixed typed list 'V'", cat([]byte{'V'}, str("[string"), []byte{0x92}, str("a"), str("b"))},
		{"variable untyped list 0x57", []byte{0x57, 0x91, 'N', 'T', 'Z'}},
		{"fixed untyped list 0x58", []byte{0x58, 0x93, 0x91, 0x92, 0x93}},
		{"compact typed list 0x72", cat([]byte{0x72}, str("[int"), []byte{0x91, 0x92})},
		{"compact untyped list 0x7a", []byte{0x7a, 'N', 'F'}},
		{"typed map 'M'", cat([]byte{'M'}, str("java.util.HashMap"), str("k"), str("v"), []byte{'Z'})},
		{"typed map with type ref", []byte{'M', 0x90, 0x91, 0x92, 'Z'}},
		{"untyped map 'H'", cat([]byte{'H'}, str("a"), []byte{0x91}, []byte{0x92}, str("b"), []byte{'Z'})},
		{"class def then 'O' object", cat([]byte{'C'}, str("Point"), []byte{0x92}, str("x"), str("y"),
			[]byte{'O', 0x90, 0x91, 0x92})},
		{"class def then compact object", cat([]byte{'C'}, str("Empty"), []byte{0x90}, []byte{0x60})},
		{"class def then a non-object value", cat([]byte{'C'}, str("X"), []byte{0x90}, str("s"))},
		{"ref 'Q'", []byte{'Q', 0x90}},
		{"map holding a ref to itself", []byte{'H', 0x01, 's', 'Q', 0x90, 'Z'}},
	}
	for _, c := range cases {
		skipAll(t, c.name, c.b, 1)
		checkTruncation(t, c.name, c.b)
	}
	// Objects refer to class definitions made earlier in the stream, in other values.
	stream := cat([]byte{'C'}, str("P"), []byte{0x91}, str("v"), []byte{0x60, 0x91},
		[]byte{0x60, 0x92}, []byte{'O', 0x90, 0x93},
		[]byte{'C'}, str("Q"), []byte{0x90}, []byte{0x61}, []byte{'O', 0x91})
	skipAll(t, "class defs across values", stream, 5)
}

func TestSkipRejectsInvalid(t *testing.T) {
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"end marker as a value", []byte{'Z'}, ErrInvalid},
		{"reserved 0x40", []byte{0x40}, ErrInvalid},
		{"reserved 'E'", []byte{'E'}, ErrInvalid},
		{"reserved 'G'", []byte{'G'}, ErrInvalid},
		{"reserved 'P'", []byte{'P'}, ErrInvalid},
		{"object of undefined class", []byte{0x60}, ErrInvalid},
		{"'O' object of undefined class", []byte{'O', 0x95}, ErrInvalid},
		{"negative list length", []byte{0x58, 0x8f}, ErrInvalid},
		{"list length past the data", []byte{0x58, 'I', 0x7f, 0xff, 0xff, 0xff, 'N'}, ErrInvalid},
		{"negative class field count", []byte{'C', 0x01, 'X', 0x8f}, ErrInvalid},
		{"class field name not a string", []byte{'C', 0x01, 'X', 0x91, 0x91, 0x60, 'N'}, ErrInvalid},
		{"list length not an int", []byte{0x58, 'N'}, ErrInvalid},
		{"ref index not an int", []byte{'Q', 'N'}, ErrInvalid},
		{"chunk followed by a non-string", []byte{'R', 0, 1, 'a', 0x91}, ErrInvalid},
		{"binary chunk followed by a non-binary", []byte{'A', 0, 1, 'a', 0x91}, ErrInvalid},
		{"continuation byte starting a character", []byte{0x01, 0x80}, ErrInvalid},
		{"invalid lead byte", []byte{0x01, 0xf8, 0x80, 0x80, 0x80, 0x80}, ErrInvalid},
		{"4-byte sequence with one unit left", []byte{0x01, 0xf0, 0x9f, 0x98, 0x80}, ErrInvalid},
		{"string data past the end", []byte{0x05, 'a', 'b'}, ErrTruncated},
		{"3-byte char cut", []byte{0x01, 0xe4, 0xb8}, ErrTruncated},
		{"empty", nil, ErrTruncated},
	}
	for _, c := range cases {
		var r Reader
		r.Reset(c.b)
		_, err := r.Skip(0)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Skip(%x) error %v, want %v", c.name, c.b, err, c.want)
		}
	}
}

func TestSkipDepthLimit(t *testing.T) {
	nest := func(depth int, open, close []byte) []byte {
		var b []byte
		for range depth {
			b = append(b, open...)
		}
		b = append(b, 'N')
		for range depth {
			b = append(b, close...)
		}
		return b
	}
	forms := []struct {
		name        string
		open, close []byte
	}{
		{"untyped variable lists", []byte{0x57}, []byte{'Z'}},
		{"compact lists", []byte{0x79}, nil},
		{"maps", []byte{'H', 0x90}, []byte{'Z'}},
	}
	for _, f := range forms {
		var r Reader
		ok := nest(MaxDepth, f.open, f.close)
		r.Reset(ok)
		if end, err := r.Skip(0); err != nil || end != len(ok) {
			t.Errorf("%s: %d levels: end %d err %v, want %d", f.name, MaxDepth, end, err, len(ok))
		}
		deep := nest(MaxDepth+1, f.open, f.close)
		r.Reset(deep)
		if _, err := r.Skip(0); !errors.Is(err, ErrTooDeep) {
			t.Errorf("%s: %d levels: %v, want ErrTooDeep", f.name, MaxDepth+1, err)
		}
	}
	// Objects nest through their fields.
	obj := append([]byte{'C', 0x01, 'X', 0x91, 0x01, 'f'}, bytes.Repeat([]byte{0x60}, 1000)...)
	obj = append(obj, 'N')
	var r Reader
	r.Reset(obj)
	if _, err := r.Skip(0); !errors.Is(err, ErrTooDeep) {
		t.Errorf("1000 nested objects: %v, want ErrTooDeep", err)
	}
	// A long run of class definitions is a loop, not a recursion: no depth error.
	defs := bytes.Repeat([]byte{'C', 0x01, 'X', 0x90}, 10000)
	defs = append(defs, 'N')
	r.Reset(defs)
	if end, err := r.Skip(0); err != nil || end != len(defs) || r.Classes() != 10000 {
		t.Errorf("10000 class definitions: end %d err %v classes %d", end, err, r.Classes())
	}
	// Class definitions past the inline table still resolve.
	more := append(bytes.Clone(defs[:len(defs)-1]), 'O', 'I', 0, 0, 0x27, 0x0f) // class 9999, 0 fields
	r.Reset(more)
	if end, err := r.Skip(0); err != nil || end != len(more) {
		t.Errorf("object of class 9999: end %d err %v", end, err)
	}
}

func TestReadString(t *testing.T) {
	long := strings.Repeat("x", 70000)
	cases := []struct {
		name   string
		b      []byte
		want   string
		null   bool
		copied bool
	}{
		{"compact", []byte{0x03, 'a', 'b', 'c'}, "abc", false, false},
		{"empty", []byte{0x00}, "", false, false},
		{"null", []byte{'N'}, "", true, false},
		{"long form", []byte{'S', 0, 3, 'a', 'b', 'c'}, "abc", false, false},
		{"chunked", []byte{'R', 0, 2, 'a', 'b', 0x01, 'c'}, "abc", false, true},
		{"CESU-8 pair", []byte{0x02, 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80}, "😀", false, true},
		{"4-byte UTF-8", []byte{0x02, 0xf0, 0x9f, 0x98, 0x80}, "😀", false, false},
		{"pair split across chunks", []byte{'R', 0, 1, 0xed, 0xa0, 0xbd, 0x01, 0xed, 0xb8, 0x80}, "😀", false, true},
		{"lone high surrogate kept", []byte{0x02, 0xed, 0xa0, 0xbd, 'a'}, "\xed\xa0\xbda", false, true},
		{"dubbo-go-hessian2 chunked", encode(t, long), long, false, true},
		{"dubbo-go-hessian2 supplementary", encode(t, "a😀b"), "a😀b", false, true},
		{"dubbo-go-hessian2 unicode", encode(t, "中文ü"), "中文ü", false, false},
	}
	for _, c := range cases {
		buf := append(bytes.Clone(c.b), 0x91) // a following value must not be consumed
		s, end, null, err := ReadString(buf, 0)
		if err != nil || s != c.want || null != c.null || end != len(c.b) {
			t.Errorf("%s: got %q end %d null %v err %v, want %q end %d null %v", c.name, trim(s), end, null, err, trim(c.want), len(c.b), c.null)
			continue
		}
		aliased := len(s) > 0 && bytesContain(buf, s)
		if c.copied == aliased && len(s) > 0 {
			t.Errorf("%s: copied=%v but aliasing=%v", c.name, c.copied, aliased)
		}
	}
	if _, _, _, err := ReadString([]byte{0x91}, 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("int read as a string: %v", err)
	}
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// bytesContain reports whether s points into b.
func bytesContain(b []byte, s string) bool {
	if len(s) == 0 || len(b) == 0 {
		return false
	}
	p := stringData(s)
	return p >= bytesData(b) && p < bytesData(b)+uintptr(len(b))
}

func stringData(s string) uintptr { return uintptr(unsafe.Pointer(unsafe.StringData(s))) }
func bytesData(b []byte) uintptr  { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

func TestReadStringAgreesWithDubboGoHessian2(t *testing.T) {
	for _, s := range []string{"", "a", "héllo", "中文", strings.Repeat("é", 5000), "x😀y", strings.Repeat("😀", 20000)} {
		b := AppendString(nil, s)
		got, end, _, err := ReadString(b, 0)
		if err != nil || got != s || end != len(b) {
			t.Errorf("ReadString(AppendString(%q)) = %q, %d, %v", trim(s), trim(got), end, err)
		}
		v, err := hessian2.NewDecoder(b).Decode()
		if err != nil || v != s {
			t.Errorf("dubbo-go-hessian2 decodes AppendString(%q) as %v, %v", trim(s), v, err)
		}
		if want := encode(t, s); !bytes.Equal(b, want) && len([]rune(s)) <= 4096 {
			// Up to the Go encoder's own chunk size both must write the same bytes.
			t.Errorf("AppendString(%q) = %x, dubbo-go-hessian2 writes %x", trim(s), b, want)
		}
	}
	// Invalid UTF-8 becomes U+FFFD.
	got, _, _, _ := ReadString(AppendString(nil, "a\xffb"), 0)
	if got != "a\uFFFDb" {
		t.Errorf("invalid UTF-8 written as %q", got)
	}
}

func TestAppendIntAndReadInt(t *testing.T) {
	for _, v := range []int32{0, 1, -16, 47, 48, -17, -2048, 2047, 2048, -262144, 262143, 262144, math.MaxInt32, math.MinInt32} {
		b := AppendInt(nil, v)
		got, end, err := ReadInt(b, 0)
		if err != nil || got != int64(v) || end != len(b) {
			t.Errorf("ReadInt(AppendInt(%d)) = %d, %d, %v", v, got, end, err)
		}
		if want := encode(t, v); !bytes.Equal(b, want) {
			t.Errorf("AppendInt(%d) = %x, dubbo-go-hessian2 writes %x", v, b, want)
		}
	}
	for _, v := range []int64{0, -8, 15, 16, -2048, 2047, -262144, 262143, math.MaxInt32, math.MinInt64, math.MaxInt64} {
		b := encode(t, v)
		got, end, err := ReadInt(b, 0)
		if err != nil || got != v || end != len(b) {
			t.Errorf("ReadInt(long %d as %x) = %d, %d, %v", v, b, got, end, err)
		}
	}
	for _, b := range [][]byte{{'N'}, {'D', 0, 0, 0, 0, 0, 0, 0, 0}, {0x01, 'a'}, {'I', 0}} {
		if _, _, err := ReadInt(b, 0); err == nil {
			t.Errorf("ReadInt(%x) accepted", b)
		}
	}
}

func TestDefinesRefs(t *testing.T) {
	for tag := range 256 {
		want := false
		switch {
		case tag == 'H' || tag == 'M' || tag == 'O' || tag == 'C':
			want = true
		case tag >= 0x55 && tag <= 0x58, tag >= 0x60 && tag <= 0x7f:
			want = true
		}
		if DefinesRefs(byte(tag)) != want {
			t.Errorf("DefinesRefs(%#x) = %v", tag, !want)
		}
	}
}

// thirdPartyDecode decodes one value with dubbo-go-hessian2, which panics on some inputs we
// accept (a surrogate pair split across string chunks, for one).
func thirdPartyDecode(b []byte) (v any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = errors.New("dubbo-go-hessian2 panicked")
		}
	}()
	return hessian2.NewDecoder(b).Decode()
}

func FuzzSkip(f *testing.F) {
	f.Add(encode(f, "hello", int32(5), map[any]any{"a": []any{int32(1), nil}}))
	f.Add(encode(f, objectMap{"_class": "a.B", "x": int64(1)}, objectMap{"_class": "a.B", "x": 2.5}))
	f.Add([]byte{'R', 0, 1, 0xed, 0xa0, 0xbd, 0x01, 0xed, 0xb8, 0x80})
	f.Add([]byte{'C', 0x01, 'P', 0x91, 0x01, 'v', 0x60, 0x57, 0x60, 'Q', 0x90, 'Z'})
	f.Add([]byte{'M', 0x04, '[', 'i', 'n', 't', 'V', 0x90, 0x92, 'A', 0, 1, 9, 0x21, 8, 0x4b, 1, 2, 3, 4, 'Z', 'Z'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Reader
		r.Reset(b)
		end, err := r.Skip(0)
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrTooDeep) {
				t.Fatalf("unexpected error kind: %v", err)
			}
		} else {
			if end <= 0 || end > len(b) {
				t.Fatalf("Skip ended at %d of %d", end, len(b))
			}
			// Every strict prefix of the value is incomplete.
			if end < 512 {
				for i := range end {
					var p Reader
					p.Reset(b[:i])
					if _, err := p.Skip(0); err == nil {
						t.Fatalf("prefix of %d/%d bytes skipped", i, end)
					}
				}
			}
			// Trailing bytes do not change where the value ends.
			var q Reader
			q.Reset(b[:end])
			if e2, err := q.Skip(0); err != nil || e2 != end {
				t.Fatalf("value alone: end %d err %v, want %d", e2, err, end)
			}
		}
		s, send, _, serr := ReadString(b, 0)
		if serr == nil {
			var q Reader
			q.Reset(b)
			if e2, err := q.Skip(0); err != nil || e2 != send {
				t.Fatalf("ReadString ended at %d, Skip at %d (%v)", send, e2, err)
			}
			// What we read is what an independent decoder reads, when it can read it.
			if v, err := thirdPartyDecode(b[:send]); err == nil {
				if vs, ok := v.(string); ok && vs != s && b[0] != 'N' && utf8.ValidString(s) {
					t.Fatalf("ReadString %q, dubbo-go-hessian2 %q", s, vs)
				}
			}
		}
	})
}

// TestSkipEveryTag builds, for each of the 256 tag bytes, the smallest value the grammar
// allows to start with it, and checks that Skip steps over exactly that value; the five
// bytes that start no value must be refused.
func TestSkipEveryTag(t *testing.T) {
	rep := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n) }
	// 16 class definitions without fields, so that objects of classes 0..15 are valid.
	var prefix []byte
	for range 16 {
		prefix = append(prefix, 'C', 0x01, 'X', 0x90)
	}
	valid := 0
	for tag := range 256 {
		c := byte(tag)
		var v []byte
		switch {
		case c <= 0x1f:
			v = append([]byte{c}, rep(int(c), 'a')...)
		case c <= 0x2f:
			v = append([]byte{c}, rep(int(c-0x20), 7)...)
		case c <= 0x33:
			v = append([]byte{c, 1}, rep(int(c-0x30)<<8|1, 'a')...)
		case c <= 0x37:
			v = append([]byte{c, 1}, rep(int(c-0x34)<<8|1, 7)...)
		case c <= 0x3f:
			v = []byte{c, 1, 2}
		case c == 'A':
			v = []byte{'A', 0, 1, 9, 'B', 0, 1, 8}
		case c == 'B':
			v = []byte{'B', 0, 2, 9, 8}
		case c == 'C':
			v = []byte{'C', 0x01, 'Y', 0x91, 0x01, 'f', 'O', 0xa0, 'N'} // a definition (class 16), then an object
		case c == 'D' || c == 0x4a || c == 'L':
			v = append([]byte{c}, rep(8, 1)...)
		case c == 'I' || c == 0x4b || c == 0x59 || c == 0x5f:
			v = append([]byte{c}, rep(4, 1)...)
		case c == 'F' || c == 'N' || c == 'T' || c == 0x5b || c == 0x5c:
			v = []byte{c}
		case c == 'H':
			v = []byte{'H', 0x01, 'k', 'N', 'Z'}
		case c == 'M':
			v = []byte{'M', 0x00, 0x91, 0x92, 'Z'}
		case c == 'O':
			v = []byte{'O', 0x9f}
		case c == 'Q':
			v = []byte{'Q', 0x90}
		case c == 'R':
			v = []byte{'R', 0, 1, 'a', 0x01, 'b'}
		case c == 'S':
			v = []byte{'S', 0, 1, 'a'}
		case c == 0x55:
			v = []byte{0x55, 0x00, 'N', 'Z'}
		case c == 'V':
			v = []byte{'V', 0x00, 0x91, 'N'}
		case c == 0x57:
			v = []byte{0x57, 'N', 'Z'}
		case c == 0x58:
			v = []byte{0x58, 0x91, 'N'}
		case c == 0x5d:
			v = []byte{c, 1}
		case c == 0x5e:
			v = []byte{c, 1, 2}
		case c >= 0x60 && c <= 0x6f:
			v = []byte{c}
		case c >= 0x70 && c <= 0x77:
			v = append([]byte{c, 0x00}, rep(int(c-0x70), 'N')...)
		case c >= 0x78 && c <= 0x7f:
			v = append([]byte{c}, rep(int(c-0x78), 'N')...)
		case c >= 0x80 && c <= 0xbf, c >= 0xd8 && c <= 0xef:
			v = []byte{c}
		case c >= 0xc0 && c <= 0xcf, c >= 0xf0:
			v = []byte{c, 1}
		case c >= 0xd0 && c <= 0xd7:
			v = []byte{c, 1, 2}
		}
		b := append(bytes.Clone(prefix), v...)
		if v == nil {
			b = append(b, c)
		}
		b = append(b, 0x91) // a following value that must not be consumed
		var r Reader
		r.Reset(b)
		start := 0
		for range 16 {
			var err error
			if start, err = r.classDef(start); err != nil {
				t.Fatal(err)
			}
		}
		end, err := r.Skip(start)
		if v == nil {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("tag %#x starts no value, Skip: end %d err %v", c, end, err)
			}
			continue
		}
		valid++
		if err != nil || end != len(b)-1 {
			t.Errorf("tag %#x: value %x: end %d err %v, want %d", c, v, end-start, err, len(v))
		}
	}
	if valid != 256-5 { // 0x40, 'E', 'G', 'P', 'Z' start nothing
		t.Errorf("%d tags start a value, want 251", valid)
	}
}

func TestIsASCII(t *testing.T) {
	for pre := range 10 {
		for n := range 50 {
			b := bytes.Repeat([]byte{0xff}, pre+n+3) // non-ASCII around the range
			for i := range n {
				b[pre+i] = 'a'
			}
			if !isASCII(b, pre, pre+n) {
				t.Fatalf("pre %d n %d: ASCII range reported non-ASCII", pre, n)
			}
			for i := range n {
				b[pre+i] = 0x80
				if isASCII(b, pre, pre+n) {
					t.Fatalf("pre %d n %d: non-ASCII byte at %d missed", pre, n, i)
				}
				b[pre+i] = 'a'
			}
		}
	}
}
