package engine

import (
	"bytes"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/thrift"
)

func TestTimeoutDropsLateResponse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		e, d := newEngine(t, oneCluster(c, Route{Timeout: 100 * time.Millisecond}, Cluster{}))
		cl := newClient(t, e)
		cl.send(call("slow", 1))
		srv := d.ready(t, 0, c)
		time.Sleep(50 * time.Millisecond)
		cl.send(call("fast", 2))
		reqs := srv.requests()
		time.Sleep(60 * time.Millisecond) // request 1 expired, request 2 not yet
		synctest.Wait()
		cl.wantError(1, codecs.ReasonTimeout)
		srv.h.OnData(replyTo(t, reqs[0], "late"))
		srv.h.OnData(replyTo(t, reqs[1], "fast"))
		if f := cl.one(); f.RequestID() != 2 || payload(t, f) != "fast" {
			t.Fatalf("got id %d %q, want the fast reply only", f.RequestID(), payload(t, f))
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if fs := cl.replies(); len(fs) != 0 {
			t.Fatalf("%d replies after the response, want none", len(fs))
		}
		st := e.Stats()
		if st.LocalReplies[codecs.ReasonTimeout] != 1 || st.DroppedResponses != 1 || st.Responses != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestTimeoutWhileConnecting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		e, d := newEngine(t, oneCluster(c, Route{Timeout: 100 * time.Millisecond}, Cluster{ConnectTimeout: time.Minute}))
		cl := newClient(t, e)
		cl.send(call("a", 1))
		time.Sleep(50 * time.Millisecond)
		cl.send(call("b", 2))
		time.Sleep(60 * time.Millisecond)
		synctest.Wait()
		cl.wantError(1, codecs.ReasonTimeout)
		// The expired request is not sent when the connection comes up.
		srv := d.ready(t, 0, c)
		reqs := srv.requests()
		if len(reqs) != 1 {
			t.Fatalf("%d requests sent on ready, want 1", len(reqs))
		}
		if m, _ := reqs[0].Attribute("method"); m != "b" {
			t.Fatalf("sent %q, want b", m)
		}
	})
}

func TestConnectTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		eps := []Endpoint{{Address: "10.0.0.1:1"}, {Address: "10.0.0.2:1"}}
		e, d := newEngine(t, oneCluster(c, Route{}, Cluster{Endpoints: eps, ConnectTimeout: time.Second, MaxConnectAttempts: 2}))
		cl := newClient(t, e)
		cl.send(call("m", 1))
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		if d.count() != 2 {
			t.Fatalf("%d dials after a connect timeout, want a retry", d.count())
		}
		// The first connection completing late is closed, not used.
		late := d.ready(t, 0, c)
		if !late.closed {
			t.Fatal("late connection kept")
		}
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		cl.wantError(1, codecs.ReasonUnavailable)
	})
}

func TestIdleTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		cfg := oneCluster(c, Route{}, Cluster{})
		cfg.IdleTimeout = time.Second
		e, d := newEngine(t, cfg)
		busy, quiet := newClient(t, e), newClient(t, e)
		busy.send(call("m", 1))
		srv := d.ready(t, 0, c)
		time.Sleep(700 * time.Millisecond)
		quiet.send(call("m", 1)) // activity postpones the timeout
		reqs := srv.requests()
		srv.h.OnData(replyTo(t, reqs[1], "ok"))
		time.Sleep(700 * time.Millisecond)
		synctest.Wait()
		if quiet.down.isClosed() {
			t.Fatal("closed 0.7 s after its last activity")
		}
		if busy.down.isClosed() {
			t.Fatal("closed with a request in flight")
		}
		time.Sleep(400 * time.Millisecond)
		synctest.Wait()
		if !quiet.down.isClosed() {
			t.Fatal("idle connection not closed")
		}
		// Once its response arrives, the busy one goes idle too.
		srv.h.OnData(replyTo(t, reqs[0], "ok"))
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		if !busy.down.isClosed() {
			t.Fatal("connection idle after its response not closed")
		}
		if st := e.Stats(); st.IdleTimeouts != 2 || st.ActiveSessions != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestHeartbeats(t *testing.T) {
	c := dubboCodec(t)
	e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	cl := newClient(t, e)
	cl.send(dubboHeartbeat(42))
	f := cl.one()
	if f.Kind() != codecs.KindHeartbeatResponse || f.RequestID() != 42 {
		t.Fatalf("heartbeat answered with %v id %d", f.Kind(), f.RequestID())
	}
	if d.count() != 0 {
		t.Fatal("heartbeat forwarded")
	}
	// A server's heartbeat on an upstream connection is answered on that connection.
	cl.send(dubboRequest(t, 1, "S", "", "m", nil))
	srv := d.ready(t, 0, c)
	srv.requests()
	srv.h.OnData(dubboHeartbeat(7))
	reqs := srv.requests()
	if len(reqs) != 1 || reqs[0].Kind() != codecs.KindHeartbeatResponse || reqs[0].RequestID() != 7 {
		t.Fatalf("server got %d frames back for its heartbeat", len(reqs))
	}
	if st := e.Stats(); st.Heartbeats != 2 {
		t.Fatalf("heartbeats %d, want 2", st.Heartbeats)
	}
}

