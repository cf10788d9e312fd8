package engine

import (
	"bytes"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// pingPongCodec is a real codec that declares it cannot multiplex, so that the engine uses
// ping-pong pools with it.
type pingPongCodec struct{ codecs.Codec }

func (pingPongCodec) Multiplexes() bool { return false }

func pingPongThrift(t testing.TB) codecs.Codec { return pingPongCodec{thriftCodec(t)} }

// method returns the method a request calls.
func method(f codecs.Frame) string {
	m, _ := f.Attribute("method")
	return m
}

// oneRequest expects exactly one new request on srv and returns it.
func (s *fakeServer) oneRequest() codecs.Frame {
	s.t.Helper()
	reqs := s.requests()
	if len(reqs) != 1 {
		s.t.Fatalf("server %s got %d requests, want 1", s.addr, len(reqs))
	}
	return reqs[0]
}

func (s *fakeServer) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func TestPingPongSequentialReuse(t *testing.T) {
	c := pingPongThrift(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	a, b := newClient(t, e), newClient(t, e)
	a.send(call("x", 7))
	srv := d.ready(t, 0, c)
	req := srv.oneRequest()
	if req.RequestID() != 7 {
		t.Fatalf("upstream got id %d, want the client's 7: ping-pong pools do not rewrite ids", req.RequestID())
	}
	srv.h.OnData(replyTo(t, req, "one"))
	if f := a.one(); f.RequestID() != 7 || payload(t, f) != "one" {
		t.Fatalf("reply id %d %q", f.RequestID(), payload(t, f))
	}
	// Another client, the same id: the idle connection is reused.
	b.send(call("y", 7))
	req = srv.oneRequest()
	srv.h.OnData(replyTo(t, req, "two"))
	if f := b.one(); f.RequestID() != 7 || payload(t, f) != "two" {
		t.Fatalf("reply id %d %q", f.RequestID(), payload(t, f))
	}
	a.send(call("x", 8))
	srv.h.OnData(replyTo(t, srv.oneRequest(), "three"))
	if f := a.one(); f.RequestID() != 8 || payload(t, f) != "three" {
		t.Fatalf("reply id %d %q", f.RequestID(), payload(t, f))
	}
	if d.count() != 1 || srv.isClosed() {
		t.Fatalf("%d dials (closed %v), want one connection reused", d.count(), srv.isClosed())
	}
	if st := e.Stats(); st.Responses != 3 || st.UpstreamConnects != 1 || st.UpstreamCloses != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPingPongConcurrentOpensConnections(t *testing.T) {
	c := pingPongThrift(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{ConnectionsPerEndpoint: 2}))
	a, b := newClient(t, e), newClient(t, e)
	// Three requests at once, two of them from one client, all with id 1 or 2.
	a.send(call("a1", 1), call("a2", 2))
	b.send(call("b1", 1))
	if d.count() != 3 {
		t.Fatalf("%d dials for 3 concurrent requests, want 3", d.count())
	}
	srvs := make([]*fakeServer, 3)
	reqs := make([]codecs.Frame, 3)
	for i := range srvs {
		srvs[i] = d.ready(t, i, c)
		reqs[i] = srvs[i].oneRequest() // one request per connection
	}
	// The oldest request took the first connection ready.
	if method(reqs[0]) != "a1" || method(reqs[1]) != "a2" || method(reqs[2]) != "b1" {
		t.Fatalf("requests %s %s %s, want in arrival order", method(reqs[0]), method(reqs[1]), method(reqs[2]))
	}
	// Answers in reverse order, each by its own connection.
	for i := 2; i >= 0; i-- {
		srvs[i].h.OnData(replyTo(t, reqs[i], method(reqs[i])))
	}
	got := map[string]uint64{}
	for _, f := range append(a.replies(), b.replies()...) {
		got[payload(t, f)] = f.RequestID()
	}
	if len(got) != 3 || got["a1"] != 1 || got["a2"] != 2 || got["b1"] != 1 {
		t.Fatalf("replies %v", got)
	}
	// Two idle connections are kept, the third is closed once free.
	closed := 0
	for _, s := range srvs {
		if s.isClosed() {
			closed++
		}
	}
	if closed != 1 {
		t.Fatalf("%d connections closed after the burst, want 1 (2 kept idle)", closed)
	}
	a.send(call("a3", 3))
	b.send(call("b2", 2))
	a.send(call("a4", 4)) // both idle ones busy: a new one
	if d.count() != 4 {
		t.Fatalf("%d dials, want the 2 idle connections reused and 1 new", d.count())
	}
	if st := e.Stats(); st.UpstreamCloses != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPingPongQueueServedByFirstFreeConnection(t *testing.T) {
	c := pingPongThrift(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	cl := newClient(t, e)
	cl.send(call("m", 1))
	srv := d.ready(t, 0, c)
	req := srv.oneRequest()
	cl.send(call("m", 2)) // the connection is busy: dial another
	if d.count() != 2 {
		t.Fatalf("%d dials, want 2", d.count())
	}
	// The busy connection frees first and takes the waiting request.
	srv.h.OnData(replyTo(t, req, "ok"))
	req2 := srv.oneRequest()
	if req2.RequestID() != 2 {
		t.Fatalf("request %d written after the response, want 2", req2.RequestID())
	}
	// The late connection has nothing to do: it goes idle, and once the first one is free
	// again, it is one idle connection too many (ConnectionsPerEndpoint is 1).
	late := d.ready(t, 1, c)
	if n := len(late.requests()); n != 0 {
		t.Fatalf("%d requests on the late connection, want 0", n)
	}
	srv.h.OnData(replyTo(t, req2, "ok"))
	if fs := cl.replies(); len(fs) != 2 {
		t.Fatalf("%d replies, want 2", len(fs))
	}
	if !late.isClosed() && !srv.isClosed() {
		t.Fatal("two idle connections kept, want one")
	}
	if e.testCluster("c").queued.Load() != 0 || e.testCluster("c").active.Load() != 0 {
		t.Fatal("counters not back to zero")
	}
}

func TestPingPongTimeoutClosesConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := pingPongThrift(t)
		e, d := newEngine(t, oneCluster(c, Route{Timeout: 100 * time.Millisecond}, Cluster{}))
		cl := newClient(t, e)
		cl.send(call("slow", 1))
		srv := d.ready(t, 0, c)
		req := srv.oneRequest()
		time.Sleep(150 * time.Millisecond)
		synctest.Wait()
		cl.wantError(1, codecs.ReasonTimeout)
		if !srv.isClosed() {
			t.Fatal("connection of a timed-out request kept: its late response would answer the next request")
		}
		// The late response, and the host's close report, change nothing.
		srv.h.OnData(replyTo(t, req, "late"))
		srv.h.OnClose()
		if fs := cl.replies(); len(fs) != 0 {
			t.Fatalf("%d replies after the timeout, want none", len(fs))
		}
		// The next request gets a fresh connection.
		cl.send(call("fast", 2))
		if d.count() != 2 {
			t.Fatalf("%d dials, want a new connection", d.count())
		}
		srv2 := d.ready(t, 1, c)
		srv2.h.OnData(replyTo(t, srv2.oneRequest(), "fast"))
		if f := cl.one(); f.RequestID() != 2 || payload(t, f) != "fast" {
			t.Fatalf("reply id %d %q", f.RequestID(), payload(t, f))
		}
		st := e.Stats()
		if st.LocalReplies[codecs.ReasonTimeout] != 1 || st.DroppedResponses != 1 || st.Responses != 1 || st.UpstreamCloses != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestPingPongTimeoutWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := pingPongThrift(t)
		e, d := newEngine(t, oneCluster(c, Route{Timeout: 100 * time.Millisecond}, Cluster{ConnectTimeout: time.Minute}))
		cl := newClient(t, e)
		cl.send(call("a", 1))
		time.Sleep(50 * time.Millisecond)
		cl.send(call("b", 2))
		time.Sleep(60 * time.Millisecond)
		synctest.Wait()
		cl.wantError(1, codecs.ReasonTimeout)
		// Request b takes the first connection ready; the second one stays idle.
		srv := d.ready(t, 0, c)
		if m := method(srv.oneRequest()); m != "b" {
			t.Fatalf("sent %q, want b", m)
		}
		idle := d.ready(t, 1, c)
		if n := len(idle.requests()); n != 0 || idle.isClosed() {
			t.Fatalf("second connection: %d requests, closed %v; want idle", n, idle.isClosed())
		}
		if n := e.testCluster("c").queued.Load(); n != 0 {
			t.Fatalf("%d requests counted waiting", n)
		}
	})
}

func TestPingPongUpstreamCloseMidFlight(t *testing.T) {
	c := pingPongThrift(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{ConnectionsPerEndpoint: 2}))
	a, b := newClient(t, e), newClient(t, e)
	a.send(call("m", 1))
	b.send(call("m", 1))
	s0, s1 := d.ready(t, 0, c), d.ready(t, 1, c)
	s0.oneRequest()
	r1 := s1.oneRequest()
	s0.h.OnClose()
	a.wantError(1, codecs.ReasonUnavailable)
	// The other connection is unaffected.
	s1.h.OnData(replyTo(t, r1, "ok"))
	if f := b.one(); f.Kind() != codecs.KindResponse || payload(t, f) != "ok" {
		t.Fatalf("reply %v", f.Kind())
	}
	// The closed connection is not reused; the surviving idle one is.
	a.send(call("m", 2))
	if d.count() != 2 {
		t.Fatalf("%d dials, want the idle connection reused", d.count())
	}
	s1.h.OnData(replyTo(t, s1.oneRequest(), "again"))
	if f := a.one(); f.RequestID() != 2 || payload(t, f) != "again" {
		t.Fatalf("reply id %d", f.RequestID())
	}
	st := e.Stats()
	if st.UpstreamCloses != 1 || st.LocalReplies[codecs.ReasonUnavailable] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPingPongOnewayReleasesConnection(t *testing.T) {
	c := pingPongThrift(t)
	e, d := newEngine(t, oneCluster(c, Route{OnewayMethods: []string{"notify"}}, Cluster{}))
	cl := newClient(t, e)
	cl.send(thriftMsg(tOneway, "fire", 1, stringField(1, "x")))
	srv := d.ready(t, 0, c)
	if m := method(srv.oneRequest()); m != "fire" {
		t.Fatalf("sent %q", m)
	}
	// Freed at once: the next requests, oneway by route and two-way, reuse it.
	cl.send(call("notify", 2))
	if m := method(srv.oneRequest()); m != "notify" {
		t.Fatalf("sent %q", m)
	}
	cl.send(call("m", 3))
	srv.h.OnData(replyTo(t, srv.oneRequest(), "ok"))
	if f := cl.one(); f.RequestID() != 3 {
		t.Fatalf("reply id %d, want 3", f.RequestID())
	}
	// Oneway requests waiting for a connection are written and release it too.
	cl.send(call("m", 4))
	cl.send(call("notify", 5), call("m", 6))
	if d.count() != 3 {
		t.Fatalf("%d dials, want 3", d.count())
	}
	s2 := d.ready(t, 1, c)
	if reqs := s2.requests(); len(reqs) != 2 || method(reqs[0]) != "notify" || reqs[1].RequestID() != 6 {
		t.Fatalf("new connection got %d requests, want notify then request 6", len(reqs))
	}
	if d.count() != 3 || e.testCluster("c").queued.Load() != 0 || e.testCluster("c").active.Load() != 2 {
		t.Fatalf("dials %d queued %d active %d", d.count(), e.testCluster("c").queued.Load(), e.testCluster("c").active.Load())
	}
	if st := e.Stats(); st.Oneway != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPingPongLimits(t *testing.T) {
	c := pingPongThrift(t)
	t.Run("requests", func(t *testing.T) {
		e, d := newEngine(t, oneCluster(c, Route{}, Cluster{MaxRequests: 2}))
		cl := newClient(t, e)
		cl.send(call("m", 1), call("m", 2), call("m", 3))
		cl.wantError(3, codecs.ReasonOverLimit)
		if d.count() != 2 {
			t.Fatalf("%d dials, want 2", d.count())
		}
		srv := d.ready(t, 0, c)
		srv.h.OnData(replyTo(t, srv.oneRequest(), "ok"))
		if f := cl.one(); f.RequestID() != 1 {
			t.Fatalf("reply id %d", f.RequestID())
		}
		// The response freed a slot, and the first connection is idle again.
		cl.send(call("m", 4))
		if len(srv.requests()) != 1 || d.count() != 2 {
			t.Fatal("request not written on the idle connection")
		}
	})
	t.Run("pending", func(t *testing.T) {
		e, d := newEngine(t, oneCluster(c, Route{}, Cluster{MaxPendingRequests: 1}))
		cl := newClient(t, e)
		cl.send(call("m", 1), call("m", 2))
		cl.wantError(2, codecs.ReasonOverLimit)
		srv := d.ready(t, 0, c)
		if srv.oneRequest().RequestID() != 1 {
			t.Fatal("wrong request written")
		}
		if st := e.Stats(); st.LocalReplies[codecs.ReasonOverLimit] != 1 || d.count() != 1 {
			t.Fatalf("stats %+v, %d dials", st, d.count())
		}
	})
}

func TestPingPongDownstreamCloseDiscardsConnection(t *testing.T) {
	c := pingPongThrift(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	a, b := newClient(t, e), newClient(t, e)
	a.send(call("m", 1))
	srv := d.ready(t, 0, c)
	req := srv.oneRequest()
	a.s.OnClose()
	if !srv.isClosed() {
		t.Fatal("connection with an abandoned request kept")
	}
	srv.h.OnData(replyTo(t, req, "late"))
	b.send(call("m", 1))
	if d.count() != 2 {
		t.Fatalf("%d dials, want a fresh connection", d.count())
	}
	if st := e.Stats(); st.Cancelled != 1 || st.DroppedResponses != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPingPongConnectFailureRetries(t *testing.T) {
	c := pingPongThrift(t)
	eps := []Endpoint{{Address: "10.0.0.1:1"}, {Address: "10.0.0.2:1"}}
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{Endpoints: eps, MaxConnectAttempts: 2}))
	cl := newClient(t, e)
	cl.send(call("m", 5))
	first := d.get(t, 0)
	first.h.OnFailure(FailureRemote)
	if d.count() != 2 || d.get(t, 1).addr == first.addr {
		t.Fatalf("%d dials, want a retry on the other endpoint", d.count())
	}
	srv := d.ready(t, 1, c)
	srv.h.OnData(replyTo(t, srv.oneRequest(), "ok"))
	if f := cl.one(); f.RequestID() != 5 || f.Kind() != codecs.KindResponse {
		t.Fatalf("reply %v id %d", f.Kind(), f.RequestID())
	}
	if st := e.Stats(); st.UpstreamConnectFailures != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPingPongEngineClose(t *testing.T) {
	c := pingPongThrift(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	cl := newClient(t, e)
	cl.send(call("m", 1))
	srv := d.ready(t, 0, c)
	srv.oneRequest()
	cl.send(call("m", 2)) // waits for a second connection
	e.Close()
	fs := cl.replies()
	if len(fs) != 2 {
		t.Fatalf("%d replies on close, want 2", len(fs))
	}
	for _, f := range fs {
		if f.Kind() != codecs.KindErrorResponse {
			t.Fatalf("reply %v, want an error", f.Kind())
		}
	}
	if !srv.isClosed() {
		t.Fatal("connection not closed")
	}
	late := d.ready(t, 1, c)
	if !late.isClosed() {
		t.Fatal("connection completing after close kept")
	}
	if e.testCluster("c").queued.Load() != 0 || e.testCluster("c").active.Load() != 0 {
		t.Fatal("counters not back to zero")
	}
}

func TestPingPongDubbo(t *testing.T) {
	c := pingPongCodec{dubboCodec(t)}
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	a, b := newClient(t, e), newClient(t, e)
	a.send(dubboRequest(t, 42, "org.Echo", "", "echo", nil))
	b.send(dubboRequest(t, 42, "org.Echo", "", "echo", nil))
	s0, s1 := d.ready(t, 0, c), d.ready(t, 1, c)
	r0, r1 := s0.oneRequest(), s1.oneRequest()
	if r0.RequestID() != 42 || r1.RequestID() != 42 {
		t.Fatalf("ids %d %d upstream, want 42 as sent", r0.RequestID(), r1.RequestID())
	}
	s1.h.OnData(dubboResponse(t, 42, "to b", nil))
	s0.h.OnData(dubboResponse(t, 42, "to a", nil))
	fa, fb := a.one(), b.one()
	ba, _ := fa.AppendTo(nil)
	bb, _ := fb.AppendTo(nil)
	if !bytes.Contains(ba, []byte("to a")) || !bytes.Contains(bb, []byte("to b")) {
		t.Fatalf("replies crossed: a got %q, b got %q", ba, bb)
	}
}

// encCodec is a ping-pong Thrift codec whose requests fail to encode when their method is
// "badenc" and panic when it is "panicenc".
type encCodec struct{ pingPongCodec }
type encConn struct{ codecs.Conn }
type encFrame struct{ codecs.Frame }

func (c encCodec) NewConn() codecs.Conn { return encConn{c.pingPongCodec.NewConn()} }

func (c encConn) Decode(b []byte) (codecs.Frame, int, error) {
	f, n, err := c.Conn.Decode(b)
	if f != nil {
		f = encFrame{f}
	}
	return f, n, err
}

func (c encConn) AppendErrorReply(dst []byte, req codecs.Frame, r codecs.Reason, msg string) ([]byte, error) {
	if f, ok := req.(encFrame); ok {
		req = f.Frame
	}
	return c.Conn.AppendErrorReply(dst, req, r, msg)
}

func (f encFrame) AppendTo(dst []byte) ([]byte, error) {
	if f.Kind() == codecs.KindRequest {
		switch method(f.Frame) {
		case "badenc":
			return dst, errors.New("cannot encode")
		case "panicenc":
			panic("encoder bug")
		}
	}
	return f.Frame.AppendTo(dst)
}

func TestPingPongEncodeFailures(t *testing.T) {
	c := encCodec{pingPongCodec{thriftCodec(t)}}
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	cl := newClient(t, e)
	// While connecting: the request that cannot be encoded is answered, the next one sent.
	cl.send(call("badenc", 1), call("ok", 2))
	srv := d.ready(t, 0, c)
	cl.wantError(1, codecs.ReasonInternal)
	req := srv.oneRequest()
	if req.RequestID() != 2 {
		t.Fatalf("sent request %d, want 2", req.RequestID())
	}
	srv.h.OnData(replyTo(t, req, "ok"))
	if f := cl.one(); f.RequestID() != 2 {
		t.Fatalf("reply id %d", f.RequestID())
	}
	// On an idle connection: answered at once, and the connection stays usable.
	cl.send(call("badenc", 3))
	cl.wantError(3, codecs.ReasonInternal)
	cl.send(call("ok", 4))
	srv.h.OnData(replyTo(t, srv.oneRequest(), "ok"))
	// Two dials so far: one per request waiting at the start.
	if f := cl.one(); f.RequestID() != 4 || d.count() != 2 {
		t.Fatalf("reply id %d after %d dials, want 4 on the first connection", f.RequestID(), d.count())
	}
	// A panicking encoder while a connection comes up closes that connection and answers
	// the request; a bystander waiting for it is not lost.
	other := newClient(t, e)
	cl.send(call("hold", 5))     // takes the idle connection
	cl.send(call("panicenc", 6)) // waits for the second connection, still coming up
	other.send(call("ok", 1))
	if d.count() != 3 {
		t.Fatalf("%d dials, want 3", d.count())
	}
	s2 := d.ready(t, 1, c)
	if !s2.isClosed() {
		t.Fatal("connection kept after a panic")
	}
	cl.wantError(6, codecs.ReasonUnavailable)
	s3 := d.ready(t, 2, c)
	if m := method(s3.oneRequest()); m != "ok" {
		t.Fatalf("bystander's request %q not sent", m)
	}
	srv.h.OnData(replyTo(t, srv.oneRequest(), "ok"))
	if f := cl.one(); f.RequestID() != 5 {
		t.Fatalf("reply id %d, want 5", f.RequestID())
	}
	st := e.Stats()
	if st.Panics != 1 || st.MutationErrors != 2 || st.LocalReplies[codecs.ReasonInternal] != 2 {
		t.Fatalf("stats %+v", st)
	}
	if n := e.testCluster("c").queued.Load(); n != 0 {
		t.Fatalf("%d counted waiting", n)
	}
	if n := e.testCluster("c").active.Load(); n != 1 {
		t.Fatalf("%d counted active, want the bystander's only", n)
	}
}

func TestPingPongIdleConnectionClosedByServer(t *testing.T) {
	c := pingPongThrift(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	cl := newClient(t, e)
	cl.send(call("m", 1))
	srv := d.ready(t, 0, c)
	srv.h.OnData(replyTo(t, srv.oneRequest(), "ok"))
	cl.one()
	// A stray frame on the idle connection answers nothing; then the server closes it.
	srv.h.OnData(reply("m", 1, "stray"))
	srv.h.OnClose()
	if fs := cl.replies(); len(fs) != 0 {
		t.Fatalf("%d replies from an idle connection, want none", len(fs))
	}
	cl.send(call("m", 2))
	if d.count() != 2 {
		t.Fatalf("%d dials, want a new connection for the closed idle one", d.count())
	}
	srv2 := d.ready(t, 1, c)
	srv2.h.OnData(replyTo(t, srv2.oneRequest(), "ok"))
	if f := cl.one(); f.RequestID() != 2 {
		t.Fatalf("reply id %d", f.RequestID())
	}
	if st := e.Stats(); st.DroppedResponses != 1 || st.UpstreamCloses != 1 || len(st.LocalReplies) != 0 {
		t.Fatalf("stats %+v", st)
	}
}
