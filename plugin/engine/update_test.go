package engine

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/plugin/engine/lb"
)

const (
	addrA = "10.0.0.1:1"
	addrB = "10.0.0.2:1"
	addrC = "10.0.0.3:1"
)

func eps(addrs ...string) []Endpoint {
	out := make([]Endpoint, len(addrs))
	for i, a := range addrs {
		out[i] = Endpoint{Address: a}
	}
	return out
}

// dialsTo counts the dials to addr.
func (f *fakeDialer) dialsTo(addr string) []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for i, d := range f.dials {
		if d.addr == addr {
			out = append(out, i)
		}
	}
	return out
}

func mustUpdate(t *testing.T, e *Engine, routes []Route, clusters []Cluster) {
	t.Helper()
	if err := e.Update(routes, clusters); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// A route change applies to the next request; the request in flight finishes on the
// cluster it started with, and neither connection is dropped.
func TestUpdateSwapsRoutesMidTraffic(t *testing.T) {
	c := thriftCodec(t)
	clusters := []Cluster{{Name: "a", Endpoints: eps(addrA)}, {Name: "b", Endpoints: eps(addrB)}}
	e, d := newEngine(t, Config{Codec: c, Routes: []Route{{Name: "r", Cluster: "a"}}, Clusters: clusters})
	cl := newClient(t, e)
	cl.send(call("m", 1))
	srvA := d.ready(t, 0, c)
	reqA := srvA.oneRequest()

	mustUpdate(t, e, []Route{{Name: "r", Cluster: "b"}}, clusters)
	cl.send(call("m", 2))
	if got := d.dialsTo(addrB); len(got) != 1 {
		t.Fatalf("dials to b: %v, want 1 after the route moved", got)
	}
	srvB := d.ready(t, 1, c)
	reqB := srvB.oneRequest()
	srvB.h.OnData(replyTo(t, reqB, "from-b"))
	srvA.h.OnData(replyTo(t, reqA, "from-a"))
	got := map[uint64]string{}
	for _, f := range cl.replies() {
		if f.Kind() != codecs.KindResponse {
			t.Fatalf("reply %v", f.Kind())
		}
		got[f.RequestID()] = payload(t, f)
	}
	if got[1] != "from-a" || got[2] != "from-b" {
		t.Fatalf("replies %v, want 1 from a and 2 from b", got)
	}
	if srvA.isClosed() || srvB.isClosed() || cl.down.isClosed() {
		t.Fatal("a connection was closed by the update")
	}
	// Cluster a is still configured: its connection is reused when a route names it again.
	mustUpdate(t, e, []Route{{Name: "r", Cluster: "a"}}, clusters)
	cl.send(call("m", 3))
	if d.count() != 2 {
		t.Fatalf("%d dials, want the existing connection to a reused", d.count())
	}
	srvA.h.OnData(replyTo(t, srvA.oneRequest(), "again"))
	if f := cl.one(); f.RequestID() != 3 || payload(t, f) != "again" {
		t.Fatalf("reply %d %q", f.RequestID(), payload(t, f))
	}
}

// An endpoint removed with requests in flight and waiting: they complete on it, nothing new
// goes there, and its connection closes once they are done.
func TestUpdateRemovedEndpointDrains(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec func(testing.TB) codecs.Codec
	}{{"multiplex", thriftCodec}, {"pingpong", pingPongThrift}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := tc.codec(t)
				cfg := oneCluster(c, Route{}, Cluster{Endpoints: eps(addrA)})
				e, d := newEngine(t, cfg)
				cl := newClient(t, e)
				cl.send(call("m", 1))
				srvA := d.ready(t, 0, c)
				reqA := srvA.oneRequest()
				// A second request waits for a second connection (ping-pong) or is queued on
				// the first (multiplex).
				cl.send(call("m", 2))

				dialsA := len(d.dialsTo(addrA))
				mustUpdate(t, e, cfg.Routes, []Cluster{{Name: "c", Endpoints: eps(addrB)}})
				time.Sleep(time.Millisecond)
				synctest.Wait()
				if srvA.isClosed() {
					t.Fatal("a closed with requests in flight")
				}
				cl.send(call("m", 3))
				if got := d.dialsTo(addrB); len(got) != 1 {
					t.Fatalf("dials to b: %v, want 1", got)
				}
				srvB := d.ready(t, d.dialsTo(addrB)[0], c)
				if r := srvB.oneRequest(); r.RequestID() == 0 {
					t.Fatal("no id")
				} else {
					srvB.h.OnData(replyTo(t, r, "b"))
				}

				// Request 2, queued on the connection (multiplex) or waiting for one
				// (ping-pong: it takes the connection request 1 frees), is sent to a.
				srvA.h.OnData(replyTo(t, reqA, "a1"))
				second := srvA
				req2 := second.oneRequest()
				time.Sleep(time.Millisecond)
				synctest.Wait()
				if srvA.isClosed() {
					t.Fatal("a closed with a request still in flight")
				}
				second.h.OnData(replyTo(t, req2, "a2"))
				time.Sleep(time.Millisecond)
				synctest.Wait()
				if !srvA.isClosed() {
					t.Fatal("a still open after its requests completed")
				}
				got := map[uint64]string{}
				for _, f := range cl.replies() {
					if f.Kind() != codecs.KindResponse {
						t.Fatalf("reply %v id %d", f.Kind(), f.RequestID())
					}
					got[f.RequestID()] = payload(t, f)
				}
				if got[1] != "a1" || got[2] != "a2" || got[3] != "b" {
					t.Fatalf("replies %v", got)
				}
				if len(d.dialsTo(addrA)) != dialsA {
					t.Fatalf("dials to a: %v, want no new one after the update", d.dialsTo(addrA))
				}
				if cl.down.isClosed() {
					t.Fatal("client connection closed")
				}
			})
		})
	}
}

