// Package codectest is the conformance kit that every Meltemi codec, built-in or third-party,
// must pass. A codec's tests describe a few valid encoded frames (Samples) and call Run; the
// kit then checks the codecs.Conn and codecs.Frame contracts on them: decoding split at every
// byte, concatenated frames, no aliasing of the input, byte-exact re-encoding, request-id
// rewrite, the frame size limit, truncated and garbage input, header mutations, and local
// replies that decode as responses of the same protocol.
//
// FuzzDecode gives codecs a ready-made fuzz body with the same invariants.
package codectest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// Sample is one valid encoded frame and what decoding it must yield.
type Sample struct {
	Name  string
	Bytes []byte
	// Stream groups samples that may follow each other on one connection (for example one
	// Thrift transport/protocol pair). Samples of the same Stream are decoded concatenated.
	Stream string
	Kind   codecs.Kind
	ID     uint64
	// Attrs are attributes the frame must report, headers included.
	Attrs map[string]string
	// Absent are attribute names the frame must not report.
	Absent []string
	// CarriesHeaders says whether the frame can carry header mutations. If false, SetHeader
	// must fail with codecs.ErrHeadersUnsupported.
	CarriesHeaders bool
	// SizeKnownAt, when non-zero, is the number of leading bytes after which the frame's
	// declared size is known: with a limit below the frame size, Decode must fail with
	// codecs.ErrFrameTooLarge given only that many bytes.
	SizeKnownAt int
}

// Suite describes a codec under test.
type Suite struct {
	Factory codecs.Factory
	Options codecs.Options
	Samples []Sample
	// NewID is a request id that fits the protocol and differs from every sample's id.
	NewID uint64
	// Heartbeats says whether the protocol has heartbeats; if not, AppendHeartbeatReply must
	// return codecs.ErrUnsupported.
	Heartbeats bool
}

// Run runs the whole kit as subtests of t.
func Run(t *testing.T, s Suite) {
	t.Helper()
	if len(s.Samples) == 0 {
		t.Fatal("codectest: suite has no samples")
	}
	c := s.codec(t, s.Options)
	if c.Name() != s.Factory.Name() {
		t.Errorf("codec name %q, factory name %q", c.Name(), s.Factory.Name())
	}
	t.Run("DecodeWhole", func(t *testing.T) { s.decodeWhole(t, c) })
	t.Run("SplitAtEveryByte", func(t *testing.T) { s.splitEverywhere(t, c) })
	t.Run("Concatenated", func(t *testing.T) { s.concatenated(t, c) })
	t.Run("NoAliasing", func(t *testing.T) { s.noAliasing(t, c) })
	t.Run("RequestIDRewrite", func(t *testing.T) { s.idRewrite(t, c) })
	t.Run("Oversize", func(t *testing.T) { s.oversize(t) })
	t.Run("Garbage", func(t *testing.T) { s.garbage(t, c) })
	t.Run("Mutation", func(t *testing.T) { s.mutation(t, c) })
	t.Run("ErrorReply", func(t *testing.T) { s.errorReply(t, c) })
	t.Run("Heartbeat", func(t *testing.T) { s.heartbeat(t, c) })
}

func (s Suite) codec(t *testing.T, opts codecs.Options) codecs.Codec {
	t.Helper()
	c, err := s.Factory.New(opts)
	if err != nil {
		t.Fatalf("codectest: %s.New: %v", s.Factory.Name(), err)
	}
	return c
}

// decodeOne decodes b with a fresh Conn and requires exactly one frame using all of b.
func decodeOne(t *testing.T, c codecs.Codec, name string, b []byte) codecs.Frame {
	t.Helper()
	f, n, err := c.NewConn().Decode(b)
	if err != nil {
		t.Fatalf("%s: decode: %v", name, err)
	}
	if f == nil {
		t.Fatalf("%s: decode of a complete frame (%d bytes) asked for more data", name, len(b))
	}
	if n != len(b) {
		t.Fatalf("%s: decode used %d of %d bytes", name, n, len(b))
	}
	return f
}

