package dubbo

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"

	hessian2 "github.com/apache/dubbo-go-hessian2"

	"github.com/meltemi-mesh/meltemi/codecs"
)

func newConn(t testing.TB, opts codecs.Options) codecs.Conn {
	t.Helper()
	c, err := Factory{}.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c.NewConn()
}

func decode(t testing.TB, b []byte) *frame {
	t.Helper()
	f, n, err := newConn(t, codecs.Options{}).Decode(b)
	if err != nil || f == nil || n != len(b) {
		t.Fatalf("decode %x: frame %v n %d err %v", b, f != nil, n, err)
	}
	return f.(*frame)
}

// bodyValues decodes every value of a frame's body with dubbo-go-hessian2.
func bodyValues(t *testing.T, b []byte) []any {
	t.Helper()
	if got := binary.BigEndian.Uint32(b[12:16]); int(got) != len(b)-HeaderLen {
		t.Fatalf("header body length %d, frame body %d", got, len(b)-HeaderLen)
	}
	d := hessian2.NewDecoder(b[HeaderLen:])
	var vs []any
	for {
		v, err := d.Decode()
		if err != nil {
			if strings.Contains(err.Error(), "EOF") {
				return vs
			}
			t.Fatalf("dubbo-go-hessian2 decode of value %d: %v (body %x)", len(vs), err, b[HeaderLen:])
		}
		vs = append(vs, v)
	}
}

func TestFactory(t *testing.T) {
	if (Factory{}).Name() != "dubbo" {
		t.Fatal("name")
	}
	if _, err := (Factory{}).New(codecs.Options{Params: map[string]string{"b": "1", "a": "2"}}); err == nil ||
		!strings.Contains(err.Error(), `["a" "b"]`) {
		t.Fatalf("unknown params: %v", err)
	}
	c := newConn(t, codecs.Options{})
	if c.Mode() != "dubbo" {
		t.Fatalf("Mode %q", c.Mode())
	}
}

func TestDecodeHeaderErrors(t *testing.T) {
	c := newConn(t, codecs.Options{MaxFrameSize: 1000})
	cases := []struct {
		name string
		in   []byte
		want error
	}{
		{"bad first magic byte, alone", []byte{0xdb}, codecs.ErrMalformed},
		{"bad second magic byte", []byte{0xda, 0xbc}, codecs.ErrMalformed},
		{"negative body length", appendHeader(nil, flagsRequest, 0, 1, 0x80000000), codecs.ErrMalformed},
		{"body length beyond the limit", appendHeader(nil, flagsRequest, 0, 1, 985), codecs.ErrFrameTooLarge},
		{"largest unsigned body length", appendHeader(nil, flagsRequest, 0, 1, 0x7fffffff), codecs.ErrFrameTooLarge},
		{"unknown response type", frameOf(flagsResponse, StatusOK, 1, []byte{0x96}), codecs.ErrMalformed},
		{"response type not an int", frameOf(flagsResponse, StatusOK, 1, []byte{'N'}), codecs.ErrMalformed},
		{"empty ok response", frameOf(flagsResponse, StatusOK, 1, nil), codecs.ErrMalformed},
	}
	for _, tc := range cases {
		f, n, err := c.Decode(tc.in)
		if !errors.Is(err, tc.want) || f != nil || n != 0 {
			t.Errorf("%s: frame %v n %d err %v, want %v", tc.name, f != nil, n, err, tc.want)
		}
	}
	// A body at exactly the limit is fine; one byte more is refused from the header alone.
	ok := frameOf(flagsHeartbeat, 0, 1, make([]byte, 1000-HeaderLen))
	if f, _, err := c.Decode(ok); err != nil || f == nil {
		t.Errorf("frame at the limit: %v", err)
	}
	// Non-OK and non-hessian2 responses are not looked into.
	for _, b := range [][]byte{
		frameOf(flagsResponse, StatusServiceError, 1, nil),
		frameOf(6, StatusOK, 1, []byte("{}")),
	} {
		f := decode(t, b)
		want := codecs.KindErrorResponse
		if b[3] == byte(StatusOK) {
			want = codecs.KindResponse
		}
		if f.Kind() != want {
			t.Errorf("%x: kind %v, want %v", b, f.Kind(), want)
		}
	}
}