// A request that never gets its answer on a removed endpoint ends with the drain timeout.
func TestUpdateDrainTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		cfg := oneCluster(c, Route{}, Cluster{Endpoints: eps(addrA)})
		d := &fakeDialer{}
		e, err := New(cfg, Options{Dialer: d, DrainTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		cl := newClient(t, e)
		cl.send(call("m", 1))
		srvA := d.ready(t, 0, c)
		srvA.oneRequest()
		mustUpdate(t, e, cfg.Routes, []Cluster{{Name: "c", Endpoints: eps(addrB)}})
		time.Sleep(9 * time.Second)
		synctest.Wait()
		if srvA.isClosed() || len(cl.replies()) != 0 {
			t.Fatal("drain ended before its timeout")
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if !srvA.isClosed() {
			t.Fatal("a still open after the drain timeout")
		}
		cl.wantError(1, codecs.ReasonUnavailable)
		if n := e.testCluster("c").active.Load(); n != 0 {
			t.Fatalf("%d requests still active", n)
		}
		e.updateMu.Lock()
		n := len(e.draining)
		e.updateMu.Unlock()
		if n != 1 {
			t.Fatalf("%d draining endpoints tracked, want 1", n)
		}
		// The next update forgets it.
		mustUpdate(t, e, cfg.Routes, []Cluster{{Name: "c", Endpoints: eps(addrB)}})
		e.updateMu.Lock()
		n = len(e.draining)
		e.updateMu.Unlock()
		if n != 0 {
			t.Fatalf("%d drained endpoints still tracked", n)
		}
	})
}

// A removed cluster drains like a removed endpoint.
func TestUpdateRemovedClusterDrains(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		clusters := []Cluster{{Name: "a", Endpoints: eps(addrA)}, {Name: "b", Endpoints: eps(addrB)}}
		e, d := newEngine(t, Config{Codec: c, Routes: []Route{{Cluster: "a"}}, Clusters: clusters})
		cl := newClient(t, e)
		cl.send(call("m", 1))
		srvA := d.ready(t, 0, c)
		req := srvA.oneRequest()
		mustUpdate(t, e, []Route{{Cluster: "b"}}, clusters[1:])
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if srvA.isClosed() {
			t.Fatal("a closed with a request in flight")
		}
		srvA.h.OnData(replyTo(t, req, "a"))
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if f := cl.one(); f.Kind() != codecs.KindResponse || payload(t, f) != "a" {
			t.Fatalf("reply %v", f.Kind())
		}
		if !srvA.isClosed() {
			t.Fatal("connection of the removed cluster still open")
		}
	})
}

