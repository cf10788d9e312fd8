package engine

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
)

func TestRequestResponse(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	cl := newClient(t, e)
	cl.send(call("Echo", 7))
	if d.count() != 1 || d.get(t, 0).addr != "10.0.0.1:9090" {
		t.Fatalf("dials %+v, want one to 10.0.0.1:9090", d.dials)
	}
	srv := d.ready(t, 0, c)
	reqs := srv.requests()
	if len(reqs) != 1 {
		t.Fatalf("server got %d requests, want 1", len(reqs))
	}
	if m, _ := reqs[0].Attribute("method"); m != "Echo" {
		t.Fatalf("server got method %q", m)
	}
	srv.h.OnData(replyTo(t, reqs[0], "pong"))
	got := cl.one()
	if got.Kind() != codecs.KindResponse || got.RequestID() != 7 || payload(t, got) != "pong" {
		t.Fatalf("client got %v id %d %q, want response id 7 \"pong\"", got.Kind(), got.RequestID(), payload(t, got))
	}
	b, _ := got.AppendTo(nil)
	if !bytes.Equal(b, reply("Echo", 7, "pong")) {
		t.Fatalf("client bytes differ from the server's reply with the id restored")
	}
	st := e.Stats()
	if st.Requests != 1 || st.Responses != 1 || st.ActiveSessions != 1 || len(st.LocalReplies) != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPartialAndBatchedFrames(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	cl := newClient(t, e)
	stream := bytes.Join([][]byte{call("A", 1), call("B", 2), call("C", 3)}, nil)
	// Byte by byte for the first frame and a half, then the rest in one read.
	cut := len(call("A", 1)) + 10
	for i := range cut {
		cl.send(stream[i : i+1])
	}
	cl.send(stream[cut:])
	srv := d.ready(t, 0, c)
	reqs := srv.requests()
	if len(reqs) != 3 {
		t.Fatalf("server got %d requests, want 3", len(reqs))
	}
	// Responses in reverse order, in one read, and split across reads.
	var resp []byte
	for i := len(reqs) - 1; i >= 0; i-- {
		resp = append(resp, replyTo(t, reqs[i], fmt.Sprint("r", i))...)
	}
	srv.h.OnData(resp[:5])
	srv.h.OnData(resp[5:])
	fs := cl.replies()
	if len(fs) != 3 {
		t.Fatalf("client got %d replies, want 3", len(fs))
	}
	for _, f := range fs {
		want := fmt.Sprint("r", f.RequestID()-1)
		if payload(t, f) != want {
			t.Errorf("reply id %d carries %q, want %q", f.RequestID(), payload(t, f), want)
		}
	}
}

// Many clients use the same request ids at once over one upstream connection; each gets its
// own answer.
func TestMultiplexCollidingIDs(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	const n = 60
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = newClient(t, e)
	}
	// The first request creates the connection; it is ready before the rest arrive.
	clients[0].send(call("m0", 1))
	srv := d.ready(t, 0, c)
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients[i].send(call(fmt.Sprint("m", i), 1), call(fmt.Sprint("m", i), 2))
		}()
	}
	wg.Wait()
	if d.count() != 1 {
		t.Fatalf("%d upstream connections, want 1 shared", d.count())
	}
	reqs := srv.requests()
	if len(reqs) != 2*n-1 {
		t.Fatalf("server got %d requests, want %d", len(reqs), 2*n-1)
	}
	ids := map[uint64]bool{}
	for _, r := range reqs {
		if ids[r.RequestID()] {
			t.Fatalf("upstream id %d used twice", r.RequestID())
		}
		ids[r.RequestID()] = true
	}
	// Answer in a random order (upstream callbacks of one connection are sequential).
	rand.Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })
	for _, r := range reqs {
		m, _ := r.Attribute("method")
		srv.h.OnData(replyTo(t, r, m))
	}
	for i, cl := range clients {
		fs := cl.replies()
		want := 2
		if i == 0 {
			want = 1
		}
		if len(fs) != want {
			t.Fatalf("client %d got %d replies, want %d", i, len(fs), want)
		}
		for _, f := range fs {
			if payload(t, f) != fmt.Sprint("m", i) || f.RequestID() > 2 {
				t.Fatalf("client %d got %q id %d", i, payload(t, f), f.RequestID())
			}
		}
	}
	if st := e.Stats(); st.Responses != 2*n-1 {
		t.Fatalf("responses %d, want %d", st.Responses, 2*n-1)
	}
}

