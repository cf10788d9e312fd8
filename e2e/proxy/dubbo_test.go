package proxy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"dubbo.apache.org/dubbo-go/v3/client"
)

// dubboRouting routes on the interface, the service version, the method and an attachment
// to p2, and what is left of echoService to p1; any other interface matches no route.
const dubboRouting = `{"protocol": "dubbo",
  "route_config": {"routes": [
    {"match": {"attributes": [{"name": "interface", "exact": "org.apache.dubbo.sample.OtherService"}]}, "route": {"cluster": "p2"}},
    {"match": {"attributes": [{"name": "version", "exact": "2.0.0"}]}, "route": {"cluster": "p2"}},
    {"match": {"attributes": [{"name": "method", "exact": "Greet"}]}, "route": {"cluster": "p2"}},
    {"match": {"attributes": [{"name": "lane", "exact": "canary"}]}, "route": {"cluster": "p2"}},
    {"match": {"attributes": [{"name": "interface", "exact": "org.apache.dubbo.sample.EchoService"}]}, "route": {"cluster": "p1"}}]},
  "clusters": [{"name": "p1", "endpoints": [{"address": %q}]},
               {"name": "p2", "endpoints": [{"address": %q}]}]}`

func TestDubbo(t *testing.T) {
	ps := startDubboProviders(t, "p1", "p2", "slow", "doomed")
	p1, p2, slow, doomed := ps[0], ps[1], ps[2], ps[3]
	h := startHost(t, pluginSO,
		fmt.Sprintf(dubboRouting, p1.addr, p2.addr),
		fmt.Sprintf(`{"protocol": "dubbo",
		  "route_config": {"routes": [{"route": {"weighted_clusters": {"clusters": [
		    {"name": "p1", "weight": 80}, {"name": "p2", "weight": 20}]}}}]},
		  "clusters": [{"name": "p1", "endpoints": [{"address": %q}]},
		               {"name": "p2", "endpoints": [{"address": %q}]}]}`, p1.addr, p2.addr),
		fmt.Sprintf(`{"protocol": "dubbo",
		  "route_config": {"routes": [{"route": {"cluster": "slow", "timeout": "0.3s"}}]},
		  "clusters": [{"name": "slow", "endpoints": [{"address": %q}]}]}`, slow.addr),
		fmt.Sprintf(`{"protocol": "dubbo",
		  "route_config": {"routes": [
		    {"match": {"attributes": [{"name": "method", "exact": "Greet"}]}, "route": {"cluster": "live"}},
		    {"route": {"cluster": "doomed"}}]},
		  "clusters": [{"name": "doomed", "endpoints": [{"address": %q}]},
		               {"name": "live", "endpoints": [{"address": %q}]}]}`, doomed.addr, p1.addr))
	routed, weighted, timed, dying := h.Listeners[0], h.Listeners[1], h.Listeners[2], h.Listeners[3]

	t.Run("routing", func(t *testing.T) {
		plain := dubboConn(t, routed, echoService, "")
		v2 := dubboConn(t, routed, echoService, version2)
		other := dubboConn(t, routed, otherService, "")
		cases := []struct {
			name              string
			conn              *client.Connection
			method, arg, want string
			attachments       map[string]string
		}{
			{"no match: the echoService route", plain, "Echo", "a", "p1:a", nil},
			{"interface", other, "Echo", "b", "p2:b", nil},
			{"version", v2, "Echo", "c", "p2:c", nil},
			{"method", plain, "Greet", "d", "p2:greet:d", nil},
			{"attachment", plain, "Echo", "e", "p2:e", map[string]string{"lane": "canary"}},
			{"other attachment value", plain, "Echo", "f", "p1:f", map[string]string{"lane": "stable"}},
		}
		for _, c := range cases {
			var got string
			err := dubboCall(c.conn, c.attachments, c.method, c.arg, &got, callTimeout)
			if err != nil || got != c.want {
				t.Errorf("%s: %s(%q) = %q, %v; want %q", c.name, c.method, c.arg, got, err, c.want)
			}
		}
	})

	t.Run("no route", func(t *testing.T) {
		var got string
		err := dubboCall(dubboConn(t, routed, "org.apache.dubbo.sample.Nowhere", ""), nil, "Echo", "x", &got, callTimeout)
		if err == nil || !strings.Contains(err.Error(), "no route") {
			t.Fatalf("call matching no route = %q, %v; want an error that says no route", got, err)
		}
		t.Logf("dubbo-go reports: %v", err)
		// The consumer's connection to the proxy is still usable.
		if err := dubboCall(dubboConn(t, routed, echoService, ""), nil, "Echo", "y", &got, callTimeout); err != nil || got != "p1:y" {
			t.Errorf("Echo after no route = %q, %v", got, err)
		}
	})

	// The split is random per request: over 500 calls an 80/20 split gives p1 400 calls with
	// a standard deviation of about 9; the test accepts 5 deviations either way.
	t.Run("weighted split", func(t *testing.T) {
		const calls, want, tolerance = 500, 400, 45
		conn := dubboConn(t, weighted, echoService, "")
		counts := map[string]int{}
		for i := range calls {
			var got string
			if err := dubboCall(conn, nil, "Echo", fmt.Sprint(i), &got, callTimeout); err != nil {
				t.Fatal(err)
			}
			server, msg, _ := strings.Cut(got, ":")
			if msg != fmt.Sprint(i) {
				t.Fatalf("call %d answered %q", i, got)
			}
			counts[server]++
		}
		t.Logf("split over %d calls: %v", calls, counts)
		if counts["p1"]+counts["p2"] != calls || counts["p1"] < want-tolerance || counts["p1"] > want+tolerance {
			t.Errorf("split %v; want p1 %d±%d of %d, the rest p2", counts, want, tolerance, calls)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		conn := dubboConn(t, timed, echoService, "")
		var got string
		start := time.Now()
		err := dubboCall(conn, nil, "Echo", "sleep:1500ms", &got, callTimeout)
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "timeout") {
			t.Errorf("slow call = %q, %v; want an error that says timeout", got, err)
		}
		if took < 250*time.Millisecond || took > 1200*time.Millisecond {
			t.Errorf("answered after %v; want about the route's 300ms", took)
		}
		t.Logf("dubbo-go reports after %v: %v", took, err)
		// The late response is dropped, and the connection carries the next call.
		time.Sleep(1500*time.Millisecond - took + 200*time.Millisecond)
		if err := dubboCall(conn, nil, "Echo", "after", &got, callTimeout); err != nil || got != "slow:after" {
			t.Errorf("Echo after the timeout = %q, %v", got, err)
		}
	})

	t.Run("provider killed mid-flight", func(t *testing.T) {
		conn := dubboConn(t, dying, echoService, "")
		errc := make(chan error, 1)
		go func() {
			var got string
			err := dubboCall(conn, nil, "Echo", "hang", &got, callTimeout)
			if err == nil {
				t.Logf("the call to the killed provider answered %q", got)
			}
			errc <- err
		}()
		if !doomed.waitOutput(hangingMarker, callTimeout) {
			t.Fatal("the call did not reach the provider")
		}
		doomed.kill()
		select {
		case err := <-errc:
			if err == nil {
				t.Fatal("the call in flight to the killed provider succeeded")
			}
			t.Logf("call in flight when the provider died: %v", err)
		case <-time.After(3 * time.Second):
			t.Fatal("the call in flight to the killed provider got no answer within 3s")
		}
		var got string
		if err := dubboCall(conn, nil, "Greet", "live", &got, callTimeout); err != nil || got != "p1:greet:live" {
			t.Errorf("call to the live route after the kill = %q, %v", got, err)
		}
		start := time.Now()
		if err := dubboCall(conn, nil, "Echo", "dead", &got, callTimeout); err == nil {
			t.Errorf("call to the dead provider = %q", got)
		} else if took := time.Since(start); took > 3*time.Second {
			t.Errorf("call to the dead provider failed after %v; want at once", took)
		}
	})
	assertAlive(t, h)
}
