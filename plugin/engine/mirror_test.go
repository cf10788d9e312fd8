package engine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
)

const (
	addrPrimary = "10.0.0.1:1"
	addrMirror  = "10.0.0.9:1"
	addrMirror2 = "10.0.0.8:1"
)

// mirrorConfig routes every request to cluster "p" (one endpoint, addrPrimary) with r's
// settings and the given mirrors; cluster "m" has mEps (addrMirror when none).
func mirrorConfig(c codecs.Codec, r Route, m Cluster, mirrors ...Mirror) Config {
	r.Name, r.Cluster, r.Mirrors = "r", "p", mirrors
	m.Name = "m"
	if m.Endpoints == nil {
		m.Endpoints = eps(addrMirror)
	}
	return Config{Codec: c, Routes: []Route{r},
		Clusters: []Cluster{{Name: "p", Endpoints: eps(addrPrimary)}, m}}
}

// readyTo completes the only dial made to addr.
func (f *fakeDialer) readyTo(t testing.TB, addr string, c codecs.Codec) *fakeServer {
	t.Helper()
	idx := f.dialsTo(addr)
	if len(idx) != 1 {
		t.Fatalf("dials to %s: %v, want 1", addr, idx)
	}
	return f.ready(t, idx[0], c)
}

// withoutID returns the bytes of f with its request id set to 0, to compare requests whose
// ids the pools rewrote.
func withoutID(t testing.TB, f codecs.Frame) []byte {
	t.Helper()
	if err := f.SetRequestID(0); err != nil {
		t.Fatal(err)
	}
	b, err := f.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantStats checks the mirror counters and that the client-facing ones saw no mirror.
func wantMirrorStats(t testing.TB, e *Engine, mirrored, responses, failed uint64) Stats {
	t.Helper()
	st := e.Stats()
	if st.Mirrored != mirrored || st.MirrorResponses != responses || st.MirrorFailed != failed {
		t.Fatalf("mirror stats: mirrored %d responses %d failed %d, want %d %d %d",
			st.Mirrored, st.MirrorResponses, st.MirrorFailed, mirrored, responses, failed)
	}
	return st
}

// Every request goes to the mirror too, with the same method and body and an id of the
// mirror pool's; the clients get the primary's responses only, although the mirror answers
// first.
func TestMirrorAll(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, mirrorConfig(c, Route{}, Cluster{}, Mirror{Cluster: "m", Percent: 100}))
	a, b := newClient(t, e), newClient(t, e)
	// Colliding client ids, as in TestMultiplexCollidingIDs.
	a.send(thriftMsg(tCall, "Echo", 7, stringField(1, "a7")), thriftMsg(tCall, "Echo", 8, stringField(1, "a8")))
	b.send(thriftMsg(tCall, "Other", 7, stringField(1, "b7")))
	prim := d.readyTo(t, addrPrimary, c)
	mir := d.readyTo(t, addrMirror, c)
	if d.count() != 2 {
		t.Fatalf("%d dials, want one per cluster", d.count())
	}
	preqs, mreqs := prim.requests(), mir.requests()
	if len(preqs) != 3 || len(mreqs) != 3 {
		t.Fatalf("primary got %d requests, mirror %d, want 3 each", len(preqs), len(mreqs))
	}
	ids := map[uint64]bool{}
	for i, m := range mreqs {
		if m.Kind() != codecs.KindRequest || method(m) != method(preqs[i]) {
			t.Fatalf("mirror request %d: %v %q, want a request calling %q", i, m.Kind(), method(m), method(preqs[i]))
		}
		if ids[m.RequestID()] {
			t.Fatalf("mirror ids collide: %d twice", m.RequestID())
		}
		ids[m.RequestID()] = true
	}
	// The mirror answers first, once with an error: nothing reaches the clients.
	mir.h.OnData(replyTo(t, mreqs[0], "mirror"))
	mir.h.OnData(thriftMsg(tException, "Echo", uint32(mreqs[1].RequestID()), stringField(1, "boom")))
	mir.h.OnData(replyTo(t, mreqs[2], "mirror"))
	if fs := a.replies(); len(fs) != 0 {
		t.Fatalf("client a got %d replies from the mirror", len(fs))
	}
	if fs := b.replies(); len(fs) != 0 {
		t.Fatalf("client b got %d replies from the mirror", len(fs))
	}
	for i, p := range preqs {
		prim.h.OnData(replyTo(t, p, fmt.Sprint("primary", i)))
	}
	got := map[uint64]string{}
	for _, f := range a.replies() {
		if f.Kind() != codecs.KindResponse {
			t.Fatalf("client a got %v", f.Kind())
		}
		got[f.RequestID()] = payload(t, f)
	}
	if len(got) != 2 || got[7] != "primary0" || got[8] != "primary1" {
		t.Fatalf("client a got %v, want the primary's answers to 7 and 8", got)
	}
	if f := b.one(); f.RequestID() != 7 || payload(t, f) != "primary2" {
		t.Fatalf("client b got id %d %q", f.RequestID(), payload(t, f))
	}
	// Same bytes but for the id (compared last: it rewrites the frames' ids).
	for i := range mreqs {
		if !bytes.Equal(withoutID(t, mreqs[i]), withoutID(t, preqs[i])) {
			t.Fatalf("mirror request %d differs from the primary's", i)
		}
	}
	st := wantMirrorStats(t, e, 3, 3, 0)
	if st.Requests != 3 || st.Responses != 3 || st.DroppedResponses != 0 || len(st.LocalReplies) != 0 {
		t.Fatalf("stats %+v", st)
	}
	if n := e.testCluster("m").active.Load(); n != 0 {
		t.Fatalf("mirror cluster holds %d requests after their responses", n)
	}
}