// checkFrame compares f with what the sample says.
func checkFrame(t *testing.T, smp Sample, f codecs.Frame, wantID uint64) {
	t.Helper()
	if f.Kind() != smp.Kind {
		t.Errorf("%s: kind %v, want %v", smp.Name, f.Kind(), smp.Kind)
	}
	if f.RequestID() != wantID {
		t.Errorf("%s: request id %d, want %d", smp.Name, f.RequestID(), wantID)
	}
	for k, want := range smp.Attrs {
		got, ok := f.Attribute(k)
		if !ok || got != want {
			t.Errorf("%s: attribute %q = %q (present %v), want %q", smp.Name, k, got, ok, want)
		}
	}
	for _, k := range smp.Absent {
		if v, ok := f.Attribute(k); ok {
			t.Errorf("%s: attribute %q present (%q), want absent", smp.Name, k, v)
		}
	}
}

func (s Suite) decodeWhole(t *testing.T, c codecs.Codec) {
	for _, smp := range s.Samples {
		f := decodeOne(t, c, smp.Name, smp.Bytes)
		checkFrame(t, smp, f, smp.ID)
		if f.Size() != len(smp.Bytes) {
			t.Errorf("%s: Size %d, want %d", smp.Name, f.Size(), len(smp.Bytes))
		}
		out, err := f.AppendTo([]byte("prefix"))
		if err != nil {
			t.Fatalf("%s: AppendTo: %v", smp.Name, err)
		}
		if !bytes.Equal(out[6:], smp.Bytes) || string(out[:6]) != "prefix" {
			t.Errorf("%s: AppendTo without mutations is not byte-exact:\n got %x\nwant %x", smp.Name, out[6:], smp.Bytes)
		}
		// Headers reported by RangeHeaders must be reachable as attributes.
		f.RangeHeaders(func(k, v string) bool {
			if got, ok := f.Attribute(k); !ok {
				t.Errorf("%s: header %q from RangeHeaders is not an attribute", smp.Name, k)
			} else if got != v && !isBuiltin(smp, k) {
				t.Errorf("%s: header %q = %q but attribute = %q", smp.Name, k, v, got)
			}
			return true
		})
	}
}

// isBuiltin: a header may be shadowed by a built-in attribute of the same name.
func isBuiltin(_ Sample, k string) bool {
	switch k {
	case "service", "method", "version", "group", "interface":
		return true
	}
	return false
}

func (s Suite) splitEverywhere(t *testing.T, c codecs.Codec) {
	for _, smp := range s.Samples {
		for i := 0; i < len(smp.Bytes); i++ {
			conn := c.NewConn()
			f, n, err := conn.Decode(smp.Bytes[:i])
			if err != nil || f != nil || n != 0 {
				t.Fatalf("%s: prefix of %d/%d bytes: got frame=%v n=%d err=%v, want need-more", smp.Name, i, len(smp.Bytes), f != nil, n, err)
			}
			f, n, err = conn.Decode(smp.Bytes)
			if err != nil || f == nil || n != len(smp.Bytes) {
				t.Fatalf("%s: after a prefix of %d bytes, full frame: frame=%v n=%d err=%v", smp.Name, i, f != nil, n, err)
			}
			checkFrame(t, smp, f, smp.ID)
		}
	}
}

func (s Suite) streams() map[string][]Sample {
	m := map[string][]Sample{}
	for _, smp := range s.Samples {
		m[smp.Stream] = append(m[smp.Stream], smp)
	}
	return m
}

