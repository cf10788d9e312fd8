package xds

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/translate"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

const (
	routeT    = apiv1alpha1.RouteConfigurationTypeURL
	clusterT  = apiv1alpha1.ClusterTypeURL
	endpointT = apiv1alpha1.EndpointTypeURL
)

// resources makes a resource set: routes and clusters by name, the route's first route
// named after tag so that changing tag changes the resource.
func resources(routes map[string]string, clusters map[string]time.Duration) *translate.Resources {
	r := &translate.Resources{
		Routes:    map[string]*apiv1alpha1.RouteConfiguration{},
		Clusters:  map[string]*clusterv3.Cluster{},
		Endpoints: map[string]*endpointv3.ClusterLoadAssignment{},
	}
	for name, tag := range routes {
		r.Routes[name] = &apiv1alpha1.RouteConfiguration{Name: name, Routes: []*apiv1alpha1.Route{{Name: tag}}}
	}
	for name, timeout := range clusters {
		r.Clusters[name] = &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(timeout)}
		r.Endpoints[name] = &endpointv3.ClusterLoadAssignment{ClusterName: name}
	}
	return r
}

type testServer struct {
	*Server
	addr string
	reg  *prometheus.Registry
}

func startServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	s := NewServer(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Serve did not return after cancel")
		}
	})
	return &testServer{Server: s, addr: l.Addr().String(), reg: reg}
}

// waitVersion waits until the server applied v updates.
func waitVersion(t *testing.T, s *Server, v uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Version() < v {
		if time.Now().After(deadline) {
			t.Fatalf("version %d, want %d", s.Version(), v)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// sotwClient is an ADS state-of-the-world client over a real connection.
type sotwClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resp   chan *discoveryv3.DiscoveryResponse
}

func newSotw(t *testing.T, addr string) *sotwClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, addr)).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &sotwClient{t: t, stream: st, resp: make(chan *discoveryv3.DiscoveryResponse, 100)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				close(c.resp)
				return
			}
			c.resp <- r
		}
	}()
	return c
}

func (c *sotwClient) send(req *discoveryv3.DiscoveryRequest) {
	c.t.Helper()
	if req.Node == nil {
		req.Node = &corev3.Node{Id: "test-node"}
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *sotwClient) recv() *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resp:
		if !ok {
			c.t.Fatal("stream closed")
		}
		return r
	case <-time.After(5 * time.Second):
		c.t.Fatal("no response")
	}
	return nil
}

func (c *sotwClient) none(d time.Duration) {
	c.t.Helper()
	select {
	case r := <-c.resp:
		c.t.Fatalf("unexpected response: %v", r)
	case <-time.After(d):
	}
}

func (c *sotwClient) ack(typeURL string, names []string, r *discoveryv3.DiscoveryResponse) {
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce})
}

// sotwRoutes decodes a response's route configurations by name.
func sotwRoutes(t *testing.T, r *discoveryv3.DiscoveryResponse) map[string]*apiv1alpha1.RouteConfiguration {
	t.Helper()
	out := map[string]*apiv1alpha1.RouteConfiguration{}
	for _, a := range r.Resources {
		if a.TypeUrl != routeT {
			t.Fatalf("resource type %s, want %s", a.TypeUrl, routeT)
		}
		rc := &apiv1alpha1.RouteConfiguration{}
		if err := a.UnmarshalTo(rc); err != nil {
			t.Fatal(err)
		}
		out[rc.Name] = rc
	}
	return out
}

func sotwClusters(t *testing.T, r *discoveryv3.DiscoveryResponse) map[string]*clusterv3.Cluster {
	t.Helper()
	out := map[string]*clusterv3.Cluster{}
	for _, a := range r.Resources {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			t.Fatal(err)
		}
		out[c.Name] = c
	}
	return out
}

