package proxy_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/meltemi-mesh/meltemi/e2e/interop/thrift/gen-go/echo"
)

// thriftRouting routes on the THeader header "version" first, then on the method; lastFired
// and fire match no route.
const thriftRouting = `{"protocol": "thrift",
  "route_config": {"routes": [
    {"match": {"attributes": [{"name": "version", "exact": "v2"}]}, "route": {"cluster": "v2"}},
    {"match": {"attributes": [{"name": "method", "exact": "fail"}]}, "route": {"cluster": "v2"}},
    {"match": {"attributes": [{"name": "method", "regex": "echo|header"}]}, "route": {"cluster": "v1"}}]},
  "clusters": [{"name": "v1", "endpoints": [{"address": %q}]},
               {"name": "v2", "endpoints": [{"address": %q}]}]}`

func TestThriftRoutingGoClient(t *testing.T) {
	v1, v2 := startThriftServer(t, "v1"), startThriftServer(t, "v2")
	h := startHost(t, pluginSO, fmt.Sprintf(thriftRouting, v1.addr, v2.addr))
	for _, m := range wireModes {
		t.Run(m.String(), func(t *testing.T) {
			c := newGoClient(t, h.Listeners[0], m)
			ctx, cancel := callCtx()
			defer cancel()
			if got, err := c.Echo(ctx, "hi"); err != nil || got != "v1:hi" {
				t.Errorf("echo = %q, %v; want v1:hi (route on method)", got, err)
			}
			var ee *echo.EchoError
			if _, err := c.Fail(ctx, "x"); !errors.As(err, &ee) || ee.Message != "v2:x" {
				t.Errorf("fail: %v; want EchoError v2:x (route on method)", err)
			}
			if _, err := c.LastFired(ctx); appException(err) != thrift.UNKNOWN_METHOD {
				t.Errorf("lastFired: %v; want TApplicationException UNKNOWN_METHOD (no route)", err)
			}
			if got, err := c.Echo(ctx, "again"); err != nil || got != "v1:again" {
				t.Errorf("echo after no-route = %q, %v", got, err)
			}
			if m.transport != "header" {
				return
			}
			hctx, hcancel := callCtx("version", "v2")
			defer hcancel()
			if got, err := c.Echo(hctx, "hi"); err != nil || got != "v2:hi" {
				t.Errorf("echo with version: v2 = %q, %v; want v2:hi (route on header)", got, err)
			}
			if got, err := c.Header(hctx, "version"); err != nil || got != "v2:v2" {
				t.Errorf("header(version) with version: v2 = %q, %v; want v2:v2", got, err)
			}
			hctx1, hcancel1 := callCtx("version", "v1")
			defer hcancel1()
			if got, err := c.Header(hctx1, "version"); err != nil || got != "v1:v1" {
				t.Errorf("header(version) with version: v1 = %q, %v; want v1:v1", got, err)
			}
		})
	}
}

func TestThriftRoutingPythonClient(t *testing.T) {
	v1, v2 := startThriftServer(t, "v1"), startThriftServer(t, "v2")
	h := startHost(t, pluginSO, fmt.Sprintf(thriftRouting, v1.addr, v2.addr))
	for _, m := range wireModes {
		t.Run(m.String(), func(t *testing.T) {
			calls := []pyCall{
				{Method: "echo", Args: []any{"hi"}, Seqid: 1},
				{Method: "fail", Args: []any{"x"}, Seqid: 1},
				{Method: "lastFired", Seqid: 1},
				{Method: "echo", Args: []any{"again"}, Seqid: 1},
			}
			if m.transport == "header" {
				calls = append(calls, pyCall{Method: "header", Args: []any{"version"}, Seqid: 1,
					Headers: map[string]string{"version": "v2"}})
			}
			res := runPyClient(t, h.Listeners[0], m, calls)
			if len(res) != len(calls) {
				t.Fatalf("%d results for %d calls: %v", len(res), len(calls), res)
			}
			value := func(i int, want string) {
				if r := res[i]; r.Value == nil || *r.Value != want {
					t.Errorf("%s: %v; want value %q", calls[i].Method, r, want)
				}
			}
			value(0, "v1:hi")
			if r := res[1]; r.Error == nil || r.Error.Kind != "declared" || r.Error.Message != "v2:x" {
				t.Errorf("fail: %v; want EchoError v2:x", r)
			}
			if r := res[2]; r.Error == nil || r.Error.Kind != "application" || r.Error.Type != thrift.UNKNOWN_METHOD {
				t.Errorf("lastFired: %v; want TApplicationException UNKNOWN_METHOD", r)
			}
			value(3, "v1:again")
			if m.transport == "header" {
				value(4, "v2:v2")
			}
		})
	}
}

// The split is random per request: over 500 calls an 80/20 split gives v1 400 calls with a
// standard deviation of about 9; the test accepts 5 deviations either way.
func TestThriftWeightedSplit(t *testing.T) {
	v1, v2 := startThriftServer(t, "v1"), startThriftServer(t, "v2")
	h := startHost(t, pluginSO, fmt.Sprintf(`{"protocol": "thrift",
	  "route_config": {"routes": [{"route": {"weighted_clusters": {"clusters": [
	    {"name": "v1", "weight": 80}, {"name": "v2", "weight": 20}]}}}]},
	  "clusters": [{"name": "v1", "endpoints": [{"address": %q}]},
	               {"name": "v2", "endpoints": [{"address": %q}]}]}`, v1.addr, v2.addr))
	const calls, want, tolerance = 500, 400, 45
	counts := map[string]int{}
	c := newGoClient(t, h.Listeners[0], wireMode{"framed", "binary"})
	for i := range calls {
		ctx, cancel := callCtx()
		got, err := c.Echo(ctx, fmt.Sprint(i))
		cancel()
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		server, msg, _ := strings.Cut(got, ":")
		if msg != fmt.Sprint(i) {
			t.Fatalf("call %d answered %q", i, got)
		}
		counts[server]++
	}
	t.Logf("split over %d calls: %v", calls, counts)
	if counts["v1"]+counts["v2"] != calls || counts["v1"] < want-tolerance || counts["v1"] > want+tolerance {
		t.Errorf("split %v; want v1 %d±%d of %d, the rest v2", counts, want, tolerance, calls)
	}
}

