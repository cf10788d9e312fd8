package xdsclient

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/plugin/internal/xdsclient/xdstest"
)

func startServer(t *testing.T, addr string) *xdstest.Server { return xdstest.Start(t, addr) }

// routeTo returns a route configuration whose routes go to clusters, one route each.
func routeTo(name string, clusters ...string) *apiv1alpha1.RouteConfiguration {
	rc := &apiv1alpha1.RouteConfiguration{Name: name}
	for _, c := range clusters {
		rc.Routes = append(rc.Routes, &apiv1alpha1.Route{Name: "to-" + c,
			Route: &apiv1alpha1.RouteAction{ClusterSpecifier: &apiv1alpha1.RouteAction_Cluster{Cluster: c}}})
	}
	return rc
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: name},
	}
}

func cla(name string, ports ...uint32) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, p := range ports {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1",
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p}}}}}}})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

func ports(c *endpointv3.ClusterLoadAssignment) []uint32 {
	var out []uint32
	for _, l := range c.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue())
		}
	}
	return out
}

// recorder is a watcher that records snapshots and rejects those validate refuses.
type recorder struct {
	ch       chan Snapshot
	validate func(Snapshot) error
}

func newRecorder() *recorder { return &recorder{ch: make(chan Snapshot, 64)} }

func (r *recorder) f(s Snapshot) error {
	if r.validate != nil {
		if err := r.validate(s); err != nil {
			return err
		}
	}
	r.ch <- s
	return nil
}

func (r *recorder) next(t *testing.T) Snapshot {
	t.Helper()
	select {
	case s := <-r.ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no snapshot delivered")
		return Snapshot{}
	}
}

// none checks that nothing is delivered for d.
func (r *recorder) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case s := <-r.ch:
		t.Fatalf("unexpected snapshot: routes %v clusters %v", s.Routes, slices.Sorted(mapKeys(s.Clusters)))
	case <-time.After(d):
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func testOptions(t *testing.T) Options {
	return Options{
		Node:           &corev3.Node{Id: "test~" + t.Name()},
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
		MissingTimeout: 500 * time.Millisecond,
		BackoffMin:     20 * time.Millisecond,
		BackoffMax:     200 * time.Millisecond,
	}
}

func newClient(t *testing.T, addr string) *Client {
	t.Helper()
	c, err := New(addr, testOptions(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// serve puts route r -> clusters a and b with one endpoint each on s.
func serveAB(t *testing.T, s *xdstest.Server) {
	xdstest.Set(t, s.Clusters, "a", edsCluster("a"))
	xdstest.Set(t, s.Clusters, "b", edsCluster("b"))
	xdstest.Set(t, s.Endpoints, "a", cla("a", 1001))
	xdstest.Set(t, s.Endpoints, "b", cla("b", 2001))
	xdstest.Set(t, s.Routes, "r", routeTo("r", "a", "b"))
}

func TestInitialFetchAndUpdates(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.Addr)
	rec := newRecorder()
	defer c.WatchRoutes("r", rec.f)()

	snap := rec.next(t)
	if snap.Routes.GetName() != "r" || len(snap.Routes.GetRoutes()) != 2 {
		t.Fatalf("routes: %v", snap.Routes)
	}
	if got := slices.Sorted(mapKeys(snap.Clusters)); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("clusters %v", got)
	}
	if !slices.Equal(ports(snap.Endpoints["a"]), []uint32{1001}) || !slices.Equal(ports(snap.Endpoints["b"]), []uint32{2001}) {
		t.Fatalf("endpoints %v", snap.Endpoints)
	}
	if len(snap.MissingClusters)+len(snap.MissingEndpoints) != 0 {
		t.Fatalf("missing %v %v", snap.MissingClusters, snap.MissingEndpoints)
	}
	// Every response was ACKed: the last request of each type has the server's version.
	waitFor(t, "ACKs", func() bool {
		for _, u := range typeURLs {
			rs := s.Requests(u)
			if len(rs) == 0 || rs[len(rs)-1].GetVersionInfo() == "" || rs[len(rs)-1].GetErrorDetail() != nil {
				return false
			}
		}
		return true
	})
	if n := s.Requests(apiv1alpha1.RouteConfigurationTypeURL)[0].GetNode().GetId(); n != "test~"+t.Name() {
		t.Fatalf("node id %q", n)
	}

	// Route change: a new cluster c, whose cluster and endpoints arrive before delivery.
	xdstest.Set(t, s.Clusters, "c", edsCluster("c"))
	xdstest.Set(t, s.Endpoints, "c", cla("c", 3001))
	xdstest.Set(t, s.Routes, "r", routeTo("r", "a", "c"))
	snap = rec.next(t)
	if got := slices.Sorted(mapKeys(snap.Clusters)); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("after route change: clusters %v", got)
	}
	if !slices.Equal(ports(snap.Endpoints["c"]), []uint32{3001}) {
		t.Fatalf("after route change: endpoints of c %v", snap.Endpoints["c"])
	}
	// b is no longer referenced: unsubscribed.
	waitFor(t, "b unsubscribed", func() bool {
		rs := s.Requests(apiv1alpha1.ClusterTypeURL)
		return slices.Equal(rs[len(rs)-1].GetResourceNames(), []string{"a", "c"})
	})

	// Endpoint added, then removed.
	xdstest.Set(t, s.Endpoints, "a", cla("a", 1001, 1002))
	if snap = rec.next(t); !slices.Equal(ports(snap.Endpoints["a"]), []uint32{1001, 1002}) {
		t.Fatalf("endpoint added: %v", ports(snap.Endpoints["a"]))
	}
	xdstest.Set(t, s.Endpoints, "a", cla("a", 1002))
	if snap = rec.next(t); !slices.Equal(ports(snap.Endpoints["a"]), []uint32{1002}) {
		t.Fatalf("endpoint removed: %v", ports(snap.Endpoints["a"]))
	}
	if snap.Routes.GetRoutes()[1].GetRoute().GetCluster() != "c" {
		t.Fatalf("route of the endpoint update: %v", snap.Routes)
	}

	// A cluster deleted on the server: CDS is full state, the snapshot names it missing.
	if err := s.Clusters.DeleteResource("c"); err != nil {
		t.Fatal(err)
	}
	snap = rec.next(t)
	if _, ok := snap.Clusters["c"]; ok || !slices.Equal(snap.MissingClusters, []string{"c"}) {
		t.Fatalf("deleted cluster: clusters %v missing %v", slices.Sorted(mapKeys(snap.Clusters)), snap.MissingClusters)
	}
}