func TestSotwSubscribeAckUpdateDelete(t *testing.T) {
	s := startServer(t, Options{Debounce: 10 * time.Millisecond})
	s.Update(resources(map[string]string{"r1": "a", "r2": "a"}, map[string]time.Duration{"c1": time.Second, "c2": time.Second}))
	waitVersion(t, s.Server, 1)

	c := newSotw(t, s.addr)
	names := []string{"r1", "r2"}
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: routeT, ResourceNames: names})
	r := c.recv()
	got := sotwRoutes(t, r)
	if len(got) != 2 || got["r1"].Routes[0].Name != "a" || got["r2"] == nil {
		t.Fatalf("first response: %v", got)
	}
	if s.State(routeT, "r1").Acked {
		t.Fatal("acked before the client acknowledged")
	}
	c.ack(routeT, names, r)
	waitFor(t, "r1 acked", func() bool { return s.State(routeT, "r1").Acked && s.State(routeT, "r2").Acked })
	c.none(100 * time.Millisecond) // an ACK is not answered

	// Clusters: sotw responses carry every subscribed cluster.
	cnames := []string{"c1", "c2"}
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: clusterT, ResourceNames: cnames})
	cr := c.recv()
	if got := sotwClusters(t, cr); len(got) != 2 {
		t.Fatalf("clusters: %v", got)
	}
	c.ack(clusterT, cnames, cr)

	// Change r1 only: only r1 is re-sent, with a new version.
	s.Update(resources(map[string]string{"r1": "b", "r2": "a"}, map[string]time.Duration{"c1": time.Second, "c2": time.Second}))
	r2 := c.recv()
	if r2.TypeUrl != routeT {
		t.Fatalf("pushed %s, want routes only", r2.TypeUrl)
	}
	got = sotwRoutes(t, r2)
	if len(got) != 1 || got["r1"] == nil || got["r1"].Routes[0].Name != "b" {
		t.Fatalf("update response: %v", got)
	}
	if r2.VersionInfo == r.VersionInfo {
		t.Fatalf("version %q not changed", r2.VersionInfo)
	}
	if s.State(routeT, "r1").Acked {
		t.Fatal("new r1 acked before the client acknowledged it")
	}
	if !s.State(routeT, "r2").Acked {
		t.Fatal("unchanged r2 no longer acked")
	}
	c.ack(routeT, names, r2)
	waitFor(t, "new r1 acked", func() bool { return s.State(routeT, "r1").Acked })
	c.none(100 * time.Millisecond)

	// Change c1: the full subscribed set of clusters is sent.
	s.Update(resources(map[string]string{"r1": "b", "r2": "a"}, map[string]time.Duration{"c1": 2 * time.Second, "c2": time.Second}))
	cr2 := c.recv()
	gotc := sotwClusters(t, cr2)
	if cr2.TypeUrl != clusterT || len(gotc) != 2 || gotc["c1"].ConnectTimeout.AsDuration() != 2*time.Second {
		t.Fatalf("cluster update: %s %v", cr2.TypeUrl, gotc)
	}
	c.ack(clusterT, cnames, cr2)

	// Delete c2: the cluster response no longer has it.
	s.Update(resources(map[string]string{"r1": "b", "r2": "a"}, map[string]time.Duration{"c1": 2 * time.Second}))
	cr3 := c.recv()
	gotc = sotwClusters(t, cr3)
	if cr3.TypeUrl != clusterT || len(gotc) != 1 || gotc["c1"] == nil {
		t.Fatalf("cluster delete: %s %v", cr3.TypeUrl, gotc)
	}
	if s.Hash(clusterT, "c2") != "" || s.Resources().Clusters["c2"] != nil {
		t.Fatal("c2 still applied")
	}

	if n := testutil.ToFloat64(s.metrics.pushes.WithLabelValues(routeT)); n != 2 {
		t.Errorf("route pushes %v, want 2", n)
	}
	if n := testutil.ToFloat64(s.metrics.streams.WithLabelValues("sotw")); n != 1 {
		t.Errorf("connected sotw streams %v, want 1", n)
	}
}