func TestOneway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		r := Route{Timeout: 100 * time.Millisecond, OnewayMethods: []string{"log"}}
		e, d := newEngine(t, oneCluster(c, r, Cluster{}))
		cl := newClient(t, e)
		cl.send(thriftMsg(tOneway, "notify", 5, stringField(1, "x")), call("log", 6))
		srv := d.ready(t, 0, c)
		reqs := srv.requests()
		if len(reqs) != 2 || reqs[0].Kind() != codecs.KindOneway || reqs[1].Kind() != codecs.KindRequest {
			t.Fatalf("server got %d frames", len(reqs))
		}
		if reqs[0].RequestID() == reqs[1].RequestID() {
			t.Fatal("oneway requests share an upstream id")
		}
		cc := e.testCluster("c")
		if cc.active.Load() != 0 {
			t.Fatalf("%d requests wait for a response, want none", cc.active.Load())
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if fs := cl.replies(); len(fs) != 0 {
			t.Fatalf("oneway requests got %d replies", len(fs))
		}
		if st := e.Stats(); st.Oneway != 2 || st.Requests != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestMutations(t *testing.T) {
	c := dubboCodec(t)
	r := Route{
		RequestHeaders:  HeaderMutation{Set: []Header{{"x-env", "prod"}}, Remove: []string{"x-drop"}},
		ResponseHeaders: HeaderMutation{Set: []Header{{"x-proxy", "meltemi"}}},
	}
	e, d := newEngine(t, oneCluster(c, r, Cluster{}))
	cl := newClient(t, e)
	cl.send(dubboRequest(t, 3, "S", "1.0", "m", map[string]string{"x-drop": "1", "x-keep": "2"}))
	srv := d.ready(t, 0, c)
	req := srv.requests()[0]
	for name, want := range map[string]string{"x-env": "prod", "x-keep": "2", "x-drop": ""} {
		if v, _ := req.Attribute(name); v != want {
			t.Errorf("upstream request %s = %q, want %q", name, v, want)
		}
	}
	srv.h.OnData(dubboResponse(t, req.RequestID(), "ok", map[string]string{"a": "b"}))
	f := cl.one()
	if f.RequestID() != 3 || f.Kind() != codecs.KindResponse {
		t.Fatalf("reply %v id %d", f.Kind(), f.RequestID())
	}
	if v, _ := f.Attribute("x-proxy"); v != "meltemi" {
		t.Fatalf("response x-proxy = %q", v)
	}
}

func TestMutationErrors(t *testing.T) {
	// Framed Thrift cannot carry headers: the codec refuses, the client gets an internal
	// error and the request goes nowhere.
	c := thriftCodec(t)
	t.Run("request", func(t *testing.T) {
		r := Route{RequestHeaders: HeaderMutation{Set: []Header{{"x", "y"}}}}
		e, d := newEngine(t, oneCluster(c, r, Cluster{}))
		cl := newClient(t, e)
		cl.send(call("m", 8))
		cl.wantError(8, codecs.ReasonInternal)
		if d.count() != 0 {
			t.Fatal("request forwarded despite the mutation error")
		}
		if st := e.Stats(); st.MutationErrors != 1 {
			t.Fatalf("mutation errors %d", st.MutationErrors)
		}
	})
	t.Run("response", func(t *testing.T) {
		r := Route{ResponseHeaders: HeaderMutation{Remove: []string{"x"}}}
		e, d := newEngine(t, oneCluster(c, r, Cluster{}))
		cl := newClient(t, e)
		cl.send(call("m", 8))
		srv := d.ready(t, 0, c)
		srv.h.OnData(replyTo(t, srv.requests()[0], "ok"))
		cl.wantError(8, codecs.ReasonInternal)
	})
}

func TestDecodeError(t *testing.T) {
	t.Run("thrift", func(t *testing.T) {
		c := thriftCodec(t)
		e, _ := newEngine(t, oneCluster(c, Route{}, Cluster{}))
		bad, good := newClient(t, e), newClient(t, e)
		bad.send([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
		if !bad.down.isClosed() {
			t.Fatal("connection with garbage left open")
		}
		good.send(call("m", 1))
		if good.down.isClosed() {
			t.Fatal("other connection closed")
		}
		if st := e.Stats(); st.DecodeErrors != 1 || st.ActiveSessions != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("oversized", func(t *testing.T) {
		c, err := thrift.Factory{}.New(codecs.Options{MaxFrameSize: 64})
		if err != nil {
			t.Fatal(err)
		}
		e, _ := newEngine(t, oneCluster(c, Route{}, Cluster{}))
		cl := newClient(t, e)
		cl.send(call(string(bytes.Repeat([]byte("m"), 100)), 1)[:20])
		if !cl.down.isClosed() {
			t.Fatal("oversized frame accepted")
		}
	})
	t.Run("upstream", func(t *testing.T) {
		c := thriftCodec(t)
		e, d := newEngine(t, oneCluster(c, Route{}, Cluster{}))
		cl := newClient(t, e)
		cl.send(call("m", 1))
		srv := d.ready(t, 0, c)
		srv.h.OnData([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})
		if !srv.closed {
			t.Fatal("upstream connection with garbage left open")
		}
		cl.wantError(1, codecs.ReasonUnavailable)
		if st := e.Stats(); st.UpstreamDecodeErrors != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// panicCodec wraps a codec: decoding "boom" panics, and so does reading the method
// attribute of a request named "kaboom".
type panicCodec struct{ codecs.Codec }
type panicConn struct{ codecs.Conn }
type panicFrame struct{ codecs.Frame }

func (c panicCodec) NewConn() codecs.Conn { return panicConn{c.Codec.NewConn()} }

func (c panicConn) Decode(b []byte) (codecs.Frame, int, error) {
	if bytes.Contains(b, []byte("boom")) && !bytes.Contains(b, []byte("kaboom")) {
		panic("codec bug")
	}
	f, n, err := c.Conn.Decode(b)
	if f != nil {
		f = panicFrame{f}
	}
	return f, n, err
}

func (c panicConn) AppendErrorReply(dst []byte, req codecs.Frame, r codecs.Reason, msg string) ([]byte, error) {
	if p, ok := req.(panicFrame); ok {
		req = p.Frame
	}
	return c.Conn.AppendErrorReply(dst, req, r, msg)
}

func (f panicFrame) Attribute(name string) (string, bool) {
	v, ok := f.Frame.Attribute(name)
	if name == "method" && v == "kaboom" {
		panic(errors.New("attribute bug"))
	}
	return v, ok
}

func TestPanicRecovery(t *testing.T) {
	c := panicCodec{thriftCodec(t)}
	r := Route{Match: []AttributeMatch{{Name: "method", Kind: MatchPresent}}}
	e, d := newEngine(t, oneCluster(c, r, Cluster{}))
	victim, bystander := newClient(t, e), newClient(t, e)
	bystander.send(call("m", 1))

	// A panic while routing a request: internal error reply with the client's id, then close.
	victim.send(call("kaboom", 77))
	victim.wantError(77, codecs.ReasonInternal)
	if !victim.down.isClosed() {
		t.Fatal("session survived a panic")
	}
	// A panic inside Decode: no request to answer, the connection is closed.
	other := newClient(t, e)
	other.send(call("boom", 1))
	if !other.down.isClosed() || len(other.down.bytes()) != 0 {
		t.Fatal("session not closed silently after a decode panic")
	}
	// Everyone else carries on.
	srv := d.ready(t, 0, c)
	srv.h.OnData(replyTo(t, srv.requests()[0], "ok"))
	if f := bystander.one(); payload(t, f) != "ok" {
		t.Fatal("bystander lost its reply")
	}
	// A panic in an upstream callback closes that connection and fails its requests.
	bystander.send(call("m", 2))
	srv.requests()
	srv.h.OnData(reply("boom", 1, "x"))
	if !srv.closed {
		t.Fatal("upstream connection survived a panic")
	}
	bystander.wantError(2, codecs.ReasonUnavailable)
	st := e.Stats()
	if st.Panics != 3 || st.ActiveSessions != 1 {
		t.Fatalf("stats %+v", st)
	}
}

type panicNewConn struct{ codecs.Codec }

func (panicNewConn) NewConn() codecs.Conn { panic("no conn for you") }

func TestPanicInNewSession(t *testing.T) {
	e, _ := newEngine(t, oneCluster(panicNewConn{thriftCodec(t)}, Route{}, Cluster{}))
	d := &fakeDown{}
	s := e.NewSession(d)
	if !d.isClosed() {
		t.Fatal("session without codec state left open")
	}
	s.OnData(call("m", 1)) // ignored, no panic
	s.OnClose()
	if st := e.Stats(); st.Panics != 1 || st.ActiveSessions != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestOddFramesFromClients(t *testing.T) {
	c := thriftCodec(t)
	cfg := Config{Codec: c,
		Routes:   []Route{{Match: []AttributeMatch{{Name: "method", Value: "void"}}, Cluster: "empty"}, {Cluster: "c"}},
		Clusters: []Cluster{{Name: "empty"}, {Name: "c", Endpoints: []Endpoint{{Address: "10.0.0.1:1"}}}}}
	e, d := newEngine(t, cfg)
	cl := newClient(t, e)
	// A reply from a client answers nothing: dropped.
	cl.send(reply("m", 1, "x"))
	// A oneway request that cannot be delivered gets no reply either.
	cl.send(thriftMsg(tOneway, "void", 2, stringField(1, "x")))
	if fs := cl.replies(); len(fs) != 0 || d.count() != 0 || cl.down.isClosed() {
		t.Fatalf("%d replies, %d dials, closed %v", len(fs), d.count(), cl.down.isClosed())
	}
	if st := e.Stats(); st.LocalReplies[codecs.ReasonNoHealthyUpstream] != 1 || st.Oneway != 1 {
		t.Fatalf("stats %+v", st)
	}
	// The session still works.
	cl.send(call("m", 3))
	if d.count() != 1 {
		t.Fatal("request after odd frames not forwarded")
	}
}

func TestDubboDecodeError(t *testing.T) {
	c := dubboCodec(t)
	e, _ := newEngine(t, oneCluster(c, Route{}, Cluster{}))
	cl := newClient(t, e)
	cl.send(dubboRequest(t, 1, "S", "", "m", nil)[:20]) // a partial frame waits
	if cl.down.isClosed() {
		t.Fatal("partial frame treated as an error")
	}
	cl2 := newClient(t, e)
	cl2.send([]byte("GET / HTTP/1.1\r\n\r\n"))
	if !cl2.down.isClosed() {
		t.Fatal("HTTP on a Dubbo listener accepted")
	}
	if st := e.Stats(); st.DecodeErrors != 1 {
		t.Fatalf("decode errors %d", st.DecodeErrors)
	}
}

func TestRefusing(t *testing.T) {
	c := thriftCodec(t)
	e := Refusing(c, "invalid configuration: no routes", nil)
	cl := newClient(t, e)
	cl.send(call("m", 3), call("m", 4))
	cl.wantError(3, codecs.ReasonInternal)
	if !cl.down.isClosed() {
		t.Fatal("connection left open")
	}
	if !bytes.Contains(cl.down.bytes(), []byte("invalid configuration")) {
		t.Fatal("reply does not say why")
	}
	// Without a codec the connection is closed at once.
	e = Refusing(nil, "unknown protocol", nil)
	d := &fakeDown{}
	s := e.NewSession(d)
	s.OnData([]byte("x"))
	if !d.isClosed() || len(d.bytes()) != 0 {
		t.Fatal("codec-less refusal wrote or stayed open")
	}
	s.OnClose()
	if st := e.Stats(); st.ActiveSessions != 0 {
		t.Fatalf("stats %+v", st)
	}
}