func TestKinds(t *testing.T) {
	cases := []struct {
		flags  byte
		status Status
		body   []byte
		want   codecs.Kind
	}{
		{0xc2, 0, []byte{'N'}, codecs.KindRequest},
		{0x82, 0, []byte{'N'}, codecs.KindOneway},
		{0xe2, 0, []byte{'N'}, codecs.KindHeartbeatRequest},
		{0xa2, 0, str("R"), codecs.KindHeartbeatRequest}, // read-only event, one-way
		{0x22, StatusOK, []byte{'N'}, codecs.KindHeartbeatResponse},
		{0x22, StatusServerError, []byte{'N'}, codecs.KindHeartbeatResponse},
		{0x02, StatusOK, []byte{0x91, 'N'}, codecs.KindResponse},
		{0x02, StatusOK, []byte{0x92}, codecs.KindResponse},
		{0x02, StatusOK, []byte{'I', 0, 0, 0, 4, 'N', 'H', 'Z'}, codecs.KindResponse},
		{0x02, StatusOK, []byte{0xe5, 'H', 'Z'}, codecs.KindResponse}, // type 5 as a compact long
		{0x02, StatusOK, []byte{0x90, 'N'}, codecs.KindErrorResponse},
		{0x02, StatusOK, []byte{0x93, 'N', 'H', 'Z'}, codecs.KindErrorResponse},
		{0x02, StatusBadRequest, str("bad"), codecs.KindErrorResponse},
		{0x02, StatusClientTimeout, str("slow"), codecs.KindErrorResponse},
	}
	for _, tc := range cases {
		if f := decode(t, frameOf(tc.flags, tc.status, 9, tc.body)); f.Kind() != tc.want {
			t.Errorf("flags %#x status %d body %x: kind %v, want %v", tc.flags, tc.status, tc.body, f.Kind(), tc.want)
		}
	}
}

func TestSetRequestIDFullRange(t *testing.T) {
	orig := frameOf(flagsRequest, 0, 1, dubboGoRequestBody(t, sampleAtts()))
	f := decode(t, orig)
	for _, id := range []uint64{0, 1, math.MaxInt64, math.MaxInt64 + 1, math.MaxUint64} {
		if err := f.SetRequestID(id); err != nil || f.RequestID() != id {
			t.Fatalf("SetRequestID(%d): %v, id now %d", id, err, f.RequestID())
		}
		out, _ := f.AppendTo(nil)
		if binary.BigEndian.Uint64(out[4:12]) != id || !bytes.Equal(out[12:], orig[12:]) || !bytes.Equal(out[:4], orig[:4]) {
			t.Fatalf("id %d: frame bytes %x", id, out)
		}
	}
}

func TestErrorReplies(t *testing.T) {
	conn := newConn(t, codecs.Options{})
	req := decode(t, frameOf(flagsRequest, 0, 0xabcdef, dubboGoRequestBody(t, sampleAtts())))
	want := map[codecs.Reason]struct {
		status Status
		text   string
	}{
		codecs.ReasonNoRoute:           {60, "no route"},
		codecs.ReasonNoHealthyUpstream: {60, "no healthy upstream"},
		codecs.ReasonTimeout:           {31, "timeout"},
		codecs.ReasonOverLimit:         {100, "over limit"},
		codecs.ReasonUnauthorized:      {40, "unauthorized"},
		codecs.ReasonUnavailable:       {80, "unavailable"},
		codecs.ReasonInternal:          {80, "internal error"},
		codecs.ReasonBadRequest:        {40, "bad request"},
	}
	if len(want) != len(codecs.Reasons()) {
		t.Fatal("a reason is missing from the test")
	}
	for _, r := range codecs.Reasons() {
		msg := "route default/users: 😀 ünïcode"
		out, err := conn.AppendErrorReply([]byte("x"), req, r, msg)
		if err != nil {
			t.Fatalf("%v: %v", r, err)
		}
		out = out[1:]
		if out[2] != SerializationHessian2 || Status(out[3]) != want[r].status || binary.BigEndian.Uint64(out[4:12]) != 0xabcdef {
			t.Errorf("%v: header %x, want flags 0x02 status %d id 0xabcdef", r, out[:16], want[r].status)
		}
		// dubbo-go's consumer decodes the body of a non-OK response as a string.
		vs := bodyValues(t, out)
		wantText := "meltemi: " + want[r].text + ": " + msg
		if len(vs) != 1 || vs[0] != wantText {
			t.Errorf("%v: body decodes as %#v, want %q", r, vs, wantText)
		}
		if f := decode(t, out); f.Kind() != codecs.KindErrorResponse {
			t.Errorf("%v: reply decodes as %v", r, f.Kind())
		}
	}
	// No message: just the reason.
	out, _ := conn.AppendErrorReply(nil, req, codecs.ReasonTimeout, "")
	if vs := bodyValues(t, out); vs[0] != "meltemi: timeout" {
		t.Errorf("empty message: %q", vs[0])
	}
	// The reply carries the request's current id.
	_ = req.SetRequestID(77)
	out, _ = conn.AppendErrorReply(nil, req, codecs.ReasonInternal, "m")
	if binary.BigEndian.Uint64(out[4:12]) != 77 {
		t.Errorf("reply id %d, want the rewritten 77", binary.BigEndian.Uint64(out[4:12]))
	}
	// Nothing to answer.
	oneway := decode(t, frameOf(flagsOneway, 0, 5, dubboGoRequestBody(t, nil)))
	hb := decode(t, frameOf(flagsHeartbeat, 0, 5, []byte{'N'}))
	for name, f := range map[string]codecs.Frame{"nil": nil, "oneway": oneway, "heartbeat": hb} {
		if out, err := conn.AppendErrorReply([]byte("keep"), f, codecs.ReasonInternal, "m"); !errors.Is(err, codecs.ErrUnsupported) || string(out) != "keep" {
			t.Errorf("error reply to %s: %q, %v; want ErrUnsupported and dst untouched", name, out, err)
		}
	}
}

