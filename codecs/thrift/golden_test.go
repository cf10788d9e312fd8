package thrift

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/codectest"
)

//go:generate /usr/bin/python3 testdata/gen_golden.py

// golden is one frame written by python3-thrift (testdata/gen_golden.py) and what the
// generator asked the library to encode in it.
type golden struct {
	File    string            `json:"file"`
	Stream  string            `json:"stream"`
	Kind    string            `json:"kind"`
	ID      uint64            `json:"id"`
	Attrs   map[string]string `json:"attrs"`
	Absent  []string          `json:"absent"`
	Headers [][2]string       `json:"headers"`
	Bytes   []byte            `json:"-"`
}

var kinds = map[string]codecs.Kind{
	"request":        codecs.KindRequest,
	"oneway":         codecs.KindOneway,
	"response":       codecs.KindResponse,
	"error_response": codecs.KindErrorResponse,
}

func loadGolden(tb testing.TB) []golden {
	tb.Helper()
	dir := filepath.Join("testdata", "golden")
	m, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var gs []golden
	if err := json.Unmarshal(m, &gs); err != nil {
		tb.Fatal(err)
	}
	if len(gs) < 80 {
		tb.Fatalf("manifest lists %d golden frames, want the whole matrix", len(gs))
	}
	for i := range gs {
		if gs[i].Bytes, err = os.ReadFile(filepath.Join(dir, gs[i].File)); err != nil {
			tb.Fatal(err)
		}
		if _, ok := kinds[gs[i].Kind]; !ok {
			tb.Fatalf("%s: kind %q", gs[i].File, gs[i].Kind)
		}
	}
	return gs
}

// goldenFile returns the golden frame of that file name.
func goldenFile(tb testing.TB, name string) golden {
	tb.Helper()
	for _, g := range loadGolden(tb) {
		if g.File == name {
			return g
		}
	}
	tb.Fatalf("no golden frame %s", name)
	return golden{}
}

func (g golden) sample() codectest.Sample {
	s := codectest.Sample{
		Name:           strings.TrimSuffix(g.File, ".bin"),
		Bytes:          g.Bytes,
		Stream:         g.Stream,
		Kind:           kinds[g.Kind],
		ID:             g.ID,
		Attrs:          g.Attrs,
		Absent:         g.Absent,
		CarriesHeaders: strings.HasPrefix(g.Stream, "header/"),
	}
	if !strings.HasPrefix(g.Stream, "unframed/") {
		s.SizeKnownAt = 4
	}
	if strings.Contains(g.File, "_nonstrict_") {
		// A Conn keeps the binary variant of its first message: non-strict frames are a
		// stream of their own.
		s.Stream += " nonstrict"
	}
	return s
}

// newID fits every protocol and, as a 5-byte compact varint, is longer than most samples'.
const newID = 0x7eadbeef

func TestConformance(t *testing.T) {
	var samples []codectest.Sample
	for _, g := range loadGolden(t) {
		samples = append(samples, g.sample())
	}
	codectest.Run(t, codectest.Suite{Factory: Factory{}, Samples: samples, NewID: newID})
}

// TestConformanceForcedMode runs the kit once per stream with the transport and protocol
// configured instead of detected.
func TestConformanceForcedMode(t *testing.T) {
	streams := map[string][]codectest.Sample{}
	for _, g := range loadGolden(t) {
		streams[g.Stream] = append(streams[g.Stream], g.sample())
	}
	if len(streams) != 6 {
		t.Fatalf("%d streams in the golden frames, want 6", len(streams))
	}
	for stream, samples := range streams {
		t.Run(strings.ReplaceAll(stream, "/", "_"), func(t *testing.T) {
			tr, pr, _ := strings.Cut(stream, "/")
			codectest.Run(t, codectest.Suite{
				Factory: Factory{},
				Options: codecs.Options{Params: map[string]string{"transport": tr, "protocol": pr}},
				Samples: samples,
				NewID:   newID,
			})
		})
	}
}

func TestGoldenModeAndHeaders(t *testing.T) {
	c := newCodec(t, nil)
	for _, g := range loadGolden(t) {
		conn := c.NewConn()
		if m := conn.Mode(); m != "" {
			t.Fatalf("%s: Mode before the first frame = %q", g.File, m)
		}
		f, n, err := conn.Decode(g.Bytes[:len(g.Bytes)-1])
		if f != nil || n != 0 || err != nil || conn.Mode() != "" {
			t.Fatalf("%s: a partial frame decoded or set the mode (%v, %q)", g.File, err, conn.Mode())
		}
		f = decodeAll(t, conn, g.Bytes)
		if conn.Mode() != g.Stream {
			t.Errorf("%s: Mode %q, want %q", g.File, conn.Mode(), g.Stream)
		}
		var got [][2]string
		f.RangeHeaders(func(k, v string) bool {
			got = append(got, [2]string{k, v})
			return true
		})
		if len(got) != len(g.Headers) {
			t.Fatalf("%s: headers %q, want %q", g.File, got, g.Headers)
		}
		for i := range got {
			if got[i] != g.Headers[i] {
				t.Errorf("%s: header %d = %q, want %q (wire order)", g.File, i, got[i], g.Headers[i])
			}
		}
		if len(got) > 1 {
			// Stopping early is honoured.
			calls := 0
			f.RangeHeaders(func(string, string) bool { calls++; return false })
			if calls != 1 {
				t.Errorf("%s: RangeHeaders went on after false (%d calls)", g.File, calls)
			}
		}
	}
}

func newCodec(tb testing.TB, params map[string]string) codecs.Codec {
	tb.Helper()
	c, err := Factory{}.New(codecs.Options{Params: params})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// decodeAll decodes b, which must be exactly one frame, with conn.
func decodeAll(tb testing.TB, conn codecs.Conn, b []byte) codecs.Frame {
	tb.Helper()
	f, n, err := conn.Decode(b)
	if err != nil || f == nil || n != len(b) {
		tb.Fatalf("decode of %d bytes: frame=%v n=%d err=%v", len(b), f != nil, n, err)
	}
	return f
}

func decodeOne(tb testing.TB, c codecs.Codec, b []byte) *frame {
	tb.Helper()
	return decodeAll(tb, c.NewConn(), b).(*frame)
}