// A mirror to the primary's own cluster shares its pool and connection, with an id of its
// own; the client gets one answer.
func TestMirrorToSameCluster(t *testing.T) {
	c := thriftCodec(t)
	cfg := oneCluster(c, Route{Mirrors: []Mirror{{Cluster: "c", Percent: 100}}}, Cluster{})
	e, d := newEngine(t, cfg)
	cl := newClient(t, e)
	cl.send(call("Echo", 3))
	srv := d.ready(t, 0, c)
	reqs := srv.requests()
	if d.count() != 1 || len(reqs) != 2 || reqs[0].RequestID() == reqs[1].RequestID() {
		t.Fatalf("%d dials, %d requests, want 1 connection carrying 2 requests with distinct ids", d.count(), len(reqs))
	}
	for _, r := range reqs {
		srv.h.OnData(replyTo(t, r, fmt.Sprint("id", r.RequestID())))
	}
	if f := cl.one(); f.RequestID() != 3 {
		t.Fatalf("client got id %d", f.RequestID())
	}
	wantMirrorStats(t, e, 1, 1, 0)
	if st := e.Stats(); st.Responses != 1 || st.DroppedResponses != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// The mirror's failures are counted and never reach the client.
func TestMirrorFailuresDoNotReachClient(t *testing.T) {
	c := thriftCodec(t)
	t.Run("refused connections", func(t *testing.T) {
		e, d := newEngine(t, mirrorConfig(c, Route{}, Cluster{Endpoints: eps(addrMirror, addrMirror2), MaxConnectAttempts: 2},
			Mirror{Cluster: "m", Percent: 100}))
		cl := newClient(t, e)
		cl.send(call("Echo", 1))
		// The mirror tries each endpoint of its cluster once, as requests do.
		failMirror := func(want int) {
			t.Helper()
			var ms []int
			for i := range d.count() {
				if d.get(t, i).addr != addrPrimary {
					ms = append(ms, i)
				}
			}
			if len(ms) != want {
				t.Fatalf("%d mirror dials, want %d", len(ms), want)
			}
			d.get(t, ms[want-1]).h.OnFailure(FailureRemote)
		}
		failMirror(1)
		failMirror(2)
		if m1, m2 := d.dialsTo(addrMirror), d.dialsTo(addrMirror2); len(m1) != 1 || len(m2) != 1 {
			t.Fatalf("mirror dials %v and %v, want one to each endpoint", m1, m2)
		}
		prim := d.readyTo(t, addrPrimary, c)
		prim.h.OnData(replyTo(t, prim.oneRequest(), "primary"))
		if f := cl.one(); f.RequestID() != 1 || payload(t, f) != "primary" {
			t.Fatalf("client got id %d %q", f.RequestID(), payload(t, f))
		}
		st := wantMirrorStats(t, e, 1, 0, 1)
		if len(st.LocalReplies) != 0 || st.UpstreamConnectFailures != 2 || d.count() != 3 {
			t.Fatalf("stats %+v, %d dials", st, d.count())
		}
	})

	t.Run("no endpoint", func(t *testing.T) {
		e, d := newEngine(t, mirrorConfig(c, Route{}, Cluster{Endpoints: []Endpoint{}}, Mirror{Cluster: "m", Percent: 100}))
		cl := newClient(t, e)
		cl.send(call("Echo", 1))
		prim := d.readyTo(t, addrPrimary, c)
		prim.h.OnData(replyTo(t, prim.oneRequest(), "primary"))
		if f := cl.one(); f.RequestID() != 1 || payload(t, f) != "primary" {
			t.Fatalf("client got id %d %q", f.RequestID(), payload(t, f))
		}
		if st := wantMirrorStats(t, e, 1, 0, 1); len(st.LocalReplies) != 0 || d.count() != 1 {
			t.Fatalf("stats %+v, %d dials", st, d.count())
		}
	})

	t.Run("over limit", func(t *testing.T) {
		e, d := newEngine(t, mirrorConfig(c, Route{}, Cluster{MaxRequests: 1}, Mirror{Cluster: "m", Percent: 100}))
		cl := newClient(t, e)
		cl.send(call("Echo", 1), call("Echo", 2))
		prim := d.readyTo(t, addrPrimary, c)
		mir := d.readyTo(t, addrMirror, c)
		if n := len(mir.requests()); n != 1 {
			t.Fatalf("mirror got %d requests, want 1 (the second over its limit)", n)
		}
		for _, r := range prim.requests() {
			prim.h.OnData(replyTo(t, r, "primary"))
		}
		fs := cl.replies()
		if len(fs) != 2 || fs[0].Kind() != codecs.KindResponse || fs[1].Kind() != codecs.KindResponse {
			t.Fatalf("client got %d replies, want the 2 responses", len(fs))
		}
		if st := wantMirrorStats(t, e, 2, 0, 1); len(st.LocalReplies) != 0 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("upstream close", func(t *testing.T) {
		e, d := newEngine(t, mirrorConfig(c, Route{}, Cluster{}, Mirror{Cluster: "m", Percent: 100}))
		cl := newClient(t, e)
		cl.send(call("Echo", 1))
		prim := d.readyTo(t, addrPrimary, c)
		mir := d.readyTo(t, addrMirror, c)
		mir.oneRequest()
		mir.h.OnClose()
		prim.h.OnData(replyTo(t, prim.oneRequest(), "primary"))
		if f := cl.one(); f.Kind() != codecs.KindResponse || payload(t, f) != "primary" {
			t.Fatalf("client got %v", f.Kind())
		}
		if st := wantMirrorStats(t, e, 1, 0, 1); len(st.LocalReplies) != 0 {
			t.Fatalf("stats %+v", st)
		}
	})

	t.Run("primary fails alone", func(t *testing.T) {
		// The primary's error is the client's only reply; the mirror's answer is dropped.
		e, d := newEngine(t, mirrorConfig(c, Route{}, Cluster{}, Mirror{Cluster: "m", Percent: 100}))
		cl := newClient(t, e)
		cl.send(call("Echo", 1))
		d.get(t, d.dialsTo(addrPrimary)[0]).h.OnFailure(FailureRemote)
		cl.wantError(1, codecs.ReasonUnavailable)
		mir := d.readyTo(t, addrMirror, c)
		mir.h.OnData(replyTo(t, mir.oneRequest(), "mirror"))
		if fs := cl.replies(); len(fs) != 0 {
			t.Fatalf("client got %d more replies", len(fs))
		}
		wantMirrorStats(t, e, 1, 1, 0)
	})

	t.Run("client gone", func(t *testing.T) {
		// A mirror outlives its client; its answer is still read and dropped.
		e, d := newEngine(t, mirrorConfig(c, Route{}, Cluster{}, Mirror{Cluster: "m", Percent: 100}))
		cl := newClient(t, e)
		cl.send(call("Echo", 1))
		cl.s.OnClose()
		mir := d.readyTo(t, addrMirror, c)
		mir.h.OnData(replyTo(t, mir.oneRequest(), "mirror"))
		st := wantMirrorStats(t, e, 1, 1, 0)
		if st.Cancelled != 1 || len(cl.down.bytes()) != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// Mirrors get the route timeout: one that never answers is counted failed and leaves its
// pool; the client sees the primary's response, or the primary's timeout, once.
func TestMirrorTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		e, d := newEngine(t, mirrorConfig(c, Route{Timeout: 100 * time.Millisecond}, Cluster{},
			Mirror{Cluster: "m", Percent: 100}))
		cl := newClient(t, e)
		cl.send(call("Echo", 1))
		prim := d.readyTo(t, addrPrimary, c)
		mir := d.readyTo(t, addrMirror, c)
		time.Sleep(50 * time.Millisecond)
		prim.h.OnData(replyTo(t, prim.oneRequest(), "primary"))
		if f := cl.one(); payload(t, f) != "primary" {
			t.Fatalf("client got %q", payload(t, f))
		}
		mreq := mir.oneRequest()
		if n := e.testCluster("m").active.Load(); n != 1 {
			t.Fatalf("mirror cluster holds %d requests, want 1", n)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		wantMirrorStats(t, e, 1, 0, 1)
		if n := e.testCluster("m").active.Load(); n != 0 {
			t.Fatalf("mirror cluster holds %d requests after the route timeout, want 0", n)
		}
		mir.h.OnData(replyTo(t, mreq, "late")) // dropped
		if fs := cl.replies(); len(fs) != 0 {
			t.Fatalf("client got %d more replies", len(fs))
		}

		// Neither answers: the client gets one timeout error.
		cl.send(call("Echo", 2))
		time.Sleep(150 * time.Millisecond)
		synctest.Wait()
		cl.wantError(2, codecs.ReasonTimeout)
		st := wantMirrorStats(t, e, 2, 0, 2)
		if st.LocalReplies[codecs.ReasonTimeout] != 1 || st.DroppedResponses != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// The copy shares nothing with the request: a copy encoded again after the request's id
// was rewritten by its own pool still carries the mirror pool's id.
func TestMirrorCopyIsIndependent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		cfg := mirrorConfig(c, Route{Timeout: 100 * time.Millisecond}, Cluster{ConnectTimeout: time.Minute},
			Mirror{Cluster: "m", Percent: 100})
		// A route without mirror, to move the primary pool's ids ahead of the mirror pool's.
		cfg.Routes = append([]Route{{Name: "warm", Cluster: "p", Match: []AttributeMatch{{Name: "method", Value: "warm"}}}}, cfg.Routes...)
		e, d := newEngine(t, cfg)
		cl := newClient(t, e)
		cl.send(call("warm", 1), call("warm", 2), call("warm", 3))
		prim := d.readyTo(t, addrPrimary, c)
		for _, r := range prim.requests() {
			prim.h.OnData(replyTo(t, r, "w"))
		}
		cl.replies()
		cl.send(call("a", 4)) // its copy waits for the mirror's connection, and times out
		time.Sleep(50 * time.Millisecond)
		cl.send(call("b", 5)) // its copy waits too, and is encoded again when it comes up
		time.Sleep(60 * time.Millisecond)
		synctest.Wait()
		cl.wantError(4, codecs.ReasonTimeout)
		mir := d.readyTo(t, addrMirror, c)
		mreq := mir.oneRequest()
		preqs := prim.requests()
		if len(preqs) != 2 || method(preqs[1]) != "b" {
			t.Fatalf("primary got %d requests", len(preqs))
		}
		if method(mreq) != "b" || mreq.RequestID() != 2 || preqs[1].RequestID() == 2 {
			t.Fatalf("mirror got %q id %d, want b with the mirror pool's id 2 (primary's is %d)",
				method(mreq), mreq.RequestID(), preqs[1].RequestID())
		}
		prim.h.OnData(replyTo(t, preqs[1], "b"))
		mir.h.OnData(replyTo(t, mreq, "mirror"))
		if f := cl.one(); f.RequestID() != 5 || payload(t, f) != "b" {
			t.Fatalf("client got id %d %q", f.RequestID(), payload(t, f))
		}
		wantMirrorStats(t, e, 2, 1, 1)
	})
}

// Percent samples requests: about half at 50, none at 0, all at 100, independently per
// policy.
func TestMirrorPercent(t *testing.T) {
	c := thriftCodec(t)
	big := Cluster{MaxRequests: 10000, MaxPendingRequests: 10000}
	cfg := mirrorConfig(c, Route{}, big, Mirror{Cluster: "m", Percent: 50}, Mirror{Cluster: "z", Percent: 0},
		Mirror{Cluster: "all", Percent: 100})
	cfg.Clusters[0].MaxRequests = 10000
	cfg.Clusters = append(cfg.Clusters, Cluster{Name: "z", Endpoints: eps("10.0.0.7:1")},
		Cluster{Name: "all", Endpoints: eps(addrMirror2), MaxRequests: 10000})
	e, d := newEngine(t, cfg)
	cl := newClient(t, e)
	const n = 2000
	cl.send(call("Echo", 0))
	prim := d.readyTo(t, addrPrimary, c)
	all := d.readyTo(t, addrMirror2, c)
	var mir *fakeServer
	if idx := d.dialsTo(addrMirror); len(idx) == 1 {
		mir = d.ready(t, idx[0], c)
	}
	for i := 1; i < n; i++ {
		cl.send(call("Echo", uint32(i)))
		if mir == nil {
			if idx := d.dialsTo(addrMirror); len(idx) == 1 {
				mir = d.ready(t, idx[0], c)
			}
		}
	}
	if mir == nil {
		t.Fatal("no request mirrored at 50%")
	}
	half := len(mir.requests())
	// Binomial(2000, 0.5): sd 22; 150 is about 7 sd.
	if half < n/2-150 || half > n/2+150 {
		t.Fatalf("mirrored %d of %d requests at 50%%", half, n)
	}
	if got := len(all.requests()); got != n {
		t.Fatalf("mirrored %d of %d requests at 100%%", got, n)
	}
	if got := d.dialsTo("10.0.0.7:1"); len(got) != 0 {
		t.Fatalf("dials to the 0%% mirror: %v", got)
	}
	for _, r := range prim.requests() {
		prim.h.OnData(replyTo(t, r, "p"))
	}
	if fs := cl.replies(); len(fs) != n {
		t.Fatalf("client got %d replies, want %d", len(fs), n)
	}
	st := wantMirrorStats(t, e, uint64(n+half), 0, 0)
	if st.Requests != n || st.Responses != n {
		t.Fatalf("stats %+v", st)
	}
}

// Oneway requests, by kind or by method, are mirrored as oneway: nothing waits for them.
func TestMirrorOneway(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec func(testing.TB) codecs.Codec
	}{{"multiplexed", thriftCodec}, {"pingpong", pingPongThrift}} {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.codec(t)
			e, d := newEngine(t, mirrorConfig(c, Route{Timeout: time.Minute, OnewayMethods: []string{"log"}}, Cluster{},
				Mirror{Cluster: "m", Percent: 100}))
			cl := newClient(t, e)
			cl.send(thriftMsg(tOneway, "notify", 5, stringField(1, "x")))
			cl.send(call("log", 6))
			// Multiplexed: one connection; ping-pong: one per request, both waiting for theirs.
			var mreqs []codecs.Frame
			for _, i := range d.dialsTo(addrMirror) {
				mreqs = append(mreqs, d.ready(t, i, c).requests()...)
			}
			if len(mreqs) != 2 || mreqs[0].Kind() != codecs.KindOneway || method(mreqs[0]) != "notify" ||
				method(mreqs[1]) != "log" {
				t.Fatalf("mirror got %d requests", len(mreqs))
			}
			if n := e.testCluster("m").active.Load(); n != 0 {
				t.Fatalf("%d mirrored requests wait for a response, want none", n)
			}
			if fs := cl.replies(); len(fs) != 0 {
				t.Fatalf("client got %d replies", len(fs))
			}
			st := wantMirrorStats(t, e, 2, 0, 0)
			if st.Oneway != 2 || st.Requests != 2 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// Ping-pong codecs mirror on connections of their own, ids untouched, and reuse them.
func TestMirrorPingPong(t *testing.T) {
	c := pingPongThrift(t)
	e, d := newEngine(t, mirrorConfig(c, Route{}, Cluster{}, Mirror{Cluster: "m", Percent: 100}))
	cl := newClient(t, e)
	var prim, mir *fakeServer
	for i := range 2 {
		id := uint32(7 + i)
		cl.send(call("Echo", id))
		if i == 0 {
			prim, mir = d.readyTo(t, addrPrimary, c), d.readyTo(t, addrMirror, c)
		}
		mreq := mir.oneRequest()
		if mreq.RequestID() != uint64(id) || method(mreq) != "Echo" {
			t.Fatalf("mirror got %q id %d, want Echo id %d", method(mreq), mreq.RequestID(), id)
		}
		mir.h.OnData(replyTo(t, mreq, "mirror")) // first
		prim.h.OnData(replyTo(t, prim.oneRequest(), "primary"))
		if f := cl.one(); f.RequestID() != uint64(id) || payload(t, f) != "primary" {
			t.Fatalf("client got id %d %q", f.RequestID(), payload(t, f))
		}
	}
	if d.count() != 2 {
		t.Fatalf("%d dials, want the two connections reused", d.count())
	}
	wantMirrorStats(t, e, 2, 2, 0)
}

// Requests refused before routing are not mirrored.
func TestMirrorNotOnRefused(t *testing.T) {
	c := thriftCodec(t)
	cfg := mirrorConfig(c, Route{Match: []AttributeMatch{{Name: "method", Value: "Known"}}}, Cluster{},
		Mirror{Cluster: "m", Percent: 100})
	e, d := newEngine(t, cfg)
	cl := newClient(t, e)
	cl.send(call("Other", 4))
	cl.wantError(4, codecs.ReasonNoRoute)
	cl.send([]byte{0, 0, 0, 8, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0})
	if !cl.down.isClosed() {
		t.Fatal("undecodable bytes did not close the connection")
	}
	if d.count() != 0 {
		t.Fatalf("%d dials, want none", d.count())
	}
	if st := wantMirrorStats(t, e, 0, 0, 0); st.DecodeErrors != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMirrorConfigErrors(t *testing.T) {
	c := thriftCodec(t)
	for name, m := range map[string]Mirror{
		"unknown cluster": {Cluster: "x", Percent: 100},
		"no cluster":      {Percent: 100},
		"negative":        {Cluster: "m", Percent: -1},
		"above 100":       {Cluster: "m", Percent: 100.5},
		"NaN":             {Cluster: "m", Percent: math.NaN()},
		"infinite":        {Cluster: "m", Percent: math.Inf(1)},
	} {
		if _, err := New(mirrorConfig(c, Route{}, Cluster{}, m), Options{Dialer: &fakeDialer{}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	e, _ := newEngine(t, mirrorConfig(c, Route{}, Cluster{}, Mirror{Cluster: "m", Percent: 0},
		Mirror{Cluster: "m", Percent: 100}, Mirror{Cluster: "m", Percent: 1e-9}, Mirror{Cluster: "m", Percent: 99.99999999999999}))
	ms := e.table.Load().routes[0].mirrors
	if len(ms) != 3 || !ms[0].all || ms[1].all || ms[1].threshold == 0 || ms[2].all || ms[2].threshold < math.MaxUint64-1<<20 {
		t.Fatalf("compiled mirrors %+v: want 0%% dropped, 100%% always, the others sampled", ms)
	}
	// An update with an invalid mirror is refused and the engine keeps its table.
	cfg := mirrorConfig(c, Route{}, Cluster{}, Mirror{Cluster: "gone", Percent: 100})
	if err := e.Update(cfg.Routes, cfg.Clusters); err == nil {
		t.Fatal("update with an unknown mirror cluster accepted")
	}
	if len(e.table.Load().routes[0].mirrors) != 3 {
		t.Fatal("a refused update changed the table")
	}
}

// Mirrors follow the route table of an update; a mirror in flight on a cluster the update
// removed completes.
func TestMirrorUpdate(t *testing.T) {
	c := thriftCodec(t)
	clusters := []Cluster{{Name: "p", Endpoints: eps(addrPrimary)}, {Name: "m", Endpoints: eps(addrMirror)}}
	route := func(mirrors ...Mirror) []Route { return []Route{{Name: "r", Cluster: "p", Mirrors: mirrors}} }
	e, d := newEngine(t, Config{Codec: c, Routes: route(), Clusters: clusters})
	cl := newClient(t, e)
	cl.send(call("Echo", 1))
	prim := d.readyTo(t, addrPrimary, c)
	answer := func(id uint64) {
		t.Helper()
		prim.h.OnData(replyTo(t, prim.oneRequest(), "p"))
		if f := cl.one(); f.RequestID() != id || payload(t, f) != "p" {
			t.Fatalf("client got id %d %q, want %d", f.RequestID(), payload(t, f), id)
		}
	}
	answer(1)
	if d.count() != 1 {
		t.Fatalf("%d dials before mirrors were configured", d.count())
	}

	mustUpdate(t, e, route(Mirror{Cluster: "m", Percent: 100}), clusters)
	cl.send(call("Echo", 2))
	mir := d.readyTo(t, addrMirror, c)
	mreq := mir.oneRequest()
	answer(2)

	// The mirror moves to a new cluster; m is removed while its copy is in flight.
	clusters2 := []Cluster{clusters[0], {Name: "m2", Endpoints: eps(addrMirror2)}}
	mustUpdate(t, e, route(Mirror{Cluster: "m2", Percent: 100}), clusters2)
	cl.send(call("Echo", 3))
	mir2 := d.readyTo(t, addrMirror2, c)
	if m := mir2.oneRequest(); method(m) != "Echo" {
		t.Fatalf("new mirror got %q", method(m))
	}
	if n := len(mir.requests()); n != 0 {
		t.Fatalf("removed mirror cluster got %d more requests", n)
	}
	answer(3)
	mir.h.OnData(replyTo(t, mreq, "late mirror"))
	if fs := cl.replies(); len(fs) != 0 {
		t.Fatalf("client got %d replies from the mirror", len(fs))
	}

	mustUpdate(t, e, route(), clusters2)
	cl.send(call("Echo", 4))
	answer(4)
	if n := len(mir2.requests()); n != 0 {
		t.Fatalf("mirror got %d requests after the update removed it", n)
	}
	wantMirrorStats(t, e, 2, 1, 0)
}

// BenchmarkMirror is BenchmarkRequestResponse/thrift with every request mirrored to a
// second cluster, whose responses are read and dropped.
func BenchmarkMirror(b *testing.B) {
	c := thriftCodec(b)
	req := thriftMsg(tCall, "PlaceOrder", 1, stringField(1, strings.Repeat("x", 1000)))
	resp := reply("PlaceOrder", 1, strings.Repeat("y", 200))
	seqAt := 4 + 4 + 4 + len("PlaceOrder")
	idAt := func(w []byte) uint64 { return uint64(binary.BigEndian.Uint32(w[seqAt:])) }
	setID := func(r []byte, id uint64) { binary.BigEndian.PutUint32(r[seqAt:], uint32(id)) }
	e, d := newEngine(b, mirrorConfig(c, Route{Timeout: 30 * time.Second}, Cluster{}, Mirror{Cluster: "m", Percent: 100}))
	down := &benchDown{}
	s := e.NewSession(down)
	s.OnData(req)
	prim, mir := &benchUpstream{idAt: idAt}, &benchUpstream{idAt: idAt}
	ph, mh := d.get(b, d.dialsTo(addrPrimary)[0]).h, d.get(b, d.dialsTo(addrMirror)[0]).h
	ph.OnReady(prim)
	mh.OnReady(mir)
	presp, mresp := slices.Clone(resp), slices.Clone(resp)
	roundTrip := func() {
		setID(mresp, mir.id)
		mh.OnData(mresp)
		setID(presp, prim.id)
		ph.OnData(presp)
	}
	roundTrip()
	if down.n != len(resp) {
		b.Fatalf("client got %d bytes, want %d", down.n, len(resp))
	}
	b.SetBytes(int64(len(req) + len(resp)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s.OnData(req)
		roundTrip()
	}
	b.StopTimer()
	st := e.Stats()
	if st.Responses != st.Requests || st.MirrorResponses != st.Mirrored || st.Mirrored != st.Requests ||
		st.MirrorFailed != 0 || len(st.LocalReplies) != 0 {
		b.Fatalf("stats %+v", st)
	}
}

// A mirror whose sample says no costs no allocation: a request on a route with one
// allocates as much as on a route without.
func TestMirrorSampledOutAllocatesNothing(t *testing.T) {
	c := thriftCodec(t)
	req := thriftMsg(tCall, "PlaceOrder", 1, stringField(1, strings.Repeat("x", 100)))
	resp := reply("PlaceOrder", 1, "ok")
	seqAt := 4 + 4 + 4 + len("PlaceOrder")
	idAt := func(w []byte) uint64 { return uint64(binary.BigEndian.Uint32(w[seqAt:])) }
	measure := func(mirrors ...Mirror) (float64, Stats) {
		e, d := newEngine(t, mirrorConfig(c, Route{Timeout: time.Minute}, Cluster{}, mirrors...))
		s := e.NewSession(&benchDown{})
		s.OnData(req)
		up := &benchUpstream{idAt: idAt}
		h := d.get(t, 0).h
		h.OnReady(up)
		r := slices.Clone(resp)
		roundTrip := func() {
			binary.BigEndian.PutUint32(r[seqAt:], uint32(up.id))
			h.OnData(r)
		}
		roundTrip()
		allocs := testing.AllocsPerRun(200, func() {
			s.OnData(req)
			roundTrip()
		})
		return allocs, e.Stats()
	}
	base, _ := measure()
	got, st := measure(Mirror{Cluster: "m", Percent: 1e-12})
	if st.Mirrored != 0 || st.Responses != st.Requests {
		t.Fatalf("stats %+v", st)
	}
	if got != base {
		t.Fatalf("%v allocations per request with a mirror sampled out, %v without a mirror", got, base)
	}
	if all, st := measure(Mirror{Cluster: "m", Percent: 100}); all <= base || st.Mirrored == 0 {
		t.Fatalf("%v allocations per mirrored request, %v without: the measure sees nothing", all, base)
	}
}
