package thrift

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
)

func TestSetRequestIDRange(t *testing.T) {
	f := decodeOne(t, newCodec(t, nil), streamSample(t, "framed/binary", "call_ping"))
	for _, id := range []uint64{math.MaxUint32 + 1, math.MaxUint64} {
		if err := f.SetRequestID(id); !errors.Is(err, codecs.ErrIDRange) {
			t.Errorf("SetRequestID(%d): %v, want ErrIDRange", id, err)
		}
	}
	if f.RequestID() != 2 {
		t.Errorf("a refused id changed the frame: %d", f.RequestID())
	}
	for _, id := range []uint64{0, 1, math.MaxInt32, math.MaxUint32} {
		if err := f.SetRequestID(id); err != nil || f.RequestID() != id {
			t.Errorf("SetRequestID(%d): %v, id %d", id, err, f.RequestID())
		}
		g := decodeOne(t, newCodec(t, nil), f.raw)
		if g.RequestID() != id {
			t.Errorf("id %d decodes back as %d", id, g.RequestID())
		}
	}
}

// TestSetRequestIDCompactLength rewrites compact seqids into varints of every length.
func TestSetRequestIDCompactLength(t *testing.T) {
	c := newCodec(t, nil)
	for _, stream := range []string{"framed/compact", "unframed/compact", "header/compact"} {
		orig := streamSample(t, stream, "call_calculate") // seqid 1: a one-byte varint
		f := decodeOne(t, c, orig)
		method, _ := f.Attribute("method")
		user, _ := f.Attribute("user")
		old := f.raw
		for _, id := range []uint64{0x80, 0x3fff, 0x4000, 1 << 21, 1 << 28, math.MaxUint32, 0x7f, 1} {
			if err := f.SetRequestID(id); err != nil {
				t.Fatal(err)
			}
			grow := uvarintLen(id) - 1
			if f.Size() != len(orig)+grow {
				t.Errorf("%s id %#x: size %d, want %d", stream, id, f.Size(), len(orig)+grow)
			}
			out, _ := f.AppendTo(nil)
			g := decodeOne(t, c, out)
			if g.RequestID() != id {
				t.Errorf("%s id %#x decodes back as %#x", stream, id, g.RequestID())
			}
			if m, _ := g.Attribute("method"); m != "calculate" {
				t.Errorf("%s id %#x: method %q", stream, id, m)
			}
			if stream == "header/compact" && binary.BigEndian.Uint32(out[headerSeqOff:]) != uint32(id) {
				t.Errorf("%s id %#x: THeader seq id %#x", stream, id, binary.BigEndian.Uint32(out[headerSeqOff:]))
			}
			// The body past the seqid and name is the same.
			if !bytes.Equal(out[len(out)-400:], orig[len(orig)-400:]) {
				t.Errorf("%s id %#x: body changed", stream, id)
			}
		}
		// Strings read before the splices are still intact, and the first buffer, which they
		// point into, was never written.
		if method != "calculate" || (stream == "header/compact" && user != "alice") {
			t.Errorf("%s: attribute strings changed: %q %q", stream, method, user)
		}
		if !bytes.Equal(old, orig) {
			t.Errorf("%s: the decoded bytes were modified in place by a length-changing rewrite", stream)
		}
		if !bytes.Equal(f.raw, orig) {
			t.Errorf("%s: back to id 1 is not byte-exact", stream)
		}
	}
}

// TestSetRequestIDInPlace: same-length rewrites touch only the id bytes, in the frame's own
// buffer.
func TestSetRequestIDInPlace(t *testing.T) {
	c := newCodec(t, nil)
	for _, g := range loadGolden(t) {
		if strings.Contains(g.File, "zlib") {
			continue
		}
		f := decodeOne(t, c, g.Bytes)
		id := uint64(0x7eadbeef)
		if f.protocol == protocolCompact && uvarintLen(g.ID) != 5 {
			continue // covered by TestSetRequestIDCompactLength
		}
		before := &f.raw[0]
		if err := f.SetRequestID(id); err != nil {
			t.Fatal(err)
		}
		if &f.raw[0] != before {
			t.Errorf("%s: same-length rewrite moved the frame", g.File)
		}
		var diff []int
		for i := range f.raw {
			if f.raw[i] != g.Bytes[i] {
				diff = append(diff, i)
			}
		}
		limit := 4
		if f.protocol == protocolCompact {
			limit = 5
		}
		if f.transport == transportHeader {
			limit += 4
		}
		if len(diff) == 0 || len(diff) > limit {
			t.Errorf("%s: rewrite changed bytes %v", g.File, diff)
		}
		if f.transport == transportHeader && binary.BigEndian.Uint32(f.raw[headerSeqOff:]) != uint32(id) {
			t.Errorf("%s: THeader seq id not rewritten", g.File)
		}
	}
}

func TestSetRequestIDZlib(t *testing.T) {
	c := newCodec(t, nil)
	for _, name := range []string{"header_compact_zlib_call_mux_echo.bin", "header_binary_zlib_call_mux_echo.bin", "header_compact_zlib_oneway_zip.bin"} {
		g := goldenFile(t, name)
		f := decodeOne(t, c, g.Bytes)
		svc, _ := f.Attribute("service")
		for _, id := range []uint64{newID, 5, 1 << 20} {
			if err := f.SetRequestID(id); err != nil {
				t.Fatal(err)
			}
			out, _ := f.AppendTo(nil)
			r := decodeOne(t, c, out)
			if r.RequestID() != id || r.zlib != 1 || binary.BigEndian.Uint32(out[headerSeqOff:]) != uint32(id) {
				t.Errorf("%s id %d: decodes as id %d with %d zlib transforms", name, id, r.RequestID(), r.zlib)
			}
			if !bytes.Equal(r.msg[r.hdr.bodyOff:], f.msg[f.hdr.bodyOff:]) {
				t.Errorf("%s: inflated body changed", name)
			}
			if x, _ := r.Attribute("x-zlib"); x != "1" {
				t.Errorf("%s: header lost", name)
			}
		}
		if s, _ := f.Attribute("service"); s != svc {
			t.Errorf("%s: service %q became %q", name, svc, s)
		}
		if err := f.SetRequestID(g.ID); err != nil || !bytes.Equal(f.raw, g.Bytes) {
			t.Errorf("%s: back to the original id is not byte-exact (%v)", name, err)
		}
	}
}