// deltaClient is an ADS delta client over a real connection.
type deltaClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	resp   chan *discoveryv3.DeltaDiscoveryResponse
}

func newDelta(t *testing.T, addr string) *deltaClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(dial(t, addr)).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &deltaClient{t: t, stream: st, resp: make(chan *discoveryv3.DeltaDiscoveryResponse, 100)}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				close(c.resp)
				return
			}
			c.resp <- r
		}
	}()
	return c
}

func (c *deltaClient) send(req *discoveryv3.DeltaDiscoveryRequest) {
	c.t.Helper()
	if req.Node == nil {
		req.Node = &corev3.Node{Id: "delta-node"}
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *deltaClient) recv() *discoveryv3.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resp:
		if !ok {
			c.t.Fatal("stream closed")
		}
		return r
	case <-time.After(5 * time.Second):
		c.t.Fatal("no response")
	}
	return nil
}

func (c *deltaClient) none(d time.Duration) {
	c.t.Helper()
	select {
	case r := <-c.resp:
		c.t.Fatalf("unexpected response: %v", r)
	case <-time.After(d):
	}
}

func deltaNames(r *discoveryv3.DeltaDiscoveryResponse) map[string]string {
	out := map[string]string{}
	for _, res := range r.Resources {
		out[res.Name] = res.Version
	}
	return out
}

func TestDeltaUpdateAndDelete(t *testing.T) {
	s := startServer(t, Options{Debounce: 10 * time.Millisecond})
	s.Update(resources(map[string]string{"r1": "a", "r2": "a", "r3": "a"}, nil))
	waitVersion(t, s.Server, 1)

	c := newDelta(t, s.addr)
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: routeT, ResourceNamesSubscribe: []string{"r1", "r2"}})
	r := c.recv()
	got := deltaNames(r)
	if len(got) != 2 || got["r1"] != s.Hash(routeT, "r1") || got["r2"] != s.Hash(routeT, "r2") || got["r1"] == "" {
		t.Fatalf("first response %v; hashes %q %q", got, s.Hash(routeT, "r1"), s.Hash(routeT, "r2"))
	}
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: routeT, ResponseNonce: r.Nonce})
	waitFor(t, "acked", func() bool { return s.State(routeT, "r1").Acked && s.State(routeT, "r2").Acked })
	if s.State(routeT, "r3").Sent {
		t.Fatal("r3 sent without a subscription")
	}

	// r1 changes, r3 (not subscribed) changes: only r1 is sent.
	oldR1 := got["r1"]
	s.Update(resources(map[string]string{"r1": "b", "r2": "a", "r3": "b"}, nil))
	r = c.recv()
	got = deltaNames(r)
	if len(got) != 1 || got["r1"] == "" || got["r1"] == oldR1 || len(r.RemovedResources) != 0 {
		t.Fatalf("update response %v removed %v", got, r.RemovedResources)
	}
	rc := &apiv1alpha1.RouteConfiguration{}
	if err := r.Resources[0].Resource.UnmarshalTo(rc); err != nil || rc.Routes[0].Name != "b" {
		t.Fatalf("update content %v %v", rc, err)
	}
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: routeT, ResponseNonce: r.Nonce})
	waitFor(t, "new r1 acked", func() bool { return s.State(routeT, "r1").Acked })

	// An update that changes nothing sends nothing.
	s.Update(resources(map[string]string{"r1": "b", "r2": "a", "r3": "b"}, nil))
	waitVersion(t, s.Server, 3)
	c.none(100 * time.Millisecond)

	// r2 deleted: removed_resources.
	s.Update(resources(map[string]string{"r1": "b", "r3": "b"}, nil))
	r = c.recv()
	if len(r.Resources) != 0 || len(r.RemovedResources) != 1 || r.RemovedResources[0] != "r2" {
		t.Fatalf("delete response: resources %v removed %v", deltaNames(r), r.RemovedResources)
	}
	if n := testutil.ToFloat64(s.metrics.streams.WithLabelValues("delta")); n != 1 {
		t.Errorf("connected delta streams %v, want 1", n)
	}
}