func (s Suite) concatenated(t *testing.T, c codecs.Codec) {
	for name, smps := range s.streams() {
		var all []byte
		var want []Sample
		for rep := 0; rep < 2; rep++ {
			for _, smp := range smps {
				all = append(all, smp.Bytes...)
				want = append(want, smp)
			}
		}
		// All bytes at once.
		conn := c.NewConn()
		buf := all
		for i, smp := range want {
			f, n, err := conn.Decode(buf)
			if err != nil || f == nil {
				t.Fatalf("stream %q: frame %d (%s): frame=%v err=%v", name, i, smp.Name, f != nil, err)
			}
			if n != len(smp.Bytes) {
				t.Fatalf("stream %q: frame %d (%s) used %d bytes, want %d", name, i, smp.Name, n, len(smp.Bytes))
			}
			checkFrame(t, smp, f, smp.ID)
			buf = buf[n:]
		}
		if f, n, err := conn.Decode(buf); len(buf) != 0 || f != nil || n != 0 || err != nil {
			t.Fatalf("stream %q: leftover %d bytes or frame after the last one (err %v)", name, len(buf), err)
		}
		// The same bytes arriving in odd-sized chunks, as a proxy would see them.
		for _, chunk := range []int{1, 3, 7, 64} {
			conn := c.NewConn()
			var pending []byte
			got := 0
			for off := 0; off < len(all); off += chunk {
				end := min(off+chunk, len(all))
				pending = append(pending, all[off:end]...)
				for {
					f, n, err := conn.Decode(pending)
					if err != nil {
						t.Fatalf("stream %q chunk %d: %v", name, chunk, err)
					}
					if f == nil {
						break
					}
					checkFrame(t, want[got], f, want[got].ID)
					got++
					pending = pending[n:]
				}
			}
			if got != len(want) || len(pending) != 0 {
				t.Fatalf("stream %q chunk %d: decoded %d of %d frames, %d bytes left", name, chunk, got, len(want), len(pending))
			}
		}
	}
}

func (s Suite) noAliasing(t *testing.T, c codecs.Codec) {
	for _, smp := range s.Samples {
		buf := bytes.Clone(smp.Bytes)
		f := decodeOne(t, c, smp.Name, buf)
		// Read some attributes before and some after the buffer is reused.
		before := map[string]string{}
		i := 0
		for k := range smp.Attrs {
			if i%2 == 0 {
				before[k], _ = f.Attribute(k)
			}
			i++
		}
		for i := range buf {
			buf[i] = 0xAA
		}
		checkFrame(t, smp, f, smp.ID)
		for k, v := range before {
			if smp.Attrs[k] != v {
				t.Errorf("%s: attribute %q read before buffer reuse changed to %q", smp.Name, k, v)
			}
		}
		out, err := f.AppendTo(nil)
		if err != nil || !bytes.Equal(out, smp.Bytes) {
			t.Errorf("%s: frame bytes changed when the input buffer was reused (err %v)", smp.Name, err)
		}
	}
}

func (s Suite) idRewrite(t *testing.T, c codecs.Codec) {
	for _, smp := range s.Samples {
		if smp.ID == s.NewID {
			t.Fatalf("%s: sample id equals Suite.NewID", smp.Name)
		}
		f := decodeOne(t, c, smp.Name, smp.Bytes)
		attrs := map[string]string{}
		for k := range smp.Attrs {
			attrs[k], _ = f.Attribute(k)
		}
		if err := f.SetRequestID(s.NewID); err != nil {
			t.Fatalf("%s: SetRequestID(%d): %v", smp.Name, s.NewID, err)
		}
		if f.RequestID() != s.NewID {
			t.Fatalf("%s: RequestID after rewrite = %d", smp.Name, f.RequestID())
		}
		for k, v := range attrs {
			if smp.Attrs[k] != v {
				t.Errorf("%s: attribute %q changed by the id rewrite: %q", smp.Name, k, v)
			}
		}
		rewritten, err := f.AppendTo(nil)
		if err != nil {
			t.Fatalf("%s: AppendTo after rewrite: %v", smp.Name, err)
		}
		checkFrame(t, smp, decodeOne(t, c, smp.Name+" rewritten", rewritten), s.NewID)
		if len(rewritten) == len(smp.Bytes) {
			// Only the id field(s) may differ: at most two 8-byte windows.
			var diff []int
			for i := range rewritten {
				if rewritten[i] != smp.Bytes[i] {
					diff = append(diff, i)
				}
			}
			if len(diff) == 0 || len(diff) > 16 {
				t.Errorf("%s: id rewrite changed %d bytes (%v)", smp.Name, len(diff), diff)
			}
		}
		if err := f.SetRequestID(smp.ID); err != nil {
			t.Fatalf("%s: SetRequestID back: %v", smp.Name, err)
		}
		back, err := f.AppendTo(nil)
		if err != nil || !bytes.Equal(back, smp.Bytes) {
			t.Errorf("%s: rewriting the id and back is not byte-exact (err %v):\n got %x\nwant %x", smp.Name, err, back, smp.Bytes)
		}
	}
}