func TestMissingResources(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	xdstest.Set(t, s.Clusters, "a", edsCluster("a"))
	xdstest.Set(t, s.Clusters, "nocla", edsCluster("nocla"))
	xdstest.Set(t, s.Endpoints, "a", cla("a", 1001))
	xdstest.Set(t, s.Routes, "r", routeTo("r", "a", "ghost", "nocla"))
	c := newClient(t, s.Addr)
	rec := newRecorder()
	defer c.WatchRoutes("r", rec.f)()
	snap := rec.next(t)
	if !slices.Equal(snap.MissingClusters, []string{"ghost"}) || !slices.Equal(snap.MissingEndpoints, []string{"nocla"}) {
		t.Fatalf("missing clusters %v endpoints %v", snap.MissingClusters, snap.MissingEndpoints)
	}
	if snap.Clusters["a"] == nil || snap.Endpoints["a"] == nil {
		t.Fatalf("present resources absent: %v %v", snap.Clusters, snap.Endpoints)
	}
	// The missing cluster appears: re-delivered with it.
	xdstest.Set(t, s.Endpoints, "ghost", cla("ghost", 4001))
	xdstest.Set(t, s.Clusters, "ghost", edsCluster("ghost"))
	for {
		snap = rec.next(t)
		if snap.Clusters["ghost"] != nil && snap.Endpoints["ghost"] != nil {
			break
		}
	}
	if len(snap.MissingClusters) != 0 {
		t.Fatalf("still missing: %v", snap.MissingClusters)
	}
}

func TestMissingAfterTimeout(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.Addr)
	rec := newRecorder()
	defer c.WatchRoutes("r", rec.f)()
	rec.next(t)
	// A later route names a cluster the server lacks: the server does not answer for it
	// (the request is not a first one), so the timeout decides.
	start := time.Now()
	xdstest.Set(t, s.Routes, "r", routeTo("r", "a", "late"))
	snap := rec.next(t)
	if !slices.Equal(snap.MissingClusters, []string{"late"}) {
		t.Fatalf("missing %v", snap.MissingClusters)
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Fatalf("delivered after %v, before the missing timeout", d)
	}
}