// An endpoint added receives traffic from the next request on; the others keep their
// connections.
func TestUpdateAddedEndpointGetsTraffic(t *testing.T) {
	c := thriftCodec(t)
	cfg := oneCluster(c, Route{}, Cluster{Endpoints: eps(addrA)})
	e, d := newEngine(t, cfg)
	cl := newClient(t, e)
	cl.send(call("m", 1))
	srvA := d.ready(t, 0, c)
	srvA.h.OnData(replyTo(t, srvA.oneRequest(), "a"))
	mustUpdate(t, e, cfg.Routes, []Cluster{{Name: "c", Endpoints: eps(addrA, addrB)}})
	for i := range 10 {
		cl.send(call("m", uint32(10+i)))
	}
	if n := len(d.dialsTo(addrA)); n != 1 {
		t.Fatalf("%d dials to a, want its connection kept", n)
	}
	if n := len(d.dialsTo(addrB)); n != 1 {
		t.Fatalf("%d dials to b, want 1", n)
	}
	srvB := d.ready(t, d.dialsTo(addrB)[0], c)
	na, nb := len(srvA.requests()), len(srvB.requests())
	if na != 5 || nb != 5 {
		t.Fatalf("a got %d, b got %d requests; want 5 each (round robin)", na, nb)
	}
}

// Weights and the LB policy change for new requests; pools are kept.
func TestUpdateWeightsAndSettings(t *testing.T) {
	c := thriftCodec(t)
	withWeights := func(wa, wb uint32) []Cluster {
		return []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: addrA, Weight: wa}, {Address: addrB, Weight: wb}}}}
	}
	cfg := oneCluster(c, Route{}, withWeights(1, 9)[0])
	e, d := newEngine(t, cfg)
	cl := newClient(t, e)
	for i := range 100 {
		cl.send(call("m", uint32(i+1)))
	}
	cc := e.testCluster("c")
	epA, epB := cc.cfg.Load().eps[0], cc.cfg.Load().eps[1]
	if a, b := epA.active.Load(), epB.active.Load(); a != 10 || b != 90 {
		t.Fatalf("active a=%d b=%d, want 10/90", a, b)
	}
	mustUpdate(t, e, cfg.Routes, withWeights(9, 1))
	if cc.cfg.Load().eps[0] != epA || cc.cfg.Load().eps[1] != epB {
		t.Fatal("endpoints replaced by a weight change")
	}
	for i := range 100 {
		cl.send(call("m", uint32(101+i)))
	}
	if a, b := epA.active.Load(), epB.active.Load(); a != 100 || b != 100 {
		t.Fatalf("active a=%d b=%d, want 100/100 after the weights swapped", a, b)
	}
	if d.count() != 2 {
		t.Fatalf("%d dials, want 2", d.count())
	}

	// A lower limit applies to the next request: 200 are in flight.
	lim := withWeights(1, 1)
	lim[0].MaxRequests = 200
	mustUpdate(t, e, cfg.Routes, lim)
	cl.replies()
	cl.send(call("m", 999))
	cl.wantError(999, codecs.ReasonOverLimit)

	// A hashing policy: requests with the same key go to the same endpoint.
	h := withWeights(1, 1)
	h[0].LB, h[0].HashAttributes, h[0].MaxRequests = lb.Maglev, []string{"method"}, 10000
	mustUpdate(t, e, cfg.Routes, h)
	before := [2]int64{epA.active.Load(), epB.active.Load()}
	for i := range 20 {
		cl.send(call("same", uint32(1000+i)))
	}
	da, db := epA.active.Load()-before[0], epB.active.Load()-before[1]
	if (da != 20 || db != 0) && (da != 0 || db != 20) {
		t.Fatalf("hashed requests split %d/%d, want all on one endpoint", da, db)
	}
}