func (s Suite) oversize(t *testing.T) {
	for _, smp := range s.Samples {
		opts := s.Options
		opts.MaxFrameSize = len(smp.Bytes) - 1
		c := s.codec(t, opts)
		limit := len(smp.Bytes)
		if smp.SizeKnownAt > 0 {
			limit = smp.SizeKnownAt
		}
		var failedAt int
		for i := 1; i <= limit; i++ {
			f, _, err := c.NewConn().Decode(smp.Bytes[:i])
			if f != nil {
				t.Fatalf("%s: frame of %d bytes decoded with a limit of %d", smp.Name, len(smp.Bytes), opts.MaxFrameSize)
			}
			if err != nil {
				if !errors.Is(err, codecs.ErrFrameTooLarge) {
					t.Fatalf("%s: oversize error %v does not wrap ErrFrameTooLarge", smp.Name, err)
				}
				failedAt = i
				break
			}
		}
		if failedAt == 0 {
			t.Fatalf("%s: no ErrFrameTooLarge within the first %d bytes (limit %d)", smp.Name, limit, opts.MaxFrameSize)
		}
		// At exactly the limit the frame is fine.
		opts.MaxFrameSize = len(smp.Bytes)
		decodeOne(t, s.codec(t, opts), smp.Name, smp.Bytes)
	}
}

func (s Suite) garbage(t *testing.T, c codecs.Codec) {
	rng := rand.New(rand.NewPCG(1, 2))
	var inputs [][]byte
	for i := 0; i < 2000; i++ {
		b := make([]byte, rng.IntN(300))
		for j := range b {
			b[j] = byte(rng.UintN(256))
		}
		inputs = append(inputs, b)
	}
	// Valid frames with bytes flipped, cut, or duplicated reach deeper into the decoder.
	for _, smp := range s.Samples {
		for i := 0; i < 300; i++ {
			b := bytes.Clone(smp.Bytes)
			for k := 0; k < 1+rng.IntN(4); k++ {
				b[rng.IntN(len(b))] = byte(rng.UintN(256))
			}
			inputs = append(inputs, b, b[:rng.IntN(len(b))])
		}
	}
	for _, in := range inputs {
		if err := Exercise(c, in); err != nil {
			t.Fatalf("input %x: %v", in, err)
		}
	}
	// Truncation of valid frames is never an error.
	for _, smp := range s.Samples {
		for i := range smp.Bytes {
			if _, _, err := c.NewConn().Decode(smp.Bytes[:i]); err != nil {
				t.Fatalf("%s: truncated to %d bytes: %v, want need-more", smp.Name, i, err)
			}
		}
	}
}