func TestNack(t *testing.T) {
	var mu sync.Mutex
	var nacks []Nack
	s := startServer(t, Options{Debounce: 10 * time.Millisecond, OnNack: func(n Nack) {
		mu.Lock()
		nacks = append(nacks, n)
		mu.Unlock()
	}})
	s.Update(resources(map[string]string{"r1": "a"}, map[string]time.Duration{"c1": time.Second}))
	waitVersion(t, s.Server, 1)

	// sotw
	c := newSotw(t, s.addr)
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: routeT, ResourceNames: []string{"r1"}})
	r := c.recv()
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: routeT, ResourceNames: []string{"r1"}, ResponseNonce: r.Nonce,
		ErrorDetail: &statuspb.Status{Code: 3, Message: "r1: bad route"}})
	waitFor(t, "sotw nack", func() bool { mu.Lock(); defer mu.Unlock(); return len(nacks) == 1 })
	mu.Lock()
	n := nacks[0]
	mu.Unlock()
	if n.TypeURL != routeT || n.Message != "r1: bad route" || n.Node != "test-node" || len(n.ResourceNames) != 1 || n.ResourceNames[0] != "r1" {
		t.Fatalf("nack %+v", n)
	}
	if st := s.State(routeT, "r1"); st.Nack != "r1: bad route" || st.Acked {
		t.Fatalf("state %+v", st)
	}
	if v := testutil.ToFloat64(s.metrics.nacks.WithLabelValues(routeT)); v != 1 {
		t.Fatalf("nacks_total %v, want 1", v)
	}

	// delta, on the endpoint type
	d := newDelta(t, s.addr)
	d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: endpointT, ResourceNamesSubscribe: []string{"c1"}})
	dr := d.recv()
	d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: endpointT, ResponseNonce: dr.Nonce,
		ErrorDetail: &statuspb.Status{Code: 3, Message: "c1: bad endpoints"}})
	waitFor(t, "delta nack", func() bool { mu.Lock(); defer mu.Unlock(); return len(nacks) == 2 })
	mu.Lock()
	n = nacks[1]
	mu.Unlock()
	if n.TypeURL != endpointT || n.Message != "c1: bad endpoints" || n.Node != "delta-node" || len(n.ResourceNames) != 1 || n.ResourceNames[0] != "c1" {
		t.Fatalf("nack %+v", n)
	}
	if v := testutil.ToFloat64(s.metrics.nacks.WithLabelValues(endpointT)); v != 1 {
		t.Fatalf("endpoint nacks_total %v, want 1", v)
	}
	// The registry given in Options has the counter.
	if n, err := testutil.GatherAndCount(s.reg, "meltemi_xds_nacks_total"); err != nil || n != 2 {
		t.Fatalf("registry has %d nack series (%v), want 2", n, err)
	}

	// A fixed resource clears the NACK once it is the current version.
	// (go-control-plane answers the NACK, whose version_info is still "", with an empty
	// response first.)
	s.Update(resources(map[string]string{"r1": "fixed"}, map[string]time.Duration{"c1": time.Second}))
	for {
		r = c.recv()
		if got := sotwRoutes(t, r); got["r1"] != nil && got["r1"].Routes[0].Name == "fixed" {
			break
		}
		c.ack(routeT, []string{"r1"}, r)
	}
	if st := s.State(routeT, "r1"); st.Nack != "" {
		t.Fatalf("nack of the previous version still reported: %+v", st)
	}
	c.ack(routeT, []string{"r1"}, r)
	waitFor(t, "fixed r1 acked", func() bool { return s.State(routeT, "r1").Acked })
}