// Invalid input is rejected with the culprit named, and the engine keeps its configuration.
func TestUpdateInvalidKeepsOld(t *testing.T) {
	c := thriftCodec(t)
	cfg := oneCluster(c, Route{Name: "r"}, Cluster{Endpoints: eps(addrA)})
	e, d := newEngine(t, cfg)
	for _, tc := range []struct {
		name     string
		routes   []Route
		clusters []Cluster
		want     string
	}{
		{"unknown cluster", []Route{{Name: "r2", Cluster: "nope"}}, cfg.Clusters, `route r2: unknown cluster "nope"`},
		{"bad endpoint", cfg.Routes, []Cluster{{Name: "c", Endpoints: eps("host:1")}}, `cluster "c": endpoint "host:1"`},
		{"duplicate cluster", cfg.Routes, append(cfg.Clusters, cfg.Clusters[0]), `cluster "c" defined twice`},
		{"hash without keys", cfg.Routes, []Cluster{{Name: "c", LB: lb.RingHash, Endpoints: eps(addrB)}}, `cluster "c": ring_hash needs hash attributes`},
		{"bad regex", []Route{{Name: "rx", Cluster: "c", Match: []AttributeMatch{{Name: "m", Kind: MatchRegex, Value: "("}}}}, cfg.Clusters, "route rx: match m"},
	} {
		err := e.Update(tc.routes, tc.clusters)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
	cl := newClient(t, e)
	cl.send(call("m", 1))
	if d.count() != 1 || d.get(t, 0).addr != addrA {
		t.Fatalf("dials %+v, want one to a: the old configuration", d.dials)
	}
	if e.table.Load().routes[0].name != "r" {
		t.Fatal("route table changed")
	}
}

// An engine made before its routes exist (RDS) answers no_route until the first Update.
func TestUpdateBeforeFirstRoutes(t *testing.T) {
	c := thriftCodec(t)
	e, d := newEngine(t, Config{Codec: c})
	cl := newClient(t, e)
	cl.send(call("m", 1))
	cl.wantError(1, codecs.ReasonNoRoute)
	mustUpdate(t, e, []Route{{Cluster: "c"}}, []Cluster{{Name: "c", Endpoints: eps(addrA)}})
	cl.send(call("m", 2))
	srv := d.ready(t, 0, c)
	srv.h.OnData(replyTo(t, srv.oneRequest(), "ok"))
	if f := cl.one(); f.Kind() != codecs.KindResponse || f.RequestID() != 2 {
		t.Fatalf("reply %v %d", f.Kind(), f.RequestID())
	}
	if err := Refusing(c, "bad", nil).Update(nil, nil); err == nil {
		t.Fatal("a refusing engine accepted an update")
	}
	e.Close()
	if err := e.Update(nil, nil); err == nil {
		t.Fatal("a closed engine accepted an update")
	}
}

// Updates that move endpoints in and out while clients run: every request is answered
// with a response (none fails), and every removed endpoint's connections end up closed.
func TestUpdateConcurrentWithTraffic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		codec func(testing.TB) codecs.Codec
	}{{"multiplex", thriftCodec}, {"pingpong", pingPongThrift}} {
		t.Run(tc.name, func(t *testing.T) {
			updateStress(t, tc.codec(t))
		})
	}
}