func TestConnectionsPerEndpoint(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{ConnectionsPerEndpoint: 3}))
	cl := newClient(t, e)
	for i := range 6 {
		cl.send(call("m", uint32(i)))
	}
	if d.count() != 3 {
		t.Fatalf("%d dials, want 3", d.count())
	}
	total := 0
	for i := range 3 {
		total += len(d.ready(t, i, c).requests())
	}
	if total != 6 {
		t.Fatalf("%d requests written, want 6", total)
	}
}

func TestQueueWhileConnecting(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	a, b := newClient(t, e), newClient(t, e)
	a.send(call("x", 1))
	b.send(call("y", 1), call("y", 2))
	if d.count() != 1 {
		t.Fatalf("%d dials, want 1", d.count())
	}
	srv := d.ready(t, 0, c)
	if srv.writes != 1 {
		t.Fatalf("queued requests written in %d writes, want 1", srv.writes)
	}
	reqs := srv.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests written on ready, want 3", len(reqs))
	}
	for _, r := range reqs {
		srv.h.OnData(replyTo(t, r, "ok"))
	}
	if len(a.replies()) != 1 || len(b.replies()) != 2 {
		t.Fatal("replies missing")
	}
	// Once ready, a request is written at once.
	a.send(call("x", 2))
	if len(srv.requests()) != 1 {
		t.Fatal("request on a ready connection not written")
	}
}

func TestCircuitBreaking(t *testing.T) {
	c := thriftCodec(t)
	t.Run("pending", func(t *testing.T) {
		e, d := newEngine(t, oneCluster(c, Route{}, Cluster{MaxPendingRequests: 2}))
		cl := newClient(t, e)
		cl.send(call("m", 1), call("m", 2), call("m", 3))
		cl.wantError(3, codecs.ReasonOverLimit)
		srv := d.ready(t, 0, c)
		if n := len(srv.requests()); n != 2 {
			t.Fatalf("%d requests forwarded, want 2", n)
		}
		// Once connected, nothing waits: more requests pass.
		cl.send(call("m", 4))
		if n := len(srv.requests()); n != 1 {
			t.Fatalf("%d requests forwarded after ready, want 1", n)
		}
	})
	t.Run("requests", func(t *testing.T) {
		e, d := newEngine(t, oneCluster(c, Route{}, Cluster{MaxRequests: 2}))
		cl := newClient(t, e)
		cl.send(call("m", 1))
		srv := d.ready(t, 0, c)
		cl.send(call("m", 2), call("m", 3))
		cl.wantError(3, codecs.ReasonOverLimit)
		reqs := srv.requests()
		srv.h.OnData(replyTo(t, reqs[0], "ok"))
		if f := cl.one(); f.RequestID() != 1 {
			t.Fatalf("reply id %d", f.RequestID())
		}
		cl.send(call("m", 4)) // a slot is free again
		if len(srv.requests()) != 1 {
			t.Fatal("request not forwarded after a response freed a slot")
		}
		if st := e.Stats(); st.LocalReplies[codecs.ReasonOverLimit] != 1 {
			t.Fatalf("over-limit replies %d", st.LocalReplies[codecs.ReasonOverLimit])
		}
	})
}

func TestConnectFailureRetriesThenUnavailable(t *testing.T) {
	c := thriftCodec(t)
	eps := []Endpoint{{Address: "10.0.0.1:1"}, {Address: "10.0.0.2:1"}, {Address: "10.0.0.3:1"}}
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{Endpoints: eps, MaxConnectAttempts: 2}))
	cl := newClient(t, e)
	cl.send(call("m", 9))
	first := d.get(t, 0)
	first.h.OnFailure(FailureRemote)
	if d.count() != 2 {
		t.Fatalf("%d dials after one failure, want a retry", d.count())
	}
	second := d.get(t, 1)
	if second.addr == first.addr {
		t.Fatalf("retry dialled the failed endpoint %s again", first.addr)
	}
	second.h.OnFailure(FailureTimeout)
	if d.count() != 2 {
		t.Fatalf("%d dials, want no third attempt", d.count())
	}
	cl.wantError(9, codecs.ReasonUnavailable)
	st := e.Stats()
	if st.UpstreamConnectFailures != 2 || st.UpstreamConnects != 2 {
		t.Fatalf("stats %+v", st)
	}
	// A successful retry delivers normally.
	cl.send(call("m", 10))
	d.get(t, 2).h.OnFailure(FailureRemote)
	srv := d.ready(t, 3, c)
	srv.h.OnData(replyTo(t, srv.requests()[0], "ok"))
	if f := cl.one(); f.RequestID() != 10 || f.Kind() != codecs.KindResponse {
		t.Fatalf("reply %v id %d", f.Kind(), f.RequestID())
	}
}

