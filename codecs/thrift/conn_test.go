package thrift

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
)

func TestFactoryParams(t *testing.T) {
	good := []map[string]string{
		nil,
		{"transport": "auto", "protocol": "auto"},
		{"transport": "framed"},
		{"transport": "unframed", "protocol": "compact"},
		{"transport": "header", "protocol": "binary"},
	}
	for _, p := range good {
		c, err := Factory{}.New(codecs.Options{Params: p})
		if err != nil || c.Name() != "thrift" {
			t.Errorf("New(%v): %v", p, err)
		}
	}
	bad := []map[string]string{
		{"transport": "http"},
		{"transport": ""},
		{"protocol": "json"},
		{"protocol": "Binary"},
		{"framing": "framed"},
		{"transport": "framed", "strict": "true"},
	}
	for _, p := range bad {
		if _, err := (Factory{}).New(codecs.Options{Params: p}); err == nil {
			t.Errorf("New(%v) accepted bad params", p)
		}
	}
	if (Factory{}).Name() != "thrift" {
		t.Error("factory name")
	}
}

// streamSample returns a golden frame of the given stream and message.
func streamSample(tb testing.TB, stream, msg string) []byte {
	tb.Helper()
	return goldenFile(tb, strings.ReplaceAll(stream, "/", "_")+"_"+msg+".bin").Bytes
}

// TestModeMismatch: once a stream's mode is known, a frame of another mode is malformed.
func TestModeMismatch(t *testing.T) {
	streams := []string{"framed/binary", "framed/compact", "unframed/binary", "unframed/compact", "header/binary", "header/compact"}
	for _, first := range streams {
		for _, second := range streams {
			conn := newCodec(t, nil).NewConn()
			decodeAll(t, conn, streamSample(t, first, "call_mux_echo"))
			f, n, err := conn.Decode(streamSample(t, second, "call_mux_echo"))
			if first == second {
				if err != nil || f == nil {
					t.Errorf("%s then %s: %v", first, second, err)
				}
				continue
			}
			if !errors.Is(err, codecs.ErrMalformed) || f != nil || n != 0 {
				t.Errorf("%s then %s: frame=%v err=%v, want ErrMalformed", first, second, f != nil, err)
			}
			if conn.Mode() != first {
				t.Errorf("%s then %s: mode changed to %q", first, second, conn.Mode())
			}
		}
	}
}

// TestForcedModeRejects: a configured transport or protocol does not accept another one.
func TestForcedModeRejects(t *testing.T) {
	cases := []struct {
		params map[string]string
		stream string
	}{
		{map[string]string{"transport": "framed"}, "unframed/binary"},
		{map[string]string{"transport": "framed"}, "unframed/compact"},
		{map[string]string{"transport": "framed"}, "header/binary"},
		{map[string]string{"transport": "header"}, "framed/binary"},
		{map[string]string{"transport": "header"}, "unframed/compact"},
		{map[string]string{"protocol": "compact"}, "framed/binary"},
		{map[string]string{"protocol": "compact"}, "unframed/binary"},
		{map[string]string{"protocol": "compact"}, "header/binary"},
		{map[string]string{"protocol": "binary"}, "framed/compact"},
		{map[string]string{"protocol": "binary"}, "unframed/compact"},
		{map[string]string{"protocol": "binary"}, "header/compact"},
	}
	for _, c := range cases {
		_, _, err := newCodec(t, c.params).NewConn().Decode(streamSample(t, c.stream, "call_mux_echo"))
		if !errors.Is(err, codecs.ErrMalformed) {
			t.Errorf("%v on %s: %v, want ErrMalformed", c.params, c.stream, err)
		}
	}
}

func TestDetectBadStarts(t *testing.T) {
	for _, b := range [][]byte{
		{0x81, 1, 0, 1},             // neither binary nor compact
		{0x80, 2, 0, 1},             // binary version 0x8002
		{0x82, 0x22},                // compact version 2
		{0x82, 0xa1},                // compact message type 5
		{0x80, 1, 0, 9},             // binary message type 9
		{0, 0, 0, 8, 0x0f, 0xff, 0}, // THeader of 8 bytes: no room for its fixed part
		{0, 0, 0, 2, 0, 0},          // framed message of 2 bytes
	} {
		pad := append(bytes.Clone(b), make([]byte, 32)...)
		if _, _, err := newCodec(t, nil).NewConn().Decode(pad); !errors.Is(err, codecs.ErrMalformed) {
			t.Errorf("% x: %v, want ErrMalformed", b, err)
		}
	}
}