func TestRejectedSnapshotIsNACKed(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.Addr)
	rec := newRecorder()
	rec.validate = func(s Snapshot) error {
		for _, r := range s.Routes.GetRoutes() {
			if r.GetName() == "bad" {
				return errors.New("route bad is bad")
			}
		}
		return nil
	}
	defer c.WatchRoutes("r", rec.f)()
	good := rec.next(t)
	goodVersion := ""
	waitFor(t, "ACK", func() bool {
		rs := s.Requests(apiv1alpha1.RouteConfigurationTypeURL)
		goodVersion = rs[len(rs)-1].GetVersionInfo()
		return goodVersion != ""
	})

	bad := routeTo("r", "a")
	bad.Routes[0].Name = "bad"
	xdstest.Set(t, s.Routes, "r", bad)
	var nack *discoveryv3.DiscoveryRequest
	waitFor(t, "NACK", func() bool {
		for _, r := range s.Requests(apiv1alpha1.RouteConfigurationTypeURL) {
			if r.GetErrorDetail() != nil {
				nack = r
				return true
			}
		}
		return false
	})
	if !strings.Contains(nack.GetErrorDetail().GetMessage(), "route bad is bad") || nack.GetVersionInfo() != goodVersion {
		t.Fatalf("NACK: version %q (want %q), detail %v", nack.GetVersionInfo(), goodVersion, nack.GetErrorDetail())
	}
	rec.none(t, 300*time.Millisecond)

	// The last good routes stay the base of later snapshots: an endpoint change is
	// delivered with them, not with the rejected ones.
	xdstest.Set(t, s.Endpoints, "a", cla("a", 1009))
	snap := rec.next(t)
	if snap.Routes != good.Routes || !slices.Equal(ports(snap.Endpoints["a"]), []uint32{1009}) {
		t.Fatalf("after NACK: routes %v endpoints %v", snap.Routes, ports(snap.Endpoints["a"]))
	}

	// A good version again: delivered and ACKed.
	xdstest.Set(t, s.Routes, "r", routeTo("r", "b"))
	if snap = rec.next(t); snap.Routes.GetRoutes()[0].GetName() != "to-b" {
		t.Fatalf("recovered routes %v", snap.Routes)
	}
}

func TestUndecodableResourceIsNACKed(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.Addr)
	rec := newRecorder()
	defer c.WatchRoutes("r", rec.f)()
	rec.next(t)
	// A Cluster in the route cache: its type does not match the response's.
	xdstest.Set(t, s.Routes, "r", edsCluster("r"))
	waitFor(t, "NACK", func() bool {
		rs := s.Requests(apiv1alpha1.RouteConfigurationTypeURL)
		return rs[len(rs)-1].GetErrorDetail() != nil
	})
	rec.none(t, 200*time.Millisecond)
}

func TestReconnect(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.Addr)
	rec := newRecorder()
	defer c.WatchRoutes("r", rec.f)()
	first := rec.next(t)

	s.Stop()
	rec.none(t, 500*time.Millisecond) // nothing cleared, nothing delivered
	// A watcher added while disconnected gets the last good snapshot.
	rec2 := newRecorder()
	defer c.WatchRoutes("r", rec2.f)()
	if got := rec2.next(t); got.Routes != first.Routes {
		t.Fatalf("snapshot while disconnected: %v", got.Routes)
	}

	// Restarted on the same address with new data: resync.
	s2 := startServer(t, s.Addr)
	xdstest.Set(t, s2.Clusters, "a", edsCluster("a"))
	xdstest.Set(t, s2.Endpoints, "a", cla("a", 1111))
	xdstest.Set(t, s2.Routes, "r", routeTo("r", "a"))
	snap := rec.next(t)
	if got := slices.Sorted(mapKeys(snap.Clusters)); !slices.Equal(got, []string{"a"}) || !slices.Equal(ports(snap.Endpoints["a"]), []uint32{1111}) {
		t.Fatalf("after restart: clusters %v endpoints %v", got, ports(snap.Endpoints["a"]))
	}
	// The re-subscription carried the last accepted versions.
	if rs := s2.Requests(apiv1alpha1.RouteConfigurationTypeURL); rs[0].GetVersionInfo() == "" || !slices.Equal(rs[0].GetResourceNames(), []string{"r"}) {
		t.Fatalf("resubscription: version %q names %v", rs[0].GetVersionInfo(), rs[0].GetResourceNames())
	}
}

func TestRetriesWhileServerDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	c := newClient(t, addr)
	rec := newRecorder()
	defer c.WatchRoutes("r", rec.f)()
	rec.none(t, 700*time.Millisecond) // several failed attempts
	s := startServer(t, addr)
	serveAB(t, s)
	if snap := rec.next(t); snap.Routes.GetName() != "r" {
		t.Fatalf("routes %v", snap.Routes)
	}
}