func updateStress(t *testing.T, c codecs.Codec) {
	sets := [][]string{{addrA, addrB}, {addrB, addrC}, {addrC}, {addrA, addrC}, {addrA, addrB, addrC}}
	cluster := func(i int) []Cluster {
		return []Cluster{
			{Name: "c", Endpoints: eps(sets[i%len(sets)]...), LB: lb.Policy(i % 3)},
			{Name: "d", Endpoints: eps(sets[(i+1)%len(sets)]...)},
		}
	}
	routes := func(i int) []Route {
		if i%2 == 0 {
			return []Route{{Cluster: "c"}}
		}
		return []Route{{WeightedClusters: []WeightedCluster{{Cluster: "c", Weight: 1}, {Cluster: "d", Weight: 1}}}}
	}
	d := &fakeDialer{}
	e, err := New(Config{Codec: c, Routes: routes(0), Clusters: cluster(0)}, Options{Dialer: d})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	var stop atomic.Bool
	var servers sync.WaitGroup
	var mu sync.Mutex
	var all []*fakeServer
	d.auto = func(dl dial) {
		servers.Add(1)
		defer servers.Done()
		srv := &fakeServer{t: t, addr: dl.addr, h: dl.h, conn: c.NewConn()}
		mu.Lock()
		all = append(all, srv)
		mu.Unlock()
		dl.h.OnReady(srv)
		for !stop.Load() {
			if srv.isClosed() {
				dl.h.OnClose() // as the host reports the close it was asked for
				return
			}
			var out []byte
			for _, r := range srv.requests() {
				out = append(out, replyTo(t, r, dl.addr)...)
			}
			if len(out) > 0 {
				srv.h.OnData(out)
			} else {
				time.Sleep(100 * time.Microsecond)
			}
		}
	}

	const clients, perClient = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := newClient(t, e)
			for j := 1; j <= perClient; j++ {
				cl.s.OnData(call("m", uint32(j)))
				deadline := time.Now().Add(5 * time.Second)
				var got []codecs.Frame
				for len(got) == 0 && time.Now().Before(deadline) {
					b := cl.down.bytes()[cl.seen:]
					var rest []byte
					got, rest = decodeAllNoT(cl.conn, b)
					cl.seen += len(b) - len(rest)
					if len(got) == 0 {
						time.Sleep(50 * time.Microsecond)
					}
				}
				if len(got) != 1 || got[0].Kind() != codecs.KindResponse || got[0].RequestID() != uint64(j) {
					errs <- fmt.Errorf("client %d request %d: %d replies, first %v", i, j, len(got), kinds(got))
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	var stopUpdates atomic.Bool
	var updates int
	go func() {
		defer close(done)
		for i := 1; ; i++ {
			if stopUpdates.Load() || len(errs) > 0 {
				return
			}
			if err := e.Update(routes(i), cluster(i)); err != nil {
				t.Errorf("update %d: %v", i, err)
				return
			}
			updates = i
			time.Sleep(500 * time.Microsecond)
		}
	}()
	wg.Wait()
	stopUpdates.Store(true)
	<-done
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Settle on one endpoint set: everything else drains and closes.
	mustUpdate(t, e, []Route{{Cluster: "c"}}, []Cluster{{Name: "c", Endpoints: eps(addrA)}})
	deadline := time.Now().Add(5 * time.Second)
	for {
		open := 0
		mu.Lock()
		for _, s := range all {
			if s.addr != addrA && !s.isClosed() {
				open++
			}
		}
		mu.Unlock()
		if open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections to removed endpoints still open", open)
		}
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	servers.Wait()
	st := e.Stats()
	t.Logf("%d updates, stats %+v", updates, st)
	if updates < 10 || st.Responses != clients*perClient || len(st.LocalReplies) != 0 || st.Panics != 0 {
		t.Fatalf("%d updates, stats %+v", updates, st)
	}
	if n := e.testCluster("c").active.Load(); n != 0 {
		t.Fatalf("%d requests still active", n)
	}
}

func kinds(fs []codecs.Frame) []codecs.Kind {
	var out []codecs.Kind
	for _, f := range fs {
		out = append(out, f.Kind())
	}
	return out
}

// decodeAllNoT is decodeAll for goroutines other than the test's.
func decodeAllNoT(c codecs.Conn, b []byte) ([]codecs.Frame, []byte) {
	var fs []codecs.Frame
	for len(b) > 0 {
		f, n, err := c.Decode(b)
		if err != nil || f == nil {
			break
		}
		fs = append(fs, f)
		b = b[n:]
	}
	return fs, b
}

func waitingEngine(t *testing.T, c codecs.Codec, opts Options) (*Engine, *fakeDialer) {
	t.Helper()
	d := &fakeDialer{}
	opts.Dialer, opts.WaitForUpdate = d, true
	e, err := New(Config{Codec: c}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e, d
}

// With WaitForUpdate, requests before the first Update wait for it and are then routed.
func TestWaitForFirstUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		e, d := waitingEngine(t, c, Options{})
		cl, leaver := newClient(t, e), newClient(t, e)
		cl.send(call("m", 1), call("m", 2))
		leaver.send(call("m", 9))
		leaver.s.OnClose()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if n := len(cl.replies()); n != 0 || d.count() != 0 {
			t.Fatalf("%d replies and %d dials before any route", n, d.count())
		}
		mustUpdate(t, e, []Route{{Cluster: "c", Timeout: time.Second}}, []Cluster{{Name: "c", Endpoints: eps(addrA)}})
		if d.count() != 1 {
			t.Fatalf("%d dials after the first update, want 1", d.count())
		}
		srv := d.ready(t, 0, c)
		reqs := srv.requests()
		if len(reqs) != 2 {
			t.Fatalf("upstream got %d requests, want the 2 of the client that stayed", len(reqs))
		}
		for _, r := range reqs {
			srv.h.OnData(replyTo(t, r, "ok"))
		}
		got := cl.replies()
		if len(got) != 2 || got[0].Kind() != codecs.KindResponse || got[1].Kind() != codecs.KindResponse {
			t.Fatalf("client got %v", kinds(got))
		}
		if st := e.Stats(); st.Cancelled != 1 || st.Requests != 3 {
			t.Fatalf("stats %+v, want 3 requests, 1 cancelled", st)
		}
	})
}