func (s Suite) mutation(t *testing.T, c codecs.Codec) {
	for _, smp := range s.Samples {
		f := decodeOne(t, c, smp.Name, smp.Bytes)
		err := f.SetHeader("x-codectest", "v1")
		if !smp.CarriesHeaders {
			if !errors.Is(err, codecs.ErrHeadersUnsupported) {
				t.Errorf("%s: SetHeader on a frame without headers: %v, want ErrHeadersUnsupported", smp.Name, err)
			}
			if err := f.DelHeader("x-codectest"); !errors.Is(err, codecs.ErrHeadersUnsupported) {
				t.Errorf("%s: DelHeader on a frame without headers: %v, want ErrHeadersUnsupported", smp.Name, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: SetHeader: %v", smp.Name, err)
		}
		// Delete one existing header and overwrite another, when the sample has them.
		var names []string
		f.RangeHeaders(func(k, _ string) bool {
			if !isBuiltin(smp, k) {
				names = append(names, k)
			}
			return true
		})
		sort.Strings(names)
		var deleted, overwritten string
		if len(names) > 0 {
			deleted = names[0]
			if err := f.DelHeader(deleted); err != nil {
				t.Fatalf("%s: DelHeader(%q): %v", smp.Name, deleted, err)
			}
		}
		if len(names) > 1 {
			overwritten = names[1]
			if err := f.SetHeader(overwritten, "overwritten"); err != nil {
				t.Fatalf("%s: SetHeader(%q): %v", smp.Name, overwritten, err)
			}
		}
		if err := f.SetHeader("x-codectest-deleted", "x"); err != nil {
			t.Fatal(err)
		}
		if err := f.DelHeader("x-codectest-deleted"); err != nil {
			t.Fatal(err)
		}
		out, err := f.AppendTo(nil)
		if err != nil {
			t.Fatalf("%s: AppendTo with mutations: %v", smp.Name, err)
		}
		g := decodeOne(t, c, smp.Name+" mutated", out)
		want := Sample{Name: smp.Name + " mutated", Kind: smp.Kind, Attrs: map[string]string{"x-codectest": "v1"},
			Absent: []string{"x-codectest-deleted"}}
		for k, v := range smp.Attrs {
			if k != deleted && k != overwritten {
				want.Attrs[k] = v
			}
		}
		if deleted != "" {
			want.Absent = append(want.Absent, deleted)
		}
		if overwritten != "" {
			want.Attrs[overwritten] = "overwritten"
		}
		checkFrame(t, want, g, smp.ID)
		// The original frame is untouched by encoding.
		checkFrame(t, smp, f, smp.ID)
	}
}

func (s Suite) errorReply(t *testing.T, c codecs.Codec) {
	for _, smp := range s.Samples {
		if smp.Kind != codecs.KindRequest {
			continue
		}
		for _, r := range codecs.Reasons() {
			conn := c.NewConn()
			f, _, err := conn.Decode(smp.Bytes)
			if err != nil || f == nil {
				t.Fatalf("%s: %v", smp.Name, err)
			}
			if err := f.SetRequestID(s.NewID); err != nil {
				t.Fatal(err)
			}
			out, err := conn.AppendErrorReply([]byte("pre"), f, r, fmt.Sprintf("codectest %v", r))
			if err != nil {
				t.Fatalf("%s: error reply %v: %v", smp.Name, r, err)
			}
			if string(out[:3]) != "pre" {
				t.Fatalf("%s: error reply did not append", smp.Name)
			}
			rep := decodeOne(t, c, fmt.Sprintf("%s error reply %v", smp.Name, r), out[3:])
			if rep.Kind() != codecs.KindErrorResponse || rep.RequestID() != s.NewID {
				t.Errorf("%s: error reply %v decodes as %v id %d, want error_response id %d", smp.Name, r, rep.Kind(), rep.RequestID(), s.NewID)
			}
		}
	}
}

func (s Suite) heartbeat(t *testing.T, c codecs.Codec) {
	seen := false
	for _, smp := range s.Samples {
		conn := c.NewConn()
		f, _, err := conn.Decode(smp.Bytes)
		if err != nil || f == nil {
			t.Fatalf("%s: %v", smp.Name, err)
		}
		if !s.Heartbeats {
			if _, err := conn.AppendHeartbeatReply(nil, f); !errors.Is(err, codecs.ErrUnsupported) {
				t.Errorf("%s: heartbeat reply from a protocol without heartbeats: %v, want ErrUnsupported", smp.Name, err)
			}
			continue
		}
		if smp.Kind != codecs.KindHeartbeatRequest {
			continue
		}
		seen = true
		out, err := conn.AppendHeartbeatReply(nil, f)
		if err != nil {
			t.Fatalf("%s: heartbeat reply: %v", smp.Name, err)
		}
		rep := decodeOne(t, c, smp.Name+" heartbeat reply", out)
		if rep.Kind() != codecs.KindHeartbeatResponse || rep.RequestID() != smp.ID {
			t.Errorf("%s: heartbeat reply decodes as %v id %d", smp.Name, rep.Kind(), rep.RequestID())
		}
	}
	if s.Heartbeats && !seen {
		t.Error("suite says the protocol has heartbeats but has no heartbeat request sample")
	}
}