func TestSharedSubscriptionAndCancel(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.Addr)
	r1, r2 := newRecorder(), newRecorder()
	cancel1 := c.WatchRoutes("r", r1.f)
	r1.next(t)
	waitFor(t, "ACKs", func() bool { return len(s.Requests(apiv1alpha1.EndpointTypeURL)) >= 2 })
	before := len(s.Requests(apiv1alpha1.RouteConfigurationTypeURL))
	cancel2 := c.WatchRoutes("r", r2.f)
	s2 := r2.next(t)
	if s2.Routes.GetName() != "r" {
		t.Fatalf("second watcher: %v", s2.Routes)
	}
	r1.none(t, 100*time.Millisecond) // the first watcher already has it
	if after := len(s.Requests(apiv1alpha1.RouteConfigurationTypeURL)); after != before {
		t.Fatalf("the second watcher of one name sent %d more requests", after-before)
	}
	// An update reaches both.
	xdstest.Set(t, s.Endpoints, "b", cla("b", 2002))
	if !slices.Equal(ports(r1.next(t).Endpoints["b"]), []uint32{2002}) || !slices.Equal(ports(r2.next(t).Endpoints["b"]), []uint32{2002}) {
		t.Fatal("update not delivered to both")
	}

	cancel1()
	cancel1() // idempotent
	xdstest.Set(t, s.Endpoints, "b", cla("b", 2003))
	r2.next(t)
	r1.none(t, 200*time.Millisecond)
	last := func(u string) *discoveryv3.DiscoveryRequest { rs := s.Requests(u); return rs[len(rs)-1] }
	if names := last(apiv1alpha1.RouteConfigurationTypeURL).GetResourceNames(); !slices.Equal(names, []string{"r"}) {
		t.Fatalf("still one watcher, names %v", names)
	}
	cancel2()
	waitFor(t, "unsubscribed", func() bool {
		return len(last(apiv1alpha1.RouteConfigurationTypeURL).GetResourceNames()) == 0 &&
			len(last(apiv1alpha1.ClusterTypeURL).GetResourceNames()) == 0 &&
			len(last(apiv1alpha1.EndpointTypeURL).GetResourceNames()) == 0
	})
	xdstest.Set(t, s.Endpoints, "b", cla("b", 2004))
	r2.none(t, 200*time.Millisecond)
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	base := runtime.NumGoroutine()
	p := NewPool(testOptions(t))
	c1, err := p.Client(s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if c2, _ := p.Client(s.Addr); c2 != c1 {
		t.Fatal("two clients for one address")
	}
	rec := newRecorder()
	c1.WatchRoutes("r", rec.f)
	rec.next(t)
	// And one client stuck in backoff.
	c3, err := p.Client("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	c3.WatchRoutes("r", rec.f)
	if runtime.NumGoroutine() <= base {
		t.Fatal("the clients run no goroutines?")
	}
	p.Close()
	if _, err := p.Client(s.Addr); err == nil {
		t.Fatal("Client after Close succeeded")
	}
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= base })
	for _, g := range strings.Split(allStacks(), "\n\n") {
		if strings.Contains(g, "xdsclient.(*Client)") {
			t.Fatalf("goroutine left:\n%s", g)
		}
	}
}

func allStacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRejectedNewClusterIsMissing(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.Addr)
	rec := newRecorder()
	var fixed atomic.Bool
	rec.validate = func(s Snapshot) error {
		if s.Clusters["evil"] != nil && !fixed.Load() {
			return errors.New("cluster evil is evil")
		}
		return nil
	}
	defer c.WatchRoutes("r", rec.f)()
	rec.next(t)
	// A STATIC cluster needs no endpoints: its Cluster response completes the snapshot,
	// and is the one NACKed.
	xdstest.Set(t, s.Clusters, "evil", &clusterv3.Cluster{Name: "evil",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment:       cla("evil", 6666)})
	xdstest.Set(t, s.Routes, "r", routeTo("r", "a", "evil"))
	snap := rec.next(t)
	if snap.Clusters["evil"] != nil || !slices.Equal(snap.MissingClusters, []string{"evil"}) || snap.Clusters["a"] == nil {
		t.Fatalf("after a rejected cluster: clusters %v missing %v", slices.Sorted(mapKeys(snap.Clusters)), snap.MissingClusters)
	}
	waitFor(t, "NACK of the clusters", func() bool {
		for _, r := range s.Requests(apiv1alpha1.ClusterTypeURL) {
			if strings.Contains(r.GetErrorDetail().GetMessage(), "cluster evil is evil") {
				return true
			}
		}
		return false
	})
	// Fixed on the server: delivered.
	xdstest.Set(t, s.Clusters, "evil", edsCluster("evil"))
	xdstest.Set(t, s.Endpoints, "evil", cla("evil", 7777))
	fixed.Store(true)
	for snap = rec.next(t); snap.Endpoints["evil"] == nil; snap = rec.next(t) {
	}
	if !slices.Equal(ports(snap.Endpoints["evil"]), []uint32{7777}) {
		t.Fatalf("fixed cluster endpoints %v", ports(snap.Endpoints["evil"]))
	}
}