func TestDebounceCoalesces(t *testing.T) {
	// 10 updates within ~50 ms; a debounce longer than the default keeps a slow scheduler
	// from splitting them.
	s := startServer(t, Options{Debounce: 250 * time.Millisecond, MaxDebounce: time.Second})
	c := newSotw(t, s.addr)
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: routeT, ResourceNames: []string{"r1"}})
	c.ack(routeT, []string{"r1"}, c.recv()) // the initial, empty response

	for i := range 10 {
		s.Update(resources(map[string]string{"r1": string(rune('a' + i))}, nil))
		time.Sleep(5 * time.Millisecond)
	}
	r := c.recv()
	if got := sotwRoutes(t, r); got["r1"] == nil || got["r1"].Routes[0].Name != "j" {
		t.Fatalf("pushed %v, want the last update", got)
	}
	c.none(300 * time.Millisecond)
	if v := s.Version(); v != 1 {
		t.Fatalf("%d applies, want 1", v)
	}
	if v := testutil.ToFloat64(s.metrics.updates); v != 10 {
		t.Fatalf("updates_total %v, want 10", v)
	}
}

func TestFlush(t *testing.T) {
	var applied int
	s := NewServer(Options{Debounce: time.Hour, OnApply: func(*translate.Resources) { applied++ }})
	s.Flush() // nothing pending: nothing applied
	if s.Version() != 0 || applied != 0 {
		t.Fatalf("version %d, %d applies before any update", s.Version(), applied)
	}
	select {
	case <-s.Ready():
		t.Fatal("ready before the first apply")
	default:
	}
	s.Update(resources(map[string]string{"r1": "a"}, nil))
	s.Update(resources(map[string]string{"r1": "b"}, nil))
	s.Flush()
	if s.Version() != 1 || applied != 1 || s.Resources().Routes["r1"].Routes[0].Name != "b" {
		t.Fatalf("after Flush: version %d, %d applies, %v", s.Version(), applied, s.Resources().Routes)
	}
	select {
	case <-s.Ready():
	default:
		t.Fatal("not ready after the first apply")
	}
}

func TestMaxDebounce(t *testing.T) {
	const maxDebounce = 400 * time.Millisecond
	applied := make(chan time.Time, 100)
	s := NewServer(Options{Debounce: 200 * time.Millisecond, MaxDebounce: maxDebounce, OnApply: func(*translate.Resources) {
		applied <- time.Now()
	}})
	start := time.Now()
	stop := time.After(1300 * time.Millisecond)
	// Updates every 20 ms never leave the 200 ms debounce quiet: only MaxDebounce applies.
	for i := 0; ; i++ {
		select {
		case <-stop:
		case <-time.After(20 * time.Millisecond):
			s.Update(resources(map[string]string{"r1": string(rune('a' + i%26))}, nil))
			continue
		}
		break
	}
	var times []time.Time
	deadline := time.After(2 * time.Second)
	for len(times) < 3 {
		select {
		case at := <-applied:
			times = append(times, at)
		case <-deadline:
			t.Fatalf("%d applies, want at least 3 (one per max debounce under continuous updates, one after)", len(times))
		}
	}
	if d := times[0].Sub(start); d < maxDebounce-20*time.Millisecond || d > maxDebounce+300*time.Millisecond {
		t.Fatalf("first apply after %v under continuous updates, want about %v", d, maxDebounce)
	}
}

func TestNameField(t *testing.T) {
	for _, m := range []proto.Message{
		&apiv1alpha1.RouteConfiguration{Name: "outbound|20880||echo", Routes: []*apiv1alpha1.Route{{Name: "x"}}},
		&clusterv3.Cluster{ConnectTimeout: durationpb.New(time.Second), Name: "outbound|20880||echo"},
		&endpointv3.ClusterLoadAssignment{ClusterName: "outbound|20880||echo", Endpoints: []*endpointv3.LocalityLbEndpoints{{}}},
	} {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if got := nameField(b); got != "outbound|20880||echo" {
			t.Errorf("%T: name %q", m, got)
		}
	}
	if got := nameField([]byte{0xff}); got != "" {
		t.Errorf("garbage: %q", got)
	}
}

