package engine

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// TestConcurrentTraffic runs many clients against several upstream connections whose
// callbacks come from their own goroutines, with lost responses (timeouts), an upstream that
// closes mid-flight and clients that leave early. Every request of a client that stays gets
// exactly one answer, and the cluster's counters return to zero. With a codec that cannot
// multiplex, each connection carries one request at a time (some get over-limit errors,
// which count as answers).
func TestConcurrentTraffic(t *testing.T) {
	t.Run("multiplex", func(t *testing.T) {
		concurrentTraffic(t, thriftCodec(t), Cluster{ConnectionsPerEndpoint: 3})
	})
	t.Run("pingpong", func(t *testing.T) {
		concurrentTraffic(t, pingPongThrift(t), Cluster{ConnectionsPerEndpoint: 3, MaxRequests: 48})
	})
	// Half the requests mirrored into the same cluster and connections: the copies'
	// answers, losses and failures never reach a client, and each copy ends exactly once.
	t.Run("mirror", func(t *testing.T) {
		concurrentTraffic(t, thriftCodec(t), Cluster{ConnectionsPerEndpoint: 3}, Mirror{Cluster: "c", Percent: 50})
	})
}

func concurrentTraffic(t *testing.T, c codecs.Codec, cluster Cluster, mirrors ...Mirror) {
	pingPong := !codecs.Multiplexes(c)
	cluster.Endpoints = []Endpoint{{Address: "10.0.0.1:1"}, {Address: "10.0.0.2:1"}}
	cfg := oneCluster(c, Route{Timeout: time.Second, Mirrors: mirrors}, cluster)
	d := &fakeDialer{}
	e, err := New(cfg, Options{Dialer: d})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()

	var stop atomic.Bool
	var servers sync.WaitGroup
	var closedOne atomic.Bool
	d.auto = func(dl dial) {
		servers.Add(1)
		defer servers.Done()
		time.Sleep(time.Duration(rand.IntN(3)) * time.Millisecond)
		if rand.IntN(10) == 0 {
			dl.h.OnFailure(FailureRemote)
			return
		}
		srv := &fakeServer{t: t, addr: dl.addr, h: dl.h, conn: c.NewConn()}
		dl.h.OnReady(srv)
		served, lost := 0, false
		for !stop.Load() && !srv.isClosed() {
			reqs := srv.requests()
			if len(reqs) == 0 {
				time.Sleep(200 * time.Microsecond)
				continue
			}
			if pingPong && (len(reqs) > 1 || lost) {
				t.Errorf("ping-pong connection got %d requests with %v unanswered", len(reqs), lost)
			}
			var out []byte
			for _, r := range reqs {
				if rand.IntN(50) == 0 {
					lost = true
					continue // lost: the client times out
				}
				out = append(out, replyTo(t, r, "ok")...)
			}
			// Deliver in two pieces to exercise partial frames.
			if len(out) > 0 {
				cut := rand.IntN(len(out))
				srv.h.OnData(out[:cut])
				srv.h.OnData(out[cut:])
			}
			served += len(reqs)
			if served > 200 && closedOne.CompareAndSwap(false, true) {
				srv.h.OnClose()
				return
			}
		}
	}

	const clients, perClient = 40, 60
	var wg sync.WaitGroup
	results := make([]map[uint64]int, clients)
	leavers := make([]bool, clients)
	cls := make([]*client, clients)
	for i := range clients {
		cls[i] = newClient(t, e)
		leavers[i] = i%8 == 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := cls[i]
			for j := 1; j <= perClient; j++ {
				cl.s.OnData(call("m", uint32(j)))
				if j%5 == 0 {
					time.Sleep(time.Millisecond)
				}
				if leavers[i] && j == perClient/2 {
					cl.s.OnClose()
					return
				}
			}
		}()
	}
	wg.Wait()
	// Every answer arrives within the route timeout plus a margin.
	deadline := time.Now().Add(5 * time.Second)
	for i, cl := range cls {
		if leavers[i] {
			continue
		}
		results[i] = map[uint64]int{}
		for {
			for _, f := range cl.replies() {
				if f.Kind() != codecs.KindResponse && f.Kind() != codecs.KindErrorResponse {
					t.Fatalf("client %d got a %v", i, f.Kind())
				}
				results[i][f.RequestID()]++
			}
			if len(results[i]) == perClient || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		for j := uint64(1); j <= perClient; j++ {
			if results[i][j] != 1 {
				t.Fatalf("client %d request %d answered %d times", i, j, results[i][j])
			}
		}
	}
	stop.Store(true)
	servers.Wait()
	time.Sleep(10 * time.Millisecond)
	cc := e.testCluster("c")
	if len(mirrors) > 0 {
		// Copies are answered by no client: those left unanswered time out.
		for deadline := time.Now().Add(3 * time.Second); cc.active.Load() != 0 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		st := e.Stats()
		if st.Mirrored == 0 || st.Mirrored != st.MirrorResponses+st.MirrorFailed {
			t.Fatalf("mirrored %d, answered %d, failed %d: want each copy ended once",
				st.Mirrored, st.MirrorResponses, st.MirrorFailed)
		}
	}
	if n := cc.active.Load(); n != 0 {
		t.Fatalf("%d requests still counted active", n)
	}
	if n := cc.queued.Load(); n != 0 {
		t.Fatalf("%d requests still counted queued", n)
	}
	st := e.Stats()
	t.Logf("stats: %+v", st)
	if st.Panics != 0 || st.Requests == 0 {
		t.Fatalf("stats %+v", st)
	}
}