// TestFrameTooLargeEarly: a declared length over the limit fails on its 4 bytes.
func TestFrameTooLargeEarly(t *testing.T) {
	for _, params := range []map[string]string{nil, {"transport": "framed"}, {"transport": "header"}} {
		c, err := Factory{}.New(codecs.Options{MaxFrameSize: 1 << 10, Params: params})
		if err != nil {
			t.Fatal(err)
		}
		for _, size := range []uint32{1021, 1 << 20, 0x7fffffff} {
			b := binary.BigEndian.AppendUint32(nil, size)
			if _, _, err := c.NewConn().Decode(b); !errors.Is(err, codecs.ErrFrameTooLarge) {
				t.Errorf("%v: length %d with a 1 KiB limit: %v, want ErrFrameTooLarge", params, size, err)
			}
		}
		// At the limit, the length alone is fine.
		b := binary.BigEndian.AppendUint32(nil, 1020)
		if f, _, err := c.NewConn().Decode(b); f != nil || err != nil {
			t.Errorf("%v: length at the limit: %v", params, err)
		}
	}
	// The default limit is 8 MiB.
	b := binary.BigEndian.AppendUint32(nil, codecs.DefaultMaxFrameSize-3)
	if _, _, err := newCodec(t, nil).NewConn().Decode(b); !errors.Is(err, codecs.ErrFrameTooLarge) {
		t.Errorf("8 MiB + 1 with the default limit: %v", err)
	}
}