func TestUpstreamCloseMidFlight(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	a, b := newClient(t, e), newClient(t, e)
	a.send(call("m", 1))
	b.send(call("m", 1))
	srv := d.ready(t, 0, c)
	srv.requests()
	srv.h.OnClose()
	a.wantError(1, codecs.ReasonUnavailable)
	b.wantError(1, codecs.ReasonUnavailable)
	// The next request opens a new connection.
	a.send(call("m", 2))
	if d.count() != 2 {
		t.Fatalf("%d dials, want a new connection", d.count())
	}
	srv2 := d.ready(t, 1, c)
	srv2.h.OnData(replyTo(t, srv2.requests()[0], "ok"))
	if f := a.one(); f.Kind() != codecs.KindResponse {
		t.Fatalf("reply %v after reconnect", f.Kind())
	}
	if st := e.Stats(); st.UpstreamCloses != 1 || st.LocalReplies[codecs.ReasonUnavailable] != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDownstreamCloseCancels(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	a, b := newClient(t, e), newClient(t, e)
	a.send(call("m", 1), call("m", 2))
	b.send(call("m", 1))
	srv := d.ready(t, 0, c)
	reqs := srv.requests()
	a.s.OnClose()
	a.s.OnClose() // idempotent
	for _, r := range reqs {
		srv.h.OnData(replyTo(t, r, "late"))
	}
	if got := a.down.bytes(); len(got) != 0 {
		t.Fatalf("closed client got %d bytes", len(got))
	}
	if len(b.replies()) != 1 {
		t.Fatal("other client lost its reply")
	}
	st := e.Stats()
	if st.Cancelled != 2 || st.DroppedResponses != 2 || st.ActiveSessions != 1 {
		t.Fatalf("stats %+v", st)
	}
	if a.down.isClosed() {
		t.Fatal("engine closed a connection the host reported closed")
	}
	cl := e.testCluster("c")
	if cl.active.Load() != 0 || cl.cfg.Load().eps[0].active.Load() != 0 {
		t.Fatalf("active %d/%d after everything finished", cl.active.Load(), cl.cfg.Load().eps[0].active.Load())
	}
	a.send(call("m", 3)) // data after close is ignored
	if len(srv.requests()) != 0 {
		t.Fatal("closed session forwarded a request")
	}
}

func TestNoRouteAndNoEndpoints(t *testing.T) {
	c := thriftCodec(t)
	cfg := Config{Codec: c,
		Routes:   []Route{{Match: []AttributeMatch{{Name: "method", Value: "Known"}}, Cluster: "empty"}},
		Clusters: []Cluster{{Name: "empty"}}}
	e, d := newEngine(t, cfg)
	cl := newClient(t, e)
	cl.send(call("Other", 4))
	cl.wantError(4, codecs.ReasonNoRoute)
	cl.send(call("Known", 5))
	cl.wantError(5, codecs.ReasonNoHealthyUpstream)
	if d.count() != 0 {
		t.Fatal("dialled without endpoints")
	}
}

func TestEngineCloseFailsInFlight(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	cl := newClient(t, e)
	cl.send(call("m", 1))
	srv := d.ready(t, 0, c)
	e.Close()
	cl.wantError(1, codecs.ReasonUnavailable)
	if !srv.closed {
		t.Fatal("upstream connection left open")
	}
	cl.send(call("m", 2))
	cl.wantError(2, codecs.ReasonUnavailable)
}

func TestConfigErrors(t *testing.T) {
	c := thriftCodec(t)
	good := Cluster{Name: "c", Endpoints: []Endpoint{{Address: "10.0.0.1:1"}}}
	for name, cfg := range map[string]Config{
		"no codec":        {Clusters: []Cluster{good}},
		"unknown cluster": {Codec: c, Routes: []Route{{Cluster: "x"}}, Clusters: []Cluster{good}},
		"no destination":  {Codec: c, Routes: []Route{{}}, Clusters: []Cluster{good}},
		"both":            {Codec: c, Routes: []Route{{Cluster: "c", WeightedClusters: []WeightedCluster{{"c", 1}}}}, Clusters: []Cluster{good}},
		"zero weights":    {Codec: c, Routes: []Route{{WeightedClusters: []WeightedCluster{{"c", 0}}}}, Clusters: []Cluster{good}},
		"bad regex":       {Codec: c, Routes: []Route{{Cluster: "c", Match: []AttributeMatch{{Name: "method", Kind: MatchRegex, Value: "("}}}}, Clusters: []Cluster{good}},
		"bad kind":        {Codec: c, Routes: []Route{{Cluster: "c", Match: []AttributeMatch{{Name: "method", Kind: 9}}}}, Clusters: []Cluster{good}},
		"host name":       {Codec: c, Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: "example.com:80"}}}}},
		"duplicate ep":    {Codec: c, Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: "10.0.0.1:1"}, {Address: "10.0.0.1:1"}}}}},
		"duplicate name":  {Codec: c, Clusters: []Cluster{good, good}},
		"hash no attrs":   {Codec: c, Clusters: []Cluster{{Name: "c", LB: 4, Endpoints: good.Endpoints}}},
		"negative limit":  {Codec: c, Clusters: []Cluster{{Name: "c", MaxRequests: -1}}},
		"negative idle":   {Codec: c, IdleTimeout: -1},
	} {
		if _, err := New(cfg, Options{Dialer: &fakeDialer{}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(Config{Codec: c}, Options{}); err == nil {
		t.Error("no dialer: accepted")
	}
}

// Streams of different codec modes (framed and unframed Thrift here) never share an
// upstream connection, and each gets its replies in its own framing.
func TestPoolsPerMode(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	framed, unframed := newClient(t, e), newClient(t, e)
	framed.send(call("m", 1))
	unframed.send(call("m", 1)[4:]) // the same message without the frame length
	framed.send(call("m", 2))
	if d.count() != 2 {
		t.Fatalf("%d dials, want one per mode", d.count())
	}
	for i := range 2 {
		srv := d.ready(t, i, c)
		for _, r := range srv.requests() {
			resp := replyTo(t, r, "ok")
			if srv.conn.Mode() == "unframed/binary" {
				resp = resp[4:]
			}
			srv.h.OnData(resp)
		}
	}
	if n := len(framed.replies()); n != 2 {
		t.Fatalf("framed client got %d replies, want 2", n)
	}
	f := unframed.one()
	if f.RequestID() != 1 || unframed.conn.Mode() != "unframed/binary" {
		t.Fatalf("unframed client got id %d in mode %q", f.RequestID(), unframed.conn.Mode())
	}
}

func TestRetriesTryEachEndpointOnce(t *testing.T) {
	c := thriftCodec(t)
	eps := []Endpoint{{Address: "10.0.0.1:1"}, {Address: "10.0.0.2:1"}, {Address: "10.0.0.3:1"}}
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{Endpoints: eps, MaxConnectAttempts: 5}))
	cl := newClient(t, e)
	cl.send(call("m", 1))
	seen := map[string]bool{}
	for i := 0; i < d.count(); i++ {
		dl := d.get(t, i)
		if seen[dl.addr] && len(seen) < 3 {
			t.Fatalf("dial %d went back to %s before trying every endpoint", i, dl.addr)
		}
		seen[dl.addr] = true
		dl.h.OnFailure(FailureRemote)
	}
	if d.count() != 5 || len(seen) != 3 {
		t.Fatalf("%d dials over %d endpoints, want 5 over 3", d.count(), len(seen))
	}
	cl.wantError(1, codecs.ReasonUnavailable)
}

func TestEngineCloseWhileConnecting(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	cl := newClient(t, e)
	cl.send(call("m", 1), thriftMsg(tOneway, "n", 2, stringField(1, "x")))
	e.Close()
	cl.wantError(1, codecs.ReasonUnavailable)
	late := d.ready(t, 0, c)
	if !late.closed || len(late.requests()) != 0 {
		t.Fatal("connection completed after Close was used")
	}
	d.get(t, 0).h.OnFailure(FailureRemote) // a stray report changes nothing
	if st := e.Stats(); st.UpstreamConnectFailures != 0 {
		t.Fatalf("stats %+v", st)
	}
	if cc := e.testCluster("c"); cc.queued.Load() != 0 || cc.active.Load() != 0 {
		t.Fatalf("queued %d active %d after Close", cc.queued.Load(), cc.active.Load())
	}
}