func TestBackoffBounds(t *testing.T) {
	c := &Client{opts: Options{}}
	c.opts.defaults()
	prevMax := time.Duration(0)
	for n := range 20 {
		want := min(250*time.Millisecond<<n, 30*time.Second)
		if n > 10 {
			want = 30 * time.Second
		}
		for range 50 {
			d := c.backoff(n)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: delay %v outside [%v, %v]", n, d, want/2, want)
			}
		}
		if want < prevMax {
			t.Fatalf("attempt %d: bound %v shrank", n, want)
		}
		prevMax = want
	}
}

func TestNodeFromEnv(t *testing.T) {
	t.Setenv("MELTEMI_NODE_ID", "")
	t.Setenv("POD_NAME", "")
	t.Setenv("POD_NAMESPACE", "")
	t.Setenv("MELTEMI_NODE_CLUSTER", "")
	if n := NodeFromEnv(); !strings.HasPrefix(n.GetId(), "meltemi~") || !strings.HasSuffix(n.GetId(), "~"+strconv.Itoa(os.Getpid())) || n.GetUserAgentName() != "meltemi" {
		t.Errorf("default node %v", n)
	}
	t.Setenv("POD_NAME", "echo-7d9")
	t.Setenv("POD_NAMESPACE", "demo")
	t.Setenv("MELTEMI_NODE_CLUSTER", "east")
	if n := NodeFromEnv(); n.GetId() != "echo-7d9.demo" || n.GetCluster() != "east" {
		t.Errorf("pod node %v", n)
	}
	t.Setenv("MELTEMI_NODE_ID", "explicit")
	if n := NodeFromEnv(); n.GetId() != "explicit" {
		t.Errorf("explicit node %v", n)
	}
}

// A watcher that blocks stalls only the client's goroutine: WatchRoutes and cancel, which
// Envoy's threads call, return at once.
func TestCallersNeverBlock(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.Addr)
	entered, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	var once sync.Once
	defer c.WatchRoutes("r", func(Snapshot) error {
		once.Do(func() { close(entered) })
		<-release
		return nil
	})()
	<-entered
	start := time.Now()
	for i := range 100 {
		cancel := c.WatchRoutes("r"+strconv.Itoa(i), func(Snapshot) error { return nil })
		cancel()
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("100 watch/cancel took %v while a watcher blocks", d)
	}
}

// An invalid route configuration that names a cluster the client does not have yet is NACKed
// in its own RDS response (its snapshot is incomplete, so no watcher sees it), and is not
// kept: the last good routes stay, and once the server fixes the route, it is delivered.
func TestInvalidRoutesNACKedBeforeTheirClusters(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.Addr)
	rec := newRecorder()
	defer c.WatchRoutes("r", rec.f)()
	first := rec.next(t)

	bad := routeTo("r", "not-yet")
	bad.Routes[0].Match = &apiv1alpha1.RouteMatch{Attributes: []*apiv1alpha1.AttributeMatcher{{
		Name: "method", MatchSpecifier: &apiv1alpha1.AttributeMatcher_Regex{Regex: "("}}}}
	xdstest.Set(t, s.Routes, "r", bad)
	waitFor(t, "an RDS NACK naming the regex", func() bool {
		rs := s.Requests(apiv1alpha1.RouteConfigurationTypeURL)
		return strings.Contains(rs[len(rs)-1].GetErrorDetail().GetMessage(), "regex")
	})
	if cs := s.Requests(apiv1alpha1.ClusterTypeURL); slices.Contains(cs[len(cs)-1].GetResourceNames(), "not-yet") {
		t.Errorf("subscribed to the cluster of a rejected route configuration: %v", cs[len(cs)-1].GetResourceNames())
	}
	rec.none(t, 200*time.Millisecond)

	// The fixed route configuration, with its cluster, is delivered.
	xdstest.Set(t, s.Clusters, "not-yet", edsCluster("not-yet"))
	xdstest.Set(t, s.Endpoints, "not-yet", cla("not-yet", 9))
	xdstest.Set(t, s.Routes, "r", routeTo("r", "not-yet"))
	got := rec.next(t)
	if got.Routes.GetRoutes()[0].GetRoute().GetCluster() != "not-yet" || proto.Equal(got.Routes, first.Routes) {
		t.Fatalf("after the fix: %v", got.Routes)
	}
}
