package xdsclient

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// xdsServer is a real go-control-plane ADS server on a loopback socket, with one
// LinearCache per type (its Snapshot cache does not take Meltemi's route type).
type xdsServer struct {
	addr   string
	routes *cachev3.LinearCache
	cls    *cachev3.LinearCache
	eps    *cachev3.LinearCache
	grpc   *grpc.Server
	cancel context.CancelFunc
	served chan struct{}

	mu   sync.Mutex
	reqs []*discoveryv3.DiscoveryRequest
}

// startServer serves on addr ("127.0.0.1:0" for a new port).
func startServer(t *testing.T, addr string) *xdsServer {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &xdsServer{
		addr:   lis.Addr().String(),
		routes: cachev3.NewLinearCache(apiv1alpha1.RouteConfigurationTypeURL),
		cls:    cachev3.NewLinearCache(apiv1alpha1.ClusterTypeURL),
		eps:    cachev3.NewLinearCache(apiv1alpha1.EndpointTypeURL),
		served: make(chan struct{}),
	}
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return r.GetTypeUrl() },
		Caches: map[string]cachev3.Cache{
			apiv1alpha1.RouteConfigurationTypeURL: s.routes,
			apiv1alpha1.ClusterTypeURL:            s.cls,
			apiv1alpha1.EndpointTypeURL:           s.eps,
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	cbs := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.reqs = append(s.reqs, r)
			return nil
		},
	}
	s.grpc = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, serverv3.NewServer(ctx, mux, cbs))
	go func() {
		defer close(s.served)
		_ = s.grpc.Serve(lis)
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *xdsServer) stop() {
	s.grpc.Stop()
	s.cancel()
	<-s.served
}

func (s *xdsServer) requests(typeURL string) []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*discoveryv3.DiscoveryRequest
	for _, r := range s.reqs {
		if r.GetTypeUrl() == typeURL {
			out = append(out, r)
		}
	}
	return out
}

func (s *xdsServer) set(t *testing.T, c *cachev3.LinearCache, name string, r types.Resource) {
	t.Helper()
	if err := c.UpdateResource(name, r); err != nil {
		t.Fatal(err)
	}
}

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
func serveAB(t *testing.T, s *xdsServer) {
	s.set(t, s.cls, "a", edsCluster("a"))
	s.set(t, s.cls, "b", edsCluster("b"))
	s.set(t, s.eps, "a", cla("a", 1001))
	s.set(t, s.eps, "b", cla("b", 2001))
	s.set(t, s.routes, "r", routeTo("r", "a", "b"))
}

func TestInitialFetchAndUpdates(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.addr)
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
			rs := s.requests(u)
			if len(rs) == 0 || rs[len(rs)-1].GetVersionInfo() == "" || rs[len(rs)-1].GetErrorDetail() != nil {
				return false
			}
		}
		return true
	})
	if n := s.requests(apiv1alpha1.RouteConfigurationTypeURL)[0].GetNode().GetId(); n != "test~"+t.Name() {
		t.Fatalf("node id %q", n)
	}

	// Route change: a new cluster c, whose cluster and endpoints arrive before delivery.
	s.set(t, s.cls, "c", edsCluster("c"))
	s.set(t, s.eps, "c", cla("c", 3001))
	s.set(t, s.routes, "r", routeTo("r", "a", "c"))
	snap = rec.next(t)
	if got := slices.Sorted(mapKeys(snap.Clusters)); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("after route change: clusters %v", got)
	}
	if !slices.Equal(ports(snap.Endpoints["c"]), []uint32{3001}) {
		t.Fatalf("after route change: endpoints of c %v", snap.Endpoints["c"])
	}
	// b is no longer referenced: unsubscribed.
	waitFor(t, "b unsubscribed", func() bool {
		rs := s.requests(apiv1alpha1.ClusterTypeURL)
		return slices.Equal(rs[len(rs)-1].GetResourceNames(), []string{"a", "c"})
	})

	// Endpoint added, then removed.
	s.set(t, s.eps, "a", cla("a", 1001, 1002))
	if snap = rec.next(t); !slices.Equal(ports(snap.Endpoints["a"]), []uint32{1001, 1002}) {
		t.Fatalf("endpoint added: %v", ports(snap.Endpoints["a"]))
	}
	s.set(t, s.eps, "a", cla("a", 1002))
	if snap = rec.next(t); !slices.Equal(ports(snap.Endpoints["a"]), []uint32{1002}) {
		t.Fatalf("endpoint removed: %v", ports(snap.Endpoints["a"]))
	}
	if snap.Routes.GetRoutes()[1].GetRoute().GetCluster() != "c" {
		t.Fatalf("route of the endpoint update: %v", snap.Routes)
	}

	// A cluster deleted on the server: CDS is full state, the snapshot names it missing.
	if err := s.cls.DeleteResource("c"); err != nil {
		t.Fatal(err)
	}
	snap = rec.next(t)
	if _, ok := snap.Clusters["c"]; ok || !slices.Equal(snap.MissingClusters, []string{"c"}) {
		t.Fatalf("deleted cluster: clusters %v missing %v", slices.Sorted(mapKeys(snap.Clusters)), snap.MissingClusters)
	}
}