// The route timeout of a held request runs from its release, not from its arrival.
func TestWaitForFirstUpdateRouteTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		e, d := waitingEngine(t, c, Options{})
		cl := newClient(t, e)
		cl.send(call("m", 1))
		time.Sleep(10 * time.Second)
		mustUpdate(t, e, []Route{{Cluster: "c", Timeout: time.Second}}, []Cluster{{Name: "c", Endpoints: eps(addrA)}})
		d.ready(t, 0, c)
		time.Sleep(500 * time.Millisecond)
		synctest.Wait()
		if n := len(cl.replies()); n != 0 {
			t.Fatalf("%d replies half-way through the route timeout", n)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		cl.wantError(1, codecs.ReasonTimeout)
	})
}

// Past the initial fetch timeout, held and new requests get no_route until an Update.
func TestWaitForFirstUpdateTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		e, d := waitingEngine(t, c, Options{InitialFetchTimeout: 3 * time.Second})
		cl := newClient(t, e)
		cl.send(call("m", 1))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(cl.replies()); n != 0 {
			t.Fatalf("%d replies before the timeout", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		cl.wantError(1, codecs.ReasonNoRoute)
		cl.send(call("m", 2))
		cl.wantError(2, codecs.ReasonNoRoute)
		mustUpdate(t, e, []Route{{Cluster: "c"}}, []Cluster{{Name: "c", Endpoints: eps(addrA)}})
		cl.send(call("m", 3))
		if d.count() != 1 {
			t.Fatalf("%d dials after the update, want 1", d.count())
		}
	})
}

func TestWaitForFirstUpdateDefaultTimeoutAndLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		e, _ := waitingEngine(t, c, Options{})
		cl := newClient(t, e)
		var batch [][]byte
		for i := range MaxHeldRequests + 1 {
			batch = append(batch, call("m", uint32(i+1)))
		}
		cl.send(batch...)
		cl.wantError(MaxHeldRequests+1, codecs.ReasonOverLimit)
		time.Sleep(DefaultInitialFetchTimeout - time.Second)
		synctest.Wait()
		if n := len(cl.replies()); n != 0 {
			t.Fatalf("%d replies before the 15s default", n)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if n := len(cl.replies()); n != MaxHeldRequests {
			t.Fatalf("%d no_route replies, want %d", n, MaxHeldRequests)
		}
	})
}

func TestWaitForFirstUpdateClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		e, _ := waitingEngine(t, c, Options{})
		cl := newClient(t, e)
		cl.send(call("m", 1))
		e.Close()
		cl.wantError(1, codecs.ReasonNoRoute)
	})
	d := &fakeDialer{}
	_, err := New(oneCluster(thriftCodec(t), Route{}, Cluster{}), Options{Dialer: d, WaitForUpdate: true})
	if err == nil {
		t.Fatal("New accepted routes with WaitForUpdate")
	}
	if _, err := New(Config{Codec: thriftCodec(t)}, Options{Dialer: d, WaitForUpdate: true, InitialFetchTimeout: -1}); err == nil {
		t.Fatal("New accepted a negative initial fetch timeout")
	}
}

// An endpoint removed and added back while it drains gets a fresh endpoint with its own
// pool; the old connection still finishes its request, then closes.
func TestUpdateReAddedWhileDraining(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := thriftCodec(t)
		cfg := oneCluster(c, Route{}, Cluster{Endpoints: eps(addrA)})
		e, d := newEngine(t, cfg)
		cl := newClient(t, e)
		cl.send(call("m", 1))
		old := d.ready(t, 0, c)
		req := old.oneRequest()
		mustUpdate(t, e, cfg.Routes, []Cluster{{Name: "c", Endpoints: eps(addrB)}})
		mustUpdate(t, e, cfg.Routes, cfg.Clusters)
		cl.send(call("m", 2))
		if got := d.dialsTo(addrA); len(got) != 2 {
			t.Fatalf("dials to a: %v, want a second one for the re-added endpoint", got)
		}
		fresh := d.ready(t, 1, c)
		fresh.h.OnData(replyTo(t, fresh.oneRequest(), "new"))
		old.h.OnData(replyTo(t, req, "old"))
		time.Sleep(time.Millisecond)
		synctest.Wait()
		got := map[uint64]string{}
		for _, f := range cl.replies() {
			got[f.RequestID()] = payload(t, f)
		}
		if got[1] != "old" || got[2] != "new" {
			t.Fatalf("replies %v", got)
		}
		if !old.isClosed() || fresh.isClosed() {
			t.Fatalf("old closed %v, fresh closed %v; want the drained one closed only", old.isClosed(), fresh.isClosed())
		}
	})
}