// TestUnframedTooLarge: an unframed message fails as soon as it would pass the limit.
func TestUnframedTooLarge(t *testing.T) {
	c, err := Factory{}.New(codecs.Options{MaxFrameSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range protocols {
		// A string declaring 1 GiB fails on its size, long before the bytes arrive.
		e := &tenc{compact: p.compact}
		e.message("Svc:big", msgCall, 3)
		e.structBegin()
		e.field(typeString, 1)
		e.size(1 << 30)
		if _, _, err := c.NewConn().Decode(e.b); !errors.Is(err, codecs.ErrFrameTooLarge) {
			t.Errorf("%s: 1 GiB string: %v", p.name, err)
		}
		// A list of many small elements passes the limit only as the bytes arrive.
		e = &tenc{compact: p.compact}
		e.message("Svc:big", msgCall, 3)
		e.structBegin()
		e.field(typeList, 1)
		e.list(typeList, typeString, 1000)
		for range 1000 {
			e.str("xxxxxxx")
		}
		e.structEnd()
		conn := c.NewConn()
		var failedAt int
		for i := 1; i <= len(e.b); i += 7 {
			f, _, err := conn.Decode(e.b[:i])
			if f != nil {
				t.Fatalf("%s: decoded a %d-byte message with a 4 KiB limit", p.name, len(e.b))
			}
			if err != nil {
				if !errors.Is(err, codecs.ErrFrameTooLarge) {
					t.Fatalf("%s: %v", p.name, err)
				}
				failedAt = i
				break
			}
		}
		if failedAt < 4096 || failedAt > 4096+7 {
			t.Errorf("%s: failed at %d bytes, want just past the 4096-byte limit", p.name, failedAt)
		}
		// The same message decodes under a limit that fits it.
		big := newCodec(t, nil).NewConn()
		if f, n, err := big.Decode(e.b); err != nil || f == nil || n != len(e.b) {
			t.Errorf("%s: %v", p.name, err)
		}
	}
}

// TestUnframedSeveralMessages decodes back-to-back unframed messages in one buffer, the
// skipper state carried over an incomplete one.
func TestUnframedSeveralMessages(t *testing.T) {
	for _, p := range protocols {
		var all []byte
		for i := range 3 {
			e := &tenc{compact: p.compact}
			e.message("Svc:m", msgCall, uint32(i))
			e.everything()
			all = append(all, e.b...)
		}
		conn := newCodec(t, nil).NewConn()
		// The first Decode stops halfway through the second message and keeps its place.
		buf := all[:len(all)/2]
		f, n, err := conn.Decode(buf)
		if err != nil || f == nil || f.RequestID() != 0 {
			t.Fatalf("%s: first: %v", p.name, err)
		}
		all, buf = all[n:], buf[n:]
		if f, _, err := conn.Decode(buf); f != nil || err != nil {
			t.Fatalf("%s: a partial message decoded (%v)", p.name, err)
		}
		for i := 1; i < 3; i++ {
			f, n, err := conn.Decode(all)
			if err != nil || f == nil || f.RequestID() != uint64(i) {
				t.Fatalf("%s: message %d: %v", p.name, i, err)
			}
			all = all[n:]
		}
		if len(all) != 0 {
			t.Fatalf("%s: %d bytes left", p.name, len(all))
		}
	}
}

// theader builds a THeader frame around payload with a raw info block.
func theader(protoID byte, transforms []byte, info []byte, seq uint32, payload []byte) []byte {
	block := []byte{protoID, byte(len(transforms))}
	block = append(block, transforms...)
	block = append(block, info...)
	for len(block)%4 != 0 {
		block = append(block, 0)
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(10+len(block)+len(payload)))
	b = append(b, 0x0f, 0xff, 0, 0)
	b = binary.BigEndian.AppendUint32(b, seq)
	b = binary.BigEndian.AppendUint16(b, uint16(len(block)/4))
	b = append(b, block...)
	return append(b, payload...)
}

// kvInfo encodes a KEYVALUE info section.
func kvInfo(kv ...string) []byte {
	b := []byte{infoKeyValue}
	b = binary.AppendUvarint(b, uint64(len(kv)/2))
	for _, s := range kv {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func zlibBytes(b []byte) []byte {
	var buf bytes.Buffer
	w := zlib.NewWriter(&buf)
	_, _ = w.Write(b)
	_ = w.Close()
	return buf.Bytes()
}

// callMessage is the message inside the golden framed compact echo call.
func callMessage(tb testing.TB) []byte {
	return streamSample(tb, "framed/compact", "call_mux_echo")[4:]
}

func TestTHeaderZlibBomb(t *testing.T) {
	e := &tenc{compact: true}
	e.message("Svc:bomb", msgCall, 1)
	e.structBegin()
	e.field(typeString, 1)
	e.str(strings.Repeat("\x00", 4<<20))
	e.structEnd()
	frame := theader(headerProtoComp, []byte{transformZlib}, nil, 1, zlibBytes(e.b))
	if len(frame) > 64<<10 {
		t.Fatalf("bomb is %d bytes", len(frame))
	}
	c, err := Factory{}.New(codecs.Options{MaxFrameSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.NewConn().Decode(frame); !errors.Is(err, codecs.ErrFrameTooLarge) {
		t.Errorf("4 MiB inflated under a 1 MiB limit: %v, want ErrFrameTooLarge", err)
	}
	// Twice-compressed payloads are inflated twice, each bounded.
	twice := theader(headerProtoComp, []byte{transformZlib, transformZlib}, nil, 1, zlibBytes(zlibBytes(e.b)))
	if _, _, err := c.NewConn().Decode(twice); !errors.Is(err, codecs.ErrFrameTooLarge) {
		t.Errorf("double zlib bomb: %v, want ErrFrameTooLarge", err)
	}
	// Under the default limit the same frame decodes.
	f := decodeOne(t, newCodec(t, nil), frame)
	if m, _ := f.Attribute("method"); m != "bomb" || f.RequestID() != 1 {
		t.Errorf("method %q id %d", m, f.RequestID())
	}
}

func TestTHeaderBadBlocks(t *testing.T) {
	msg := callMessage(t)
	cases := map[string][]byte{
		"protocol id 1":      theader(1, nil, nil, 300, msg),
		"unknown transform":  theader(headerProtoComp, []byte{3}, nil, 300, msg),
		"header count":       theader(headerProtoComp, nil, []byte{infoKeyValue, 100, 1, 'a', 1, 'b'}, 300, msg),
		"string past block":  theader(headerProtoComp, nil, []byte{infoKeyValue, 1, 40, 'a'}, 300, msg),
		"bad zlib":           theader(headerProtoComp, []byte{transformZlib}, nil, 300, msg),
		"zlib trailing data": theader(headerProtoComp, []byte{transformZlib}, nil, 300, append(zlibBytes(msg), 0)),
		"no payload":         theader(headerProtoComp, nil, nil, 300, nil),
		"binary payload":     theader(headerProtoBin, nil, nil, 300, msg),
	}
	// A header block longer than the frame.
	over := theader(headerProtoComp, nil, nil, 300, msg)
	binary.BigEndian.PutUint16(over[headerSizeOff:], 1000)
	cases["block past frame"] = over
	count := theader(headerProtoComp, nil, nil, 300, msg)
	count[headerFixed+1] = 50 // transforms declared: more than the block holds
	cases["transform count"] = count
	for name, b := range cases {
		if _, _, err := newCodec(t, nil).NewConn().Decode(b); !errors.Is(err, codecs.ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	// The same builder with sane parts decodes, so the cases above fail for their one flaw.
	f := decodeOne(t, newCodec(t, nil), theader(headerProtoComp, []byte{transformZlib}, kvInfo("a", "b"), 300, zlibBytes(msg)))
	if v, _ := f.Attribute("a"); v != "b" || f.RequestID() != 300 || f.Kind() != codecs.KindRequest {
		t.Errorf("sane THeader: a=%q id %d kind %v", v, f.RequestID(), f.Kind())
	}
}

// TestTHeaderInfo covers info sections beyond what python3-thrift writes: several KEYVALUE
// sections, repeated keys, and sections of unknown types.
func TestTHeaderInfo(t *testing.T) {
	msg := callMessage(t)
	info := append(kvInfo("a", "1", "b", "2"), kvInfo("a", "3", "c", "")...)
	info = append(info, 0x05, 0x02, 0xaa, 0xbb) // an unknown section: readers stop here
	info = append(info, kvInfo("hidden", "x")...)
	f := decodeOne(t, newCodec(t, nil), theader(headerProtoComp, nil, info, 300, msg))
	var got []string
	f.RangeHeaders(func(k, v string) bool { got = append(got, k+"="+v); return true })
	if strings.Join(got, ",") != "a=1,b=2,a=3,c=" {
		t.Errorf("headers %v", got)
	}
	if v, ok := f.Attribute("a"); v != "3" || !ok {
		t.Errorf("a = %q, want the last one", v)
	}
	if v, ok := f.Attribute("c"); v != "" || !ok {
		t.Errorf("empty header c: %q %v", v, ok)
	}
	if _, ok := f.Attribute("hidden"); ok {
		t.Error("a header after an unknown info section was read")
	}
	// Mutation merges the key/values into one section and keeps the unknown bytes after it.
	if err := f.SetHeader("a", "new"); err != nil {
		t.Fatal(err)
	}
	out, err := f.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := decodeOne(t, newCodec(t, nil), out)
	got = nil
	g.RangeHeaders(func(k, v string) bool { got = append(got, k+"="+v); return true })
	if strings.Join(got, ",") != "a=new,b=2,c=" {
		t.Errorf("mutated headers %v", got)
	}
	block := out[headerFixed:g.blockEnd]
	if !bytes.Contains(block, append([]byte{0x05, 0x02, 0xaa, 0xbb}, kvInfo("hidden", "x")...)) {
		t.Errorf("unknown info section lost: % x", block)
	}
}

// A non-strict name that starts (or whose bare method starts) with a byte that also starts a
// framed or THeader stream would make detection of the peer's reply ambiguous.
func TestNonStrictNameMustBeUnambiguous(t *testing.T) {
	c, err := Factory{}.New(codecs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"svc:\x00echo", "\x0fecho", "e\x01cho", "svc:\x80echo"} {
		msg := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
		msg = append(msg, name...)
		msg = append(msg, 1, 0, 0, 0, 9, 0) // CALL, seqid 9, empty struct
		if _, _, err := c.NewConn().Decode(msg); !errors.Is(err, codecs.ErrMalformed) {
			t.Errorf("name %q: err %v, want ErrMalformed", name, err)
		}
	}
	msg := binary.BigEndian.AppendUint32(nil, 8)
	msg = append(msg, "svc:echo"...)
	msg = append(msg, 1, 0, 0, 0, 9, 0)
	f, _, err := c.NewConn().Decode(msg)
	if err != nil || f == nil {
		t.Fatalf("plain non-strict name: frame %v err %v", f != nil, err)
	}
}