func TestThriftTimeout(t *testing.T) {
	slow := startThriftServer(t, "slow")
	h := startHost(t, pluginSO, fmt.Sprintf(`{"protocol": "thrift",
	  "route_config": {"routes": [{"route": {"cluster": "slow", "timeout": "0.25s"}}]},
	  "clusters": [{"name": "slow", "endpoints": [{"address": %q}]}]}`, slow.addr))
	for _, m := range []wireMode{{"framed", "binary"}, {"header", "compact"}} {
		t.Run(m.String(), func(t *testing.T) {
			t.Parallel() // each mode has its own upstream connection
			c := newGoClient(t, h.Listeners[0], m)
			ctx, cancel := callCtx()
			defer cancel()
			start := time.Now()
			_, err := c.Echo(ctx, "sleep:1s")
			took := time.Since(start)
			if appException(err) != thrift.INTERNAL_ERROR || !strings.Contains(err.Error(), "timeout") {
				t.Errorf("slow call: %v; want TApplicationException INTERNAL_ERROR with timeout", err)
			}
			if took < 200*time.Millisecond || took > 800*time.Millisecond {
				t.Errorf("timeout reply after %v; want about the route's 250ms", took)
			}
			// The late reply reaches the proxy meanwhile and must be dropped, not sent to the
			// next call.
			time.Sleep(time.Second - took + 200*time.Millisecond)
			if got, err := c.Echo(ctx, "after"); err != nil || got != "slow:after" {
				t.Errorf("echo after the timeout = %q, %v", got, err)
			}
		})
	}
}

func TestThriftServerKilledMidFlight(t *testing.T) {
	doomed, live := startThriftServer(t, "doomed"), startThriftServer(t, "live")
	h := startHost(t, pluginSO, fmt.Sprintf(`{"protocol": "thrift",
	  "route_config": {"routes": [
	    {"match": {"attributes": [{"name": "method", "exact": "fail"}]}, "route": {"cluster": "live"}},
	    {"route": {"cluster": "doomed"}}]},
	  "clusters": [{"name": "doomed", "endpoints": [{"address": %q}]},
	               {"name": "live", "endpoints": [{"address": %q}]}]}`, doomed.addr, live.addr))
	c := newGoClient(t, h.Listeners[0], wireMode{"framed", "binary"})
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := callCtx()
		defer cancel()
		_, err := c.Echo(ctx, "hang")
		errc <- err
	}()
	select {
	case <-doomed.entered:
	case <-time.After(callTimeout):
		t.Fatal("the call did not reach the server")
	}
	doomed.kill()
	var err error
	select {
	case err = <-errc:
	case <-time.After(3 * time.Second):
		t.Fatal("the call in flight to the killed server got no answer within 3s")
	}
	if err == nil {
		t.Fatal("the call in flight to the killed server succeeded")
	}
	t.Logf("call in flight when the server died: %v", err)
	// An error reply leaves the connection usable; a closed connection needs a new one.
	if appException(err) < 0 {
		c = newGoClient(t, h.Listeners[0], wireMode{"framed", "binary"})
	}
	ctx, cancel := callCtx()
	defer cancel()
	var ee *echo.EchoError
	if _, err := c.Fail(ctx, "x"); !errors.As(err, &ee) || ee.Message != "live:x" {
		t.Errorf("call to the live route: %v; want EchoError live:x", err)
	}
	// The dead route answers at once with an error too.
	if _, err := newGoClient(t, h.Listeners[0], wireMode{"framed", "binary"}).Echo(ctx, "x"); err == nil {
		t.Error("echo to the dead server succeeded")
	}
	assertAlive(t, h)
}

// Many clients share one upstream connection: every Go client numbers its calls from seqid
// 1, so the same seqids arrive from every downstream connection at once, and each reply must
// reach the client that asked (its payload carries a per-client token).
func TestThriftSharedUpstreamCollidingSeqids(t *testing.T) {
	backend := startThriftServer(t, "b")
	h := startHost(t, pluginSO, fmt.Sprintf(`{"protocol": "thrift",
	  "route_config": {"routes": [{"route": {"cluster": "b"}}]},
	  "clusters": [{"name": "b", "connections_per_endpoint": 1, "endpoints": [{"address": %q}]}]}`, backend.addr))
	const clients, calls = 60, 5
	cs := make([]*goClient, clients)
	for i := range cs {
		cs[i] = newGoClient(t, h.Listeners[0], wireMode{"framed", "binary"})
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := make(chan struct{})
	for i, c := range cs {
		wg.Go(func() {
			<-start
			for j := range calls {
				ctx, cancel := callCtx()
				msg := fmt.Sprintf("client-%d-call-%d", i, j)
				got, err := c.Echo(ctx, msg)
				cancel()
				if err != nil || got != "b:"+msg {
					errs <- fmt.Errorf("client %d: echo(%q) = %q, %v", i, msg, got, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := backend.accepted(); n != 1 {
		t.Errorf("the backend accepted %d connections; want 1 shared by %d clients", n, clients)
	}
}