func TestHeartbeatReply(t *testing.T) {
	conn := newConn(t, codecs.Options{})
	hb := decode(t, frameOf(flagsHeartbeat, 0, 0x0102030405060708, []byte{'N'}))
	out, err := conn.AppendHeartbeatReply([]byte{9}, hb)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{9, 0xda, 0xbb, 0x22, 20, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 1, 'N'}
	if !bytes.Equal(out, want) {
		t.Fatalf("heartbeat reply %x, want %x", out, want)
	}
	req := decode(t, frameOf(flagsRequest, 0, 1, dubboGoRequestBody(t, nil)))
	if _, err := conn.AppendHeartbeatReply(nil, req); !errors.Is(err, codecs.ErrUnsupported) {
		t.Fatalf("heartbeat reply to a request: %v", err)
	}
}

func TestParamCount(t *testing.T) {
	cases := []struct {
		desc string
		n    int
		ok   bool
	}{
		{"", 0, true},
		{"I", 1, true},
		{"Ljava/lang/String;I[Ljava/lang/Object;", 3, true},
		{"[[I[Ljava/util/Map;ZBCDFJSV", 10, true},
		{"L$Proxy_1/a$b;", 1, true},
		{"Ljava.lang.String;", 0, false},
		{"Ljava/lang/String", 0, false},
		{"L;", 0, false},
		{"L1a;", 0, false},
		{"Lja//va;", 0, false},
		{"[", 0, false},
		{"X", 0, false},
		{"java.lang.String", 0, false},
	}
	for _, tc := range cases {
		n, ok := paramCount(tc.desc)
		if n != tc.n || ok != tc.ok {
			t.Errorf("paramCount(%q) = %d, %v; want %d, %v", tc.desc, n, ok, tc.n, tc.ok)
		}
		if tc.ok {
			// Where the strict parse succeeds, providers' pattern counts the same.
			if got := len(hessian2.DescRegex.FindAllString(tc.desc, -1)); got != n {
				t.Errorf("%q: providers count %d, we count %d", tc.desc, got, n)
			}
		}
	}
}

// A descriptor that is not a strict list is counted the way providers count it.
func TestDescriptorFallback(t *testing.T) {
	b := frameOf(flagsRequest, 0, 1, enc(t, "2.0.2", "com.example.Odd", "", "Call", "Ljava.lang.String;",
		"only-arg", map[string]string{"x-odd": "found"}))
	f := decode(t, b)
	if v, ok := f.Attribute("x-odd"); !ok || v != "found" {
		t.Fatalf("attachment behind a loose descriptor: %q, %v", v, ok)
	}
	if v, _ := f.Attribute("param_types"); v != "Ljava.lang.String;" {
		t.Fatalf("param_types %q", v)
	}
}