func TestMissingResources(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	s.set(t, s.cls, "a", edsCluster("a"))
	s.set(t, s.cls, "nocla", edsCluster("nocla"))
	s.set(t, s.eps, "a", cla("a", 1001))
	s.set(t, s.routes, "r", routeTo("r", "a", "ghost", "nocla"))
	c := newClient(t, s.addr)
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
	s.set(t, s.eps, "ghost", cla("ghost", 4001))
	s.set(t, s.cls, "ghost", edsCluster("ghost"))
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
	c := newClient(t, s.addr)
	rec := newRecorder()
	defer c.WatchRoutes("r", rec.f)()
	rec.next(t)
	// A later route names a cluster the server lacks: the server does not answer for it
	// (the request is not a first one), so the timeout decides.
	start := time.Now()
	s.set(t, s.routes, "r", routeTo("r", "a", "late"))
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
	c := newClient(t, s.addr)
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
		rs := s.requests(apiv1alpha1.RouteConfigurationTypeURL)
		goodVersion = rs[len(rs)-1].GetVersionInfo()
		return goodVersion != ""
	})

	bad := routeTo("r", "a")
	bad.Routes[0].Name = "bad"
	s.set(t, s.routes, "r", bad)
	var nack *discoveryv3.DiscoveryRequest
	waitFor(t, "NACK", func() bool {
		for _, r := range s.requests(apiv1alpha1.RouteConfigurationTypeURL) {
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
	s.set(t, s.eps, "a", cla("a", 1009))
	snap := rec.next(t)
	if snap.Routes != good.Routes || !slices.Equal(ports(snap.Endpoints["a"]), []uint32{1009}) {
		t.Fatalf("after NACK: routes %v endpoints %v", snap.Routes, ports(snap.Endpoints["a"]))
	}

	// A good version again: delivered and ACKed.
	s.set(t, s.routes, "r", routeTo("r", "b"))
	if snap = rec.next(t); snap.Routes.GetRoutes()[0].GetName() != "to-b" {
		t.Fatalf("recovered routes %v", snap.Routes)
	}
}

func TestUndecodableResourceIsNACKed(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.addr)
	rec := newRecorder()
	defer c.WatchRoutes("r", rec.f)()
	rec.next(t)
	// A Cluster in the route cache: its type does not match the response's.
	s.set(t, s.routes, "r", edsCluster("r"))
	waitFor(t, "NACK", func() bool {
		rs := s.requests(apiv1alpha1.RouteConfigurationTypeURL)
		return rs[len(rs)-1].GetErrorDetail() != nil
	})
	rec.none(t, 200*time.Millisecond)
}

func TestReconnect(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	c := newClient(t, s.addr)
	rec := newRecorder()
	defer c.WatchRoutes("r", rec.f)()
	first := rec.next(t)

	s.stop()
	rec.none(t, 500*time.Millisecond) // nothing cleared, nothing delivered
	// A watcher added while disconnected gets the last good snapshot.
	rec2 := newRecorder()
	defer c.WatchRoutes("r", rec2.f)()
	if got := rec2.next(t); got.Routes != first.Routes {
		t.Fatalf("snapshot while disconnected: %v", got.Routes)
	}

	// Restarted on the same address with new data: resync.
	s2 := startServer(t, s.addr)
	s2.set(t, s2.cls, "a", edsCluster("a"))
	s2.set(t, s2.eps, "a", cla("a", 1111))
	s2.set(t, s2.routes, "r", routeTo("r", "a"))
	snap := rec.next(t)
	if got := slices.Sorted(mapKeys(snap.Clusters)); !slices.Equal(got, []string{"a"}) || !slices.Equal(ports(snap.Endpoints["a"]), []uint32{1111}) {
		t.Fatalf("after restart: clusters %v endpoints %v", got, ports(snap.Endpoints["a"]))
	}
	// The re-subscription carried the last accepted versions.
	if rs := s2.requests(apiv1alpha1.RouteConfigurationTypeURL); rs[0].GetVersionInfo() == "" || !slices.Equal(rs[0].GetResourceNames(), []string{"r"}) {
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
	c := newClient(t, s.addr)
	r1, r2 := newRecorder(), newRecorder()
	cancel1 := c.WatchRoutes("r", r1.f)
	r1.next(t)
	waitFor(t, "ACKs", func() bool { return len(s.requests(apiv1alpha1.EndpointTypeURL)) >= 2 })
	before := len(s.requests(apiv1alpha1.RouteConfigurationTypeURL))
	cancel2 := c.WatchRoutes("r", r2.f)
	s2 := r2.next(t)
	if s2.Routes.GetName() != "r" {
		t.Fatalf("second watcher: %v", s2.Routes)
	}
	r1.none(t, 100*time.Millisecond) // the first watcher already has it
	if after := len(s.requests(apiv1alpha1.RouteConfigurationTypeURL)); after != before {
		t.Fatalf("the second watcher of one name sent %d more requests", after-before)
	}
	// An update reaches both.
	s.set(t, s.eps, "b", cla("b", 2002))
	if !slices.Equal(ports(r1.next(t).Endpoints["b"]), []uint32{2002}) || !slices.Equal(ports(r2.next(t).Endpoints["b"]), []uint32{2002}) {
		t.Fatal("update not delivered to both")
	}

	cancel1()
	cancel1() // idempotent
	s.set(t, s.eps, "b", cla("b", 2003))
	r2.next(t)
	r1.none(t, 200*time.Millisecond)
	last := func(u string) *discoveryv3.DiscoveryRequest { rs := s.requests(u); return rs[len(rs)-1] }
	if names := last(apiv1alpha1.RouteConfigurationTypeURL).GetResourceNames(); !slices.Equal(names, []string{"r"}) {
		t.Fatalf("still one watcher, names %v", names)
	}
	cancel2()
	waitFor(t, "unsubscribed", func() bool {
		return len(last(apiv1alpha1.RouteConfigurationTypeURL).GetResourceNames()) == 0 &&
			len(last(apiv1alpha1.ClusterTypeURL).GetResourceNames()) == 0 &&
			len(last(apiv1alpha1.EndpointTypeURL).GetResourceNames()) == 0
	})
	s.set(t, s.eps, "b", cla("b", 2004))
	r2.none(t, 200*time.Millisecond)
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	s := startServer(t, "127.0.0.1:0")
	serveAB(t, s)
	base := runtime.NumGoroutine()
	p := NewPool(testOptions(t))
	c1, err := p.Client(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	if c2, _ := p.Client(s.addr); c2 != c1 {
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
	if _, err := p.Client(s.addr); err == nil {
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