// scaleResources is the scale target's resource set: services route configurations of 5
// routes, each service with 3 clusters (all endpoints and two subsets) of 10 endpoints.
func scaleResources(services int, tag string) *translate.Resources {
	r := &translate.Resources{
		Routes:    make(map[string]*apiv1alpha1.RouteConfiguration, services),
		Clusters:  make(map[string]*clusterv3.Cluster, 3*services),
		Endpoints: make(map[string]*endpointv3.ClusterLoadAssignment, 3*services),
	}
	for i := range services {
		host := "svc-" + strconv.Itoa(i) + ".demo.svc.cluster.local"
		rname := apiv1alpha1.ResourceName(apiv1alpha1.Outbound, 20880, "", host)
		rc := &apiv1alpha1.RouteConfiguration{Name: rname}
		for j := range 5 {
			rc.Routes = append(rc.Routes, &apiv1alpha1.Route{Name: tag + strconv.Itoa(j),
				Route: &apiv1alpha1.RouteAction{ClusterSpecifier: &apiv1alpha1.RouteAction_Cluster{Cluster: rname}}})
		}
		r.Routes[rname] = rc
		for _, subset := range []string{"", "v1", "v2"} {
			name := apiv1alpha1.ResourceName(apiv1alpha1.Outbound, 20880, subset, host)
			r.Clusters[name] = &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second)}
			cla := &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{}}}
			for k := range 10 {
				cla.Endpoints[0].LbEndpoints = append(cla.Endpoints[0].LbEndpoints, &endpointv3.LbEndpoint{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
							Address: "10.0." + strconv.Itoa(i%250) + "." + strconv.Itoa(k), PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 20880}}}},
					}},
				})
			}
			r.Endpoints[name] = cla
		}
	}
	return r
}

// BenchmarkApply1000Services: hashing 1,000 services' resources (7,000 resources) and
// handing the changed ones to the caches, when all changed and when one route changed.
func BenchmarkApply1000Services(b *testing.B) {
	a, c := scaleResources(1000, "a"), scaleResources(1000, "b")
	one := scaleResources(1000, "a")
	for name := range one.Routes {
		one.Routes[name] = &apiv1alpha1.RouteConfiguration{Name: name}
		break
	}
	b.Run("all-changed", func(b *testing.B) {
		s := NewServer(Options{})
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 {
				s.apply(a)
			} else {
				s.apply(c)
			}
		}
	})
	b.Run("one-changed", func(b *testing.B) {
		s := NewServer(Options{})
		s.apply(a)
		for i := 0; b.Loop(); i++ {
			if i%2 == 0 {
				s.apply(one)
			} else {
				s.apply(a)
			}
		}
	})
}

// TestServeStopsWithOpenStreams: cancelling Serve's context closes open streams (sotw and
// delta) and Serve returns promptly.
func TestServeStopsWithOpenStreams(t *testing.T) {
	s := NewServer(Options{Debounce: 10 * time.Millisecond})
	s.Update(resources(map[string]string{"r1": "a"}, nil))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()

	c := newSotw(t, l.Addr().String())
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: routeT, ResourceNames: []string{"r1"}})
	c.recv()
	d := newDelta(t, l.Addr().String())
	d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: routeT, ResourceNamesSubscribe: []string{"r1"}})
	d.recv()
	if n := s.Streams(); n != 2 {
		t.Fatalf("%d streams, want 2", n)
	}

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("stopping took %v: streams were not closed, the grace period ran out", d)
	}
	select {
	case _, ok := <-c.resp:
		if ok {
			t.Fatal("sotw stream got a response instead of closing")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("sotw stream still open after the server stopped")
	}
	select {
	case _, ok := <-d.resp:
		if ok {
			t.Fatal("delta stream got a response instead of closing")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("delta stream still open after the server stopped")
	}
	if n := s.Streams(); n != 0 {
		t.Fatalf("%d streams after stop", n)
	}
}