// Attachments sent as a reference to a map argument: the full-decode fallback.
func TestFullDecodeFallback(t *testing.T) {
	m := map[any]any{"x-z": "last", "x-a": "first", "n": int32(3)}
	body := append(enc(t, "2.0.2", "com.example.Ref", "1.0", "Call", "Ljava/util/Map;", m), 'Q', 0x90)
	f := decode(t, frameOf(flagsRequest, 0, 1, body))
	if v, ok := f.Attribute("x-a"); !ok || v != "first" {
		t.Fatalf("x-a = %q, %v", v, ok)
	}
	if _, ok := f.Attribute("n"); ok {
		t.Fatal("non-string attachment reported as a header")
	}
	if v, _ := f.Attribute("service"); v != "com.example.Ref" {
		t.Fatalf("service %q", v)
	}
	var keys []string
	f.RangeHeaders(func(k, _ string) bool { keys = append(keys, k); return true })
	if strings.Join(keys, ",") != "x-a,x-z" {
		t.Fatalf("fallback headers %v, want key order x-a,x-z", keys)
	}
	if err := f.SetHeader("x-new", "1"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.AppendTo(nil); !errors.Is(err, codecs.ErrHeadersUnsupported) {
		t.Fatalf("mutating referenced attachments: %v", err)
	}
	// A reference to something that is not a map: no attachments, no panic.
	body = append(enc(t, "2.0.2", "com.example.Ref", "1.0", "Call", "Ljava/util/List;", []any{"a"}), 'Q', 0x90)
	f = decode(t, frameOf(flagsRequest, 0, 1, body))
	if _, ok := f.Attribute("a"); ok {
		t.Fatal("attribute from a reference to a list")
	}
	if v, ok := f.Attribute("method"); !ok || v != "Call" {
		t.Fatal("built-ins lost when the attachments are unreadable")
	}
}

func TestAttributesOfOddRequests(t *testing.T) {
	// No attachments at all after the arguments; null attachments.
	for name, tail := range map[string][]byte{"absent": nil, "null": {'N'}} {
		body := cat(enc(t, "2.0.2", "com.example.Bare", "", "Ping", "I", int32(1)), tail)
		f := decode(t, frameOf(flagsRequest, 0, 1, body))
		if v, ok := f.Attribute("service"); !ok || v != "com.example.Bare" {
			t.Errorf("%s: service %q %v", name, v, ok)
		}
		if _, ok := f.Attribute("group"); ok {
			t.Errorf("%s: group present", name)
		}
		if err := f.SetHeader("x-added", "1"); err != nil {
			t.Fatal(err)
		}
		out, err := f.AppendTo(nil)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		vs := bodyValues(t, out)
		if m, ok := vs[len(vs)-1].(map[any]any); !ok || m["x-added"] != "1" || len(vs) != 7 {
			t.Errorf("%s: mutated body %#v", name, vs)
		}
	}
	// A truncated argument list: built-ins work, headers do not, mutation fails cleanly.
	f := decode(t, frameOf(flagsRequest, 0, 1, enc(t, "2.0.2", "com.example.Short", "", "Two", "II", int32(1))))
	if _, ok := f.Attribute("method"); !ok {
		t.Error("method missing")
	}
	if _, ok := f.Attribute("x"); ok {
		t.Error("header from a malformed body")
	}
	_ = f.SetHeader("x", "1")
	if _, err := f.AppendTo(nil); !errors.Is(err, codecs.ErrMalformed) {
		t.Errorf("mutation of a malformed body: %v", err)
	}
	// A body that is not even the head strings.
	f = decode(t, frameOf(flagsRequest, 0, 1, []byte{0x91, 0x92}))
	if _, ok := f.Attribute("service"); ok {
		t.Error("service from garbage")
	}
}

func TestDuplicateAttachmentKeys(t *testing.T) {
	body := cat(enc(t, "2.0.2", "s", "", "m", ""),
		[]byte{'H'}, str("k"), str("first"), str("other"), str("o"), str("k"), str("second"),
		str("n"), str("str"), str("n"), []byte{0x91}, []byte{'Z'})
	f := decode(t, frameOf(flagsRequest, 0, 1, body))
	if v, _ := f.Attribute("k"); v != "second" {
		t.Errorf("k = %q, want the last value", v)
	}
	if _, ok := f.Attribute("n"); ok {
		t.Error("n is finally an int: not a header")
	}
	var got []string
	f.RangeHeaders(func(k, v string) bool { got = append(got, k+"="+v); return true })
	if strings.Join(got, ",") != "other=o,k=second" {
		t.Errorf("RangeHeaders %v", got)
	}
	// Setting a duplicated key replaces every occurrence.
	_ = f.SetHeader("k", "third")
	out, err := f.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := decode(t, out).Attribute("k"); v != "third" || bytes.Contains(out, []byte("second")) {
		t.Errorf("after SetHeader k = %q, body %q", v, out)
	}
}

func TestBuiltinsWinOverAttachments(t *testing.T) {
	f := decode(t, frameOf(flagsRequest, 0, 1, enc(t, "2.0.2", "real.Service", "2.0", "realMethod", "",
		map[string]string{"service": "fake", "method": "fake", "version": "fake", "group": "g", "interface": "fake"})))
	want := map[string]string{"service": "real.Service", "interface": "real.Service", "method": "realMethod", "version": "2.0", "group": "g"}
	for k, v := range want {
		if got, _ := f.Attribute(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	n := 0
	f.RangeHeaders(func(k, v string) bool { n++; return true })
	if n != 5 {
		t.Errorf("RangeHeaders yielded %d headers, want all 5 attachments", n)
	}
	stop := 0
	f.RangeHeaders(func(k, v string) bool { stop++; return false })
	if stop != 1 {
		t.Errorf("RangeHeaders went on after false: %d calls", stop)
	}
}

// stringInFrame reports whether s points into the frame's own bytes.
func stringInFrame(f *frame, s string) bool {
	p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
	base := uintptr(unsafe.Pointer(unsafe.SliceData(f.b)))
	return len(s) > 0 && p >= base && p < base+uintptr(len(f.b))
}

func TestZeroCopyAndUnicode(t *testing.T) {
	cesu := []byte{0x04, 'a', 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80, 'b'} // "a😀b" as Java writes it
	body := cat(enc(t, "2.0.2", "com.example.Unicode", "", "Grüß", ""),
		[]byte{'H'}, str("x-cesu"), cesu, str("x-utf8"), []byte{0x04, 'a', 0xf0, 0x9f, 0x98, 0x80, 'b'},
		str("x-plain"), str("plain ascii"), []byte{'Z'})
	f := decode(t, frameOf(flagsRequest, 0, 1, body))
	for k, want := range map[string]string{"x-cesu": "a😀b", "x-utf8": "a😀b", "x-plain": "plain ascii", "method": "Grüß"} {
		got, ok := f.Attribute(k)
		if !ok || got != want || !utf8.ValidString(got) {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
		if copied := k == "x-cesu"; stringInFrame(f, got) == copied {
			t.Errorf("%s: in frame bytes = %v, want %v", k, !copied, copied)
		}
	}
	// Strings stay valid after the id is rewritten and the frame is re-encoded with mutations.
	got, _ := f.Attribute("x-plain")
	_ = f.SetRequestID(99)
	_ = f.SetHeader("x-plain", "changed")
	if _, err := f.AppendTo(nil); err != nil {
		t.Fatal(err)
	}
	if got != "plain ascii" {
		t.Errorf("attribute changed to %q", got)
	}
}

func TestMutationRefusesReferenceAnchors(t *testing.T) {
	arg := map[any]any{"shared": "value"}
	// The attachment "obj" is a map; "ref" refers to the argument; "num" is an int.
	body := cat(enc(t, "2.0.2", "s", "", "m", "Ljava/util/Map;", arg),
		[]byte{'H'}, str("obj"), []byte{'H', 0x01, 'a', 0x91, 'Z'}, str("ref"), []byte{'Q', 0x90},
		str("num"), []byte{0x91}, str("list"), []byte{0x79, 'N'}, str("s"), str("v"), []byte{'Z'})
	frameBytes := frameOf(flagsRequest, 0, 1, body)
	for _, name := range []string{"obj", "list"} {
		for _, del := range []bool{false, true} {
			f := decode(t, frameBytes)
			if del {
				_ = f.DelHeader(name)
			} else {
				_ = f.SetHeader(name, "x")
			}
			if _, err := f.AppendTo(nil); !errors.Is(err, errNotReplaceable) || !strings.Contains(err.Error(), name) {
				t.Errorf("del=%v %s: %v, want errNotReplaceable", del, name, err)
			}
		}
	}
	// A reference, an int and a string can be replaced or removed without renumbering.
	f := decode(t, frameBytes)
	_ = f.SetHeader("num", "1")
	_ = f.DelHeader("ref")
	_ = f.SetHeader("s", "w")
	_ = f.DelHeader("absent")
	out, err := f.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	vs := bodyValues(t, out)
	atts := vs[len(vs)-1].(map[any]any)
	if atts["num"] != "1" || atts["s"] != "w" || atts["ref"] != nil || len(atts) != 4 {
		t.Errorf("attachments after mutation: %#v", atts)
	}
	if inner, ok := atts["obj"].(map[any]any); !ok || inner["a"] != int32(1) {
		t.Errorf("map attachment not kept verbatim: %#v", atts["obj"])
	}
}

func TestMutationKeepsArgumentsAndRefs(t *testing.T) {
	user := map[string]any{"_class": "com.example.User", "name": "ann", "age": int32(42)}
	shared := map[any]any{"k": "v"}
	orig := frameOf(flagsRequest, 0, 1, enc(t, "2.0.2", "s", "1", "m", "Ljava/util/List;",
		[]any{user, shared, shared}, map[string]string{"a": "1", "b": "2"}))
	f := decode(t, orig)
	_ = f.DelHeader("a")
	_ = f.SetHeader("b", "two")
	_ = f.SetHeader("c", "3")
	out, err := f.AppendTo([]byte("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	out = out[len("prefix"):]
	before, after := bodyValues(t, orig), bodyValues(t, out)
	// Everything up to the attachments is byte-identical and decodes the same.
	argsEnd := len(orig) - len(enc(t, map[string]string{"a": "1", "b": "2"}))
	if !bytes.Equal(out[4:12], orig[4:12]) || !bytes.Equal(out[16:argsEnd], orig[16:argsEnd]) {
		t.Fatal("bytes before the attachments changed")
	}
	list := after[5].([]any)
	if list[1].(map[any]any)["k"] != "v" || list[2].(map[any]any)["k"] != "v" {
		t.Errorf("the reference no longer resolves: %#v", list)
	}
	if len(after) != len(before) {
		t.Fatalf("%d values, want %d", len(after), len(before))
	}
	atts := after[6].(map[any]any)
	if len(atts) != 2 || atts["b"] != "two" || atts["c"] != "3" {
		t.Errorf("attachments %#v", atts)
	}
	g := decode(t, out)
	if v, _ := g.Attribute("c"); v != "3" {
		t.Errorf("c = %q", v)
	}
	// The original frame is not affected, and encoding twice gives the same bytes.
	if v, _ := f.Attribute("a"); v != "1" {
		t.Error("mutation reflected in the frame's attributes")
	}
	again, _ := f.AppendTo(nil)
	if !bytes.Equal(again, out) {
		t.Error("AppendTo is not repeatable")
	}
	// Last SetHeader/DelHeader of a name wins.
	_ = f.SetHeader("a", "back")
	_ = f.DelHeader("c")
	out, _ = f.AppendTo(nil)
	g = decode(t, out)
	if v, _ := g.Attribute("a"); v != "back" {
		t.Errorf("a = %q", v)
	}
	if _, ok := g.Attribute("c"); ok {
		t.Error("c was deleted after being set")
	}
}

func TestResponseMutationUpgradesType(t *testing.T) {
	exception := map[string]any{"_class": "java.lang.IllegalStateException", "detailMessage": "boom"}
	cases := []struct {
		name     string
		body     []byte
		wantType int32
		kind     codecs.Kind
	}{
		{"value", enc(t, int32(respValue), "result"), respValueAtt, codecs.KindResponse},
		{"null", enc(t, int32(respNull)), respNullAtt, codecs.KindResponse},
		{"exception", enc(t, int32(respException), exception), respExceptionAtt, codecs.KindErrorResponse},
		{"value with attachments", enc(t, int32(respValueAtt), "result", map[string]string{"old": "o"}), respValueAtt, codecs.KindResponse},
		{"null with null attachments", enc(t, int32(respNullAtt), nil), respNullAtt, codecs.KindResponse},
		{"value in a long int form", cat([]byte{'I', 0, 0, 0, 1}, str("result")), respValueAtt, codecs.KindResponse},
	}
	for _, tc := range cases {
		f := decode(t, frameOf(flagsResponse, StatusOK, 42, tc.body))
		before := bodyValues(t, f.b)
		if err := f.SetHeader("x-proxy", "meltemi"); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		out, err := f.AppendTo(nil)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// Read back by dubbo-go-hessian2: type, the same value, then the attachments.
		vs := bodyValues(t, out)
		if vs[0] != tc.wantType {
			t.Errorf("%s: response type %v, want %d", tc.name, vs[0], tc.wantType)
		}
		if tc.wantType != respNullAtt && !strings.Contains(tc.name, "exception") && vs[1] != "result" {
			t.Errorf("%s: value %#v", tc.name, vs[1])
		}
		if tc.name == "exception" && len(vs) != 3 {
			t.Errorf("exception: %d values", len(vs))
		}
		atts, ok := vs[len(vs)-1].(map[any]any)
		if !ok || atts["x-proxy"] != "meltemi" {
			t.Errorf("%s: attachments %#v (before: %#v)", tc.name, vs[len(vs)-1], before)
		}
		if strings.Contains(tc.name, "with attachments") && atts["old"] != "o" {
			t.Errorf("%s: old attachment lost", tc.name)
		}
		g := decode(t, out)
		if g.Kind() != tc.kind || g.RequestID() != 42 {
			t.Errorf("%s: mutated frame is %v id %d", tc.name, g.Kind(), g.RequestID())
		}
		if v, _ := g.Attribute("x-proxy"); v != "meltemi" {
			t.Errorf("%s: x-proxy = %q", tc.name, v)
		}
	}
	// Deleting a header that is not there leaves a response as it was.
	orig := frameOf(flagsResponse, StatusOK, 1, enc(t, int32(respValue), "r"))
	f := decode(t, orig)
	_ = f.DelHeader("nothing")
	if out, err := f.AppendTo(nil); err != nil || !bytes.Equal(out, orig) {
		t.Errorf("no-op deletion changed the frame: %x, %v", out, err)
	}
}

func TestHeadersUnsupported(t *testing.T) {
	for name, b := range map[string][]byte{
		"heartbeat":          frameOf(flagsHeartbeat, 0, 1, []byte{'N'}),
		"heartbeat response": frameOf(flagsHBResponse, StatusOK, 1, []byte{'N'}),
		"status 80":          frameOf(flagsResponse, StatusServerError, 1, str("err")),
		"fastjson request":   frameOf(flagsFastjson, 0, 1, []byte("{}")),
		"fastjson response":  frameOf(6, StatusOK, 1, []byte("{}")),
	} {
		f := decode(t, b)
		if err := f.SetHeader("a", "b"); !errors.Is(err, codecs.ErrHeadersUnsupported) {
			t.Errorf("%s: SetHeader: %v", name, err)
		}
		if err := f.DelHeader("a"); !errors.Is(err, codecs.ErrHeadersUnsupported) {
			t.Errorf("%s: DelHeader: %v", name, err)
		}
		if _, ok := f.Attribute("service"); ok {
			t.Errorf("%s: has attributes", name)
		}
		f.RangeHeaders(func(string, string) bool { t.Errorf("%s: has headers", name); return true })
		if out, err := f.AppendTo(nil); err != nil || !bytes.Equal(out, b) {
			t.Errorf("%s: pass-through AppendTo: %v", name, err)
		}
	}
}

func TestMutationOverLimit(t *testing.T) {
	b := frameOf(flagsRequest, 0, 1, dubboGoRequestBody(t, sampleAtts()))
	f, _, err := newConn(t, codecs.Options{MaxFrameSize: len(b) + 10}).Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	_ = f.SetHeader("x-big", strings.Repeat("x", 100))
	if out, err := f.AppendTo([]byte("d")); !errors.Is(err, codecs.ErrFrameTooLarge) || string(out) != "d" {
		t.Fatalf("oversized mutation: %q, %v", out, err)
	}
}

// Many attachments spill out of the inline array and use the map path of RangeHeaders.
func TestManyAttachments(t *testing.T) {
	atts := map[string]string{}
	for i := range 100 {
		atts["x-"+strings.Repeat("k", i)] = strings.Repeat("v", i)
	}
	f := decode(t, frameOf(flagsRequest, 0, 1, dubboGoRequestBody(t, atts)))
	n := 0
	f.RangeHeaders(func(k, v string) bool {
		n++
		if got, _ := f.Attribute(k); got != v || len(k)-2 != len(v) {
			t.Fatalf("%s = %q / %q", k, got, v)
		}
		return true
	})
	if n != 100 {
		t.Fatalf("%d headers, want 100", n)
	}
	// A hostile number of entries is refused rather than tracked.
	body := cat(enc(t, "2.0.2", "s", "", "m", ""), []byte{'H'},
		bytes.Repeat([]byte{0x00, 'N'}, MaxAttachments+1), []byte{'Z'})
	f = decode(t, frameOf(flagsRequest, 0, 1, body))
	if _, ok := f.Attribute(""); ok {
		t.Fatal("attributes from a map over the entry limit")
	}
	if v, ok := f.Attribute("method"); !ok || v != "m" {
		t.Fatal("built-ins lost")
	}
}

func TestAttachmentsBehindClassDefinitions(t *testing.T) {
	// A class definition may stand in front of any value, the attachments map included.
	body := cat(enc(t, "2.0.2", "s", "", "m", ""), []byte{'C'}, str("P"), []byte{0x90},
		[]byte{'H'}, str("k"), str("v"), str("o"), []byte{0x60}, []byte{'Z'})
	f := decode(t, frameOf(flagsRequest, 0, 1, body))
	if v, _ := f.Attribute("k"); v != "v" {
		t.Fatalf("k = %q", v)
	}
	_ = f.SetHeader("k", "w")
	out, err := f.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := decode(t, out).Attribute("k"); v != "w" {
		t.Fatalf("after mutation k = %q", v)
	}
}

// Decoding the attributes routing needs costs no allocation beyond the frame and its bytes.
func TestAttributeAllocations(t *testing.T) {
	b := frameOf(flagsRequest, 0, 1, dubboGoRequestBody(t, sampleAtts()))
	conn := newConn(t, codecs.Options{})
	allocs := testing.AllocsPerRun(100, func() {
		f, _, _ := conn.Decode(b)
		f.Attribute("service")
		f.Attribute("method")
		f.Attribute("version")
		f.Attribute("x-tenant")
	})
	// One: the frame and its bytes share an allocation for frames up to 4 KiB.
	if allocs > 1 {
		t.Fatalf("%v allocations per decode and attribute lookup, want 1", allocs)
	}
}

func TestFrameBuffers(t *testing.T) {
	conn := newConn(t, codecs.Options{})
	for _, n := range []int{16, 17, 64, 65, 128, 129, 256, 257, 512, 513, 768, 769, 1024, 1025,
		1536, 1537, 2048, 2049, 3072, 3073, 4096, 4097, 10000} {
		f := newFrame(n)
		if len(f.b) != n || f.kind != 0 || f.att.state != 0 {
			t.Fatalf("newFrame(%d): len %d, frame not zero", n, len(f.b))
		}
		// A heartbeat of exactly n bytes decodes and re-encodes byte for byte.
		b := frameOf(flagsHeartbeat, 0, uint64(n), bytes.Repeat([]byte{'N'}, n-HeaderLen))
		g, used, err := conn.Decode(b)
		if err != nil || used != n || g.RequestID() != uint64(n) {
			t.Fatalf("%d bytes: used %d, err %v", n, used, err)
		}
		_ = g.SetRequestID(1)
		out, _ := g.AppendTo(nil)
		if !bytes.Equal(out[HeaderLen:], b[HeaderLen:]) || binary.BigEndian.Uint64(out[4:12]) != 1 {
			t.Fatalf("%d bytes: frame bytes changed", n)
		}
	}
}

// otherFrame is a frame of some other codec.
type otherFrame struct{ codecs.Frame }

func TestRepliesToForeignFrames(t *testing.T) {
	conn := newConn(t, codecs.Options{})
	for name, f := range map[string]codecs.Frame{"nil": nil, "foreign": otherFrame{}} {
		if _, err := conn.AppendHeartbeatReply(nil, f); !errors.Is(err, codecs.ErrUnsupported) {
			t.Errorf("heartbeat reply to %s frame: %v", name, err)
		}
	}
	if _, err := conn.AppendErrorReply(nil, otherFrame{}, codecs.ReasonInternal, "m"); !errors.Is(err, codecs.ErrUnsupported) ||
		!strings.Contains(err.Error(), "another codec") {
		t.Errorf("error reply to a foreign frame: %v", err)
	}
	// A reason this codec does not know yet still gives an error status.
	req := decode(t, frameOf(flagsRequest, 0, 1, dubboGoRequestBody(t, nil)))
	out, err := conn.AppendErrorReply(nil, req, codecs.Reason(200), "m")
	if err != nil || Status(out[3]) != StatusServerError {
		t.Errorf("unknown reason: status %d, %v", out[3], err)
	}
}

func TestChunkedAndSurrogateKeys(t *testing.T) {
	body := cat(enc(t, "2.0.2", "s", "", "m", ""), []byte{'H'},
		[]byte{'R', 0, 2, 'x', '-', 0x03, 'k', 'e', 'y'}, str("chunked-key"),
		[]byte{0x03, 'k', 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80}, str("emoji-key"), []byte{'Z'})
	f := decode(t, frameOf(flagsRequest, 0, 1, body))
	for k, want := range map[string]string{"x-key": "chunked-key", "k😀": "emoji-key"} {
		if v, ok := f.Attribute(k); !ok || v != want {
			t.Errorf("%q = %q, %v; want %q", k, v, ok, want)
		}
	}
	_ = f.SetHeader("x-key", "new")
	_ = f.DelHeader("k😀")
	out, err := f.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	vs := bodyValues(t, out)
	if atts := vs[len(vs)-1].(map[any]any); len(atts) != 1 || atts["x-key"] != "new" {
		t.Errorf("attachments after mutation %#v", atts)
	}
}

// The attributes of every hessian2 request sample agree with a full decode of its body by
// dubbo-go-hessian2: the built-in fields, and every string attachment as a header.
func TestAttributesAgreeWithFullDecode(t *testing.T) {
	for _, smp := range append(samples(t), codectestSampleForBench(t)) {
		f := decode(t, smp.Bytes)
		if !f.isRequest() || !f.hessian {
			continue
		}
		vs := bodyValues(t, smp.Bytes)
		for i, name := range fieldNames {
			want, _ := vs[i].(string) // a null version decodes as nil: ""
			if got, ok := f.Attribute(name); !ok || got != want {
				t.Errorf("%s: %s = %q, full decode %q", smp.Name, name, got, want)
			}
		}
		atts, ok := vs[len(vs)-1].(map[any]any)
		if !ok {
			t.Fatalf("%s: last value %T", smp.Name, vs[len(vs)-1])
		}
		headers := map[string]string{}
		f.RangeHeaders(func(k, v string) bool { headers[k] = v; return true })
		want := map[string]string{}
		for k, v := range atts {
			ks, ok1 := k.(string)
			vs, ok2 := v.(string)
			if ok1 && ok2 {
				want[ks] = vs
			}
		}
		if len(headers) != len(want) {
			t.Errorf("%s: headers %v, full decode %v", smp.Name, headers, want)
		}
		for k, v := range want {
			if headers[k] != v {
				t.Errorf("%s: header %q = %q, full decode %q", smp.Name, k, headers[k], v)
			}
		}
	}
}
