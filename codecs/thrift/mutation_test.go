package thrift

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
)

func headerList(f *frame) string {
	var kv []string
	f.RangeHeaders(func(k, v string) bool { kv = append(kv, k+"="+v); return true })
	return strings.Join(kv, ",")
}

// checkTHeaderLayout checks the length word, header size and padding of a THeader frame.
func checkTHeaderLayout(t *testing.T, name string, b []byte) {
	t.Helper()
	if int(binary.BigEndian.Uint32(b)) != len(b)-4 {
		t.Errorf("%s: length word %d, frame %d bytes", name, binary.BigEndian.Uint32(b), len(b)-4)
	}
	f := decodeOne(t, newCodec(t, nil), b)
	end := f.infoEnd
	if f.tailStart < f.blockEnd {
		end = f.blockEnd
	}
	if pad := b[end:f.blockEnd]; len(pad) > 3 || !bytes.Equal(pad, make([]byte, len(pad))) {
		t.Errorf("%s: padding % x", name, pad)
	}
}

func TestMutationTHeader(t *testing.T) {
	c := newCodec(t, nil)
	for _, stream := range []string{"header/binary", "header/compact"} {
		orig := streamSample(t, stream, "call_calculate")
		f := decodeOne(t, c, orig)
		if got := headerList(f); got != "x-request-id=5b1c-77aa,user=alice,x-route=canary" {
			t.Fatalf("%s: headers %s", stream, got)
		}
		steps := []struct {
			set  bool
			k, v string
		}{
			{true, "user", "bob"},     // overwrite: keeps its place
			{false, "x-route", ""},    // delete
			{true, "x-new", "first"},  // new: goes last
			{true, "x-new", "second"}, // set twice: the last value
			{true, "x-gone", "1"},     // set then deleted: nothing
			{false, "x-gone", ""},
			{false, "x-absent", ""}, // deleting what is not there: nothing
		}
		for _, s := range steps {
			var err error
			if s.set {
				err = f.SetHeader(s.k, s.v)
			} else {
				err = f.DelHeader(s.k)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := f.SetRequestID(77); err != nil {
			t.Fatal(err)
		}
		out, err := f.AppendTo([]byte("prefix"))
		if err != nil {
			t.Fatal(err)
		}
		if string(out[:6]) != "prefix" {
			t.Fatal("AppendTo did not append")
		}
		out = out[6:]
		checkTHeaderLayout(t, stream, out)
		g := decodeOne(t, c, out)
		if got := headerList(g); got != "x-request-id=5b1c-77aa,user=bob,x-new=second" {
			t.Errorf("%s: mutated headers %s", stream, got)
		}
		if g.RequestID() != 77 || g.Kind() != codecs.KindRequest || binary.BigEndian.Uint32(out[headerSeqOff:]) != 77 {
			t.Errorf("%s: id %d kind %v", stream, g.RequestID(), g.Kind())
		}
		if !bytes.Equal(out[g.blockEnd:], f.raw[f.blockEnd:]) {
			t.Errorf("%s: payload bytes changed", stream)
		}
		if !bytes.Equal(out[4:8], orig[4:8]) {
			t.Errorf("%s: magic/flags changed", stream)
		}
		// The frame itself still reports what it was decoded with.
		if got := headerList(f); got != "x-request-id=5b1c-77aa,user=alice,x-route=canary" {
			t.Errorf("%s: decoded frame's headers became %s", stream, got)
		}
		if f.Size() != len(orig) {
			t.Errorf("%s: Size %d after mutations, want the decoded size %d", stream, f.Size(), len(orig))
		}
		// AppendTo is repeatable.
		again, _ := f.AppendTo(nil)
		if !bytes.Equal(again, out) {
			t.Errorf("%s: second AppendTo differs", stream)
		}
	}
}

func TestMutationAddAndRemoveAll(t *testing.T) {
	c := newCodec(t, nil)
	// A THeader frame without info headers gets a KEYVALUE section.
	f := decodeOne(t, c, streamSample(t, "header/compact", "reply_ping_void"))
	if headerList(f) != "" {
		t.Fatal("sample has headers")
	}
	for i := range 40 { // enough to need several padding variants and a long block
		if err := f.SetHeader("k"+strings.Repeat("x", i), strings.Repeat("v", i)); err != nil {
			t.Fatal(err)
		}
		out, err := f.AppendTo(nil)
		if err != nil {
			t.Fatal(err)
		}
		checkTHeaderLayout(t, "add", out)
		if got := strings.Count(headerList(decodeOne(t, c, out)), "="); got != i+1 {
			t.Fatalf("%d headers after %d SetHeader", got, i+1)
		}
	}
	// Deleting every header leaves no KEYVALUE section at all.
	g := decodeOne(t, c, streamSample(t, "header/binary", "call_mux_echo"))
	for _, k := range []string{"x-request-id", "user", "x-route"} {
		if err := g.DelHeader(k); err != nil {
			t.Fatal(err)
		}
	}
	out, err := g.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	checkTHeaderLayout(t, "delete all", out)
	h := decodeOne(t, c, out)
	if headerList(h) != "" || h.infoEnd != h.infoStart || h.blockEnd != headerFixed+4 {
		t.Errorf("headers %q, header block of %d bytes", headerList(h), h.blockEnd-headerFixed)
	}
	if m, _ := h.Attribute("service"); m != "Calculator" {
		t.Errorf("service %q", m)
	}
}

func TestMutationZlibKeepsPayload(t *testing.T) {
	c := newCodec(t, nil)
	g := goldenFile(t, "header_compact_zlib_call_mux_echo.bin")
	f := decodeOne(t, c, g.Bytes)
	if err := f.SetHeader("tenant", "blue"); err != nil {
		t.Fatal(err)
	}
	out, err := f.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	checkTHeaderLayout(t, "zlib", out)
	r := decodeOne(t, c, out)
	if headerList(r) != "x-zlib=1,tenant=blue" || r.zlib != 1 {
		t.Errorf("headers %q zlib %d", headerList(r), r.zlib)
	}
	if !bytes.Equal(out[r.blockEnd:], g.Bytes[f.blockEnd:]) {
		t.Error("compressed payload was not kept as it was")
	}
}

// TestMutationDuplicateKeys: a SetHeader of a repeated key leaves one, in the first place.
func TestMutationDuplicateKeys(t *testing.T) {
	c := newCodec(t, nil)
	f := decodeOne(t, c, theader(headerProtoComp, nil, kvInfo("a", "1", "b", "2", "a", "3"), 300, callMessage(t)))
	if err := f.SetHeader("a", "x"); err != nil {
		t.Fatal(err)
	}
	out, _ := f.AppendTo(nil)
	if got := headerList(decodeOne(t, c, out)); got != "a=x,b=2" {
		t.Errorf("headers %s", got)
	}
	// Headers that no mutation names are kept as they are, repeats included.
	g := decodeOne(t, c, theader(headerProtoComp, nil, kvInfo("a", "1", "b", "2", "a", "3"), 300, callMessage(t)))
	if err := g.DelHeader("b"); err != nil {
		t.Fatal(err)
	}
	out, _ = g.AppendTo(nil)
	if got := headerList(decodeOne(t, c, out)); got != "a=1,a=3" {
		t.Errorf("headers %s", got)
	}
}

func TestMutationUnsupported(t *testing.T) {
	c := newCodec(t, nil)
	for _, stream := range []string{"framed/binary", "framed/compact", "unframed/binary", "unframed/compact"} {
		f := decodeOne(t, c, streamSample(t, stream, "call_calculate"))
		err := f.SetHeader("a", "b")
		if !errors.Is(err, codecs.ErrHeadersUnsupported) || !strings.Contains(err.Error(), "cannot carry headers") {
			t.Errorf("%s: SetHeader: %v", stream, err)
		}
		if err := f.DelHeader("a"); !errors.Is(err, codecs.ErrHeadersUnsupported) {
			t.Errorf("%s: DelHeader: %v", stream, err)
		}
		if out, err := f.AppendTo(nil); err != nil || !bytes.Equal(out, f.raw) {
			t.Errorf("%s: a refused mutation changed the encoding", stream)
		}
		if _, ok := f.Attribute("x-request-id"); ok {
			t.Errorf("%s: header attribute on a frame without headers", stream)
		}
	}
}

// TestAttributesMultiplexed covers names with and without a service.
func TestAttributesMultiplexed(t *testing.T) {
	cases := []struct{ name, service, method string }{
		{"Calc:add", "Calc", "add"},
		{"add", "", "add"},
		{"a:b:c", "a", "b:c"},
		{":m", "", "m"},
		{"", "", ""},
	}
	for _, p := range protocols {
		for _, tc := range cases {
			e := &tenc{compact: p.compact}
			e.message(tc.name, msgOneway, 9)
			e.structBegin()
			e.structEnd()
			f := decodeOne(t, newCodec(t, nil), e.b)
			svc, ok := f.Attribute("service")
			if svc != tc.service || ok != strings.Contains(tc.name, ":") {
				t.Errorf("%s %q: service %q %v", p.name, tc.name, svc, ok)
			}
			if m, ok := f.Attribute("method"); m != tc.method || !ok {
				t.Errorf("%s %q: method %q", p.name, tc.name, m)
			}
			if mt, _ := f.Attribute("message_type"); mt != "oneway" || f.Kind() != codecs.KindOneway {
				t.Errorf("%s %q: message type %q kind %v", p.name, tc.name, mt, f.Kind())
			}
		}
	}
}

// TestReplyKinds covers result structs the golden frames do not: an exception declared with
// a long compact field header, and field ids 0 and negative.
func TestReplyKinds(t *testing.T) {
	for _, p := range protocols {
		for id, want := range map[int16]codecs.Kind{0: codecs.KindResponse, 1: codecs.KindErrorResponse, 40: codecs.KindErrorResponse, -2: codecs.KindErrorResponse} {
			e := &tenc{compact: p.compact}
			e.message("m", msgReply, 1)
			e.structBegin()
			e.field(typeI32, id)
			e.i32(5)
			e.structEnd()
			f := decodeOne(t, newCodec(t, nil), e.b)
			if f.Kind() != want {
				t.Errorf("%s: result field %d: kind %v, want %v", p.name, id, f.Kind(), want)
			}
		}
		// A framed reply without a result struct is malformed.
		e := &tenc{compact: p.compact}
		e.message("m", msgReply, 1)
		framed := binary.BigEndian.AppendUint32(nil, uint32(len(e.b)))
		if _, _, err := newCodec(t, nil).NewConn().Decode(append(framed, e.b...)); !errors.Is(err, codecs.ErrMalformed) {
			t.Errorf("%s: reply without a struct: %v", p.name, err)
		}
	}
}
