package controller

import (
	"context"
	"net"
	"strings"
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

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/translate"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/xds"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// fakeSink records the reports.
type fakeSink struct {
	mu      sync.Mutex
	reports [][]ObjectStatus
	seen    int // reports before this one were matched by waitReport
}

func (f *fakeSink) Report(_ context.Context, s []ObjectStatus) {
	f.mu.Lock()
	f.reports = append(f.reports, s)
	f.mu.Unlock()
}

// waitReport waits for a report, after the last one it matched, that satisfies ok and
// returns it by object name.
func (f *fakeSink) waitReport(t *testing.T, what string, ok func(map[string]ObjectStatus) bool) map[string]ObjectStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		var last map[string]ObjectStatus
		for i := f.seen; i < len(f.reports); i++ {
			m := byName(f.reports[i])
			last = m
			if ok(m) {
				f.seen = i + 1
				f.mu.Unlock()
				return m
			}
		}
		f.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("no report with %s; last: %+v", what, last)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func byName(statuses []ObjectStatus) map[string]ObjectStatus {
	m := map[string]ObjectStatus{}
	for _, s := range statuses {
		m[s.Ref.Kind+"/"+s.Ref.Name] = s
	}
	return m
}

var (
	mr1  = model.ObjectRef{Group: "metaprotocol.meltemi.io", Kind: "MetaRouter", Namespace: "demo", Name: "mr1", Generation: 1}
	mr2  = model.ObjectRef{Group: "metaprotocol.meltemi.io", Kind: "MetaRouter", Namespace: "demo", Name: "mr2", Generation: 3}
	svc1 = model.ObjectRef{Kind: "Service", Namespace: "demo", Name: "svc1"}
)

// resources: r1 from mr1 and svc1, r2 from mr2 (whose route is named tag), c1 from svc1;
// mr2 has a problem.
func resources(tag string) *translate.Resources {
	return &translate.Resources{
		Routes: map[string]*apiv1alpha1.RouteConfiguration{
			"r1": {Name: "r1", Routes: []*apiv1alpha1.Route{{Name: "a"}}},
			"r2": {Name: "r2", Routes: []*apiv1alpha1.Route{{Name: tag}}},
		},
		Clusters:  map[string]*clusterv3.Cluster{"c1": {Name: "c1"}},
		Endpoints: map[string]*endpointv3.ClusterLoadAssignment{"c1": {ClusterName: "c1"}},
		Origins: map[string][]model.ObjectRef{
			translate.OriginKey(apiv1alpha1.RouteConfigurationTypeURL, "r1"): {mr1, svc1},
			translate.OriginKey(apiv1alpha1.RouteConfigurationTypeURL, "r2"): {mr2},
			translate.OriginKey(apiv1alpha1.ClusterTypeURL, "c1"):            {svc1},
			translate.OriginKey(apiv1alpha1.EndpointTypeURL, "c1"):           {svc1},
		},
		Problems: []model.Problem{{Object: mr2, Condition: "ResolvedRefs", Reason: "BackendNotFound", Message: "no such host"}},
	}
}

func TestStatusProgrammedAndNack(t *testing.T) {
	sink := &fakeSink{}
	var mu sync.Mutex
	current := resources("a")
	built := 0
	reg := prometheus.NewRegistry()
	c := New(Options{
		XDS:            xds.Options{Debounce: 10 * time.Millisecond},
		Sink:           sink,
		StatusInterval: 10 * time.Millisecond,
		Registerer:     reg,
		Build: func(in *model.Inputs) *model.Model {
			mu.Lock()
			built++
			mu.Unlock()
			return &model.Model{}
		},
		Translate: func(*model.Model) *translate.Resources {
			mu.Lock()
			defer mu.Unlock()
			return current
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- c.Server().Serve(ctx, l) }()
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()

	c.Sync(&model.Inputs{})
	if c.Syncs() != 1 || built != 1 {
		t.Fatalf("syncs %d, builds %d", c.Syncs(), built)
	}
	got := sink.waitReport(t, "the first sync", func(m map[string]ObjectStatus) bool { return len(m) == 3 })
	if got["MetaRouter/mr1"].Programmed || got["Service/svc1"].Programmed {
		t.Fatalf("programmed without any client: %+v", got)
	}
	if p := got["MetaRouter/mr2"].Problems; len(p) != 1 || p[0].Reason != "BackendNotFound" {
		t.Fatalf("mr2 problems %+v", p)
	}
	if got["MetaRouter/mr2"].Ref != mr2 {
		t.Fatalf("mr2 ref %+v", got["MetaRouter/mr2"].Ref)
	}

	// A client takes r1, r2 and c1 and accepts them.
	cl := newClient(t, l.Addr().String())
	routes := []string{"r1", "r2"}
	cl.send(&discoveryv3.DiscoveryRequest{TypeUrl: apiv1alpha1.RouteConfigurationTypeURL, ResourceNames: routes})
	cl.ack(apiv1alpha1.RouteConfigurationTypeURL, routes, cl.recv())
	sink.waitReport(t, "mr1 programmed", func(m map[string]ObjectStatus) bool {
		return m["MetaRouter/mr1"].Programmed && m["MetaRouter/mr2"].Programmed
	})
	// svc1's cluster is not subscribed yet, so only its route counts.
	cl.send(&discoveryv3.DiscoveryRequest{TypeUrl: apiv1alpha1.ClusterTypeURL, ResourceNames: []string{"c1"}})
	cr := cl.recv()
	// Sent, not yet acknowledged: svc1 is not programmed (a send triggers no report).
	if st := byName(c.Statuses())["Service/svc1"]; st.Programmed {
		t.Fatalf("svc1 programmed before its cluster was acknowledged: %+v", st)
	}
	cl.ack(apiv1alpha1.ClusterTypeURL, []string{"c1"}, cr)
	sink.waitReport(t, "svc1 programmed", func(m map[string]ObjectStatus) bool { return m["Service/svc1"].Programmed })

	// mr2's route changes and the client rejects it: mr2 is Rejected, mr1 is not.
	mu.Lock()
	current = resources("b")
	mu.Unlock()
	c.Sync(&model.Inputs{})
	r := cl.recv()
	if len(r.Resources) != 1 {
		t.Fatalf("pushed %d routes, want the changed one", len(r.Resources))
	}
	cl.send(&discoveryv3.DiscoveryRequest{TypeUrl: apiv1alpha1.RouteConfigurationTypeURL, ResourceNames: routes,
		ResponseNonce: r.Nonce, ErrorDetail: &statuspb.Status{Code: 3, Message: "route b: bad"}})
	got = sink.waitReport(t, "mr2 rejected", func(m map[string]ObjectStatus) bool { return m["MetaRouter/mr2"].Nack != "" })
	if n := got["MetaRouter/mr2"].Nack; !strings.Contains(n, "r2") || !strings.Contains(n, "route b: bad") || got["MetaRouter/mr2"].Programmed {
		t.Fatalf("mr2 %+v", got["MetaRouter/mr2"])
	}
	if !got["MetaRouter/mr1"].Programmed || got["MetaRouter/mr1"].Nack != "" {
		t.Fatalf("mr1 %+v", got["MetaRouter/mr1"])
	}
	if v := testutil.ToFloat64(c.metrics.syncs); v != 2 {
		t.Fatalf("syncs_total %v", v)
	}
	if n, err := testutil.GatherAndCount(reg, "meltemi_xds_nacks_total"); err != nil || n != 1 {
		t.Fatalf("xds metrics in the controller's registry: %d (%v)", n, err)
	}

	cancel()
	for _, ch := range []chan error{served, ran} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("not stopped")
		}
	}
}

func TestParseOriginKey(t *testing.T) {
	name := "outbound|20880|v1|echo.demo.svc.cluster.local"
	for _, typ := range xds.TypeURLs {
		k, ok := parseOriginKey(translate.OriginKey(typ, name))
		if !ok || k.typeURL != typ || k.name != name {
			t.Errorf("%s: %+v %v", typ, k, ok)
		}
	}
	if _, ok := parseOriginKey("type.googleapis.com/other/x"); ok {
		t.Error("unknown type parsed")
	}
}

type client struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resp   chan *discoveryv3.DiscoveryResponse
}

func newClient(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &client{t: t, stream: st, resp: make(chan *discoveryv3.DiscoveryResponse, 100)}
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

func (c *client) send(req *discoveryv3.DiscoveryRequest) {
	c.t.Helper()
	req.Node = &corev3.Node{Id: "test"}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) recv() *discoveryv3.DiscoveryResponse {
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

func (c *client) ack(typeURL string, names []string, r *discoveryv3.DiscoveryResponse) {
	c.send(&discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce})
}

// ApplicationProtocols produce no xDS resource but still get a status: Programmed as soon
// as they are accepted.
func TestApplicationProtocolStatus(t *testing.T) {
	ok := model.ObjectRef{Group: "metaprotocol.meltemi.io", Kind: "ApplicationProtocol", Namespace: "demo", Name: "trpc", Generation: 1}
	bad := model.ObjectRef{Group: "metaprotocol.meltemi.io", Kind: "ApplicationProtocol", Namespace: "demo", Name: "trpc-new", Generation: 2}
	problem := model.Problem{Object: bad, Condition: "Accepted", Reason: "Conflicted", Message: "older trpc wins"}
	c := New(Options{
		Build: func(*model.Inputs) *model.Model {
			return &model.Model{ApplicationProtocols: []model.ObjectRef{ok, bad}, Problems: []model.Problem{problem}}
		},
		Translate: func(m *model.Model) *translate.Resources {
			return &translate.Resources{Problems: m.Problems}
		},
	})
	c.Sync(&model.Inputs{})
	c.Server().Flush()
	got := byName(c.Statuses())
	if s, found := got["ApplicationProtocol/trpc"]; !found || !s.Programmed || len(s.Problems) != 0 {
		t.Errorf("accepted ApplicationProtocol: %+v (found %v)", s, found)
	}
	if s := got["ApplicationProtocol/trpc-new"]; s.Programmed || len(s.Problems) != 1 || s.Problems[0].Reason != "Conflicted" {
		t.Errorf("conflicting ApplicationProtocol: %+v", s)
	}
}

// OnSync sees each sync's inputs and the model built from them; RefreshStatus makes a
// report although no resource changed.
func TestOnSyncAndRefreshStatus(t *testing.T) {
	type seen struct {
		in *model.Inputs
		m  *model.Model
	}
	var got []seen
	built := &model.Model{Routers: []*model.Router{{Source: mr1}}}
	sink := &fakeSink{}
	c := New(Options{
		Sink:           sink,
		StatusInterval: time.Millisecond,
		Build:          func(*model.Inputs) *model.Model { return built },
		Translate:      func(*model.Model) *translate.Resources { return &translate.Resources{} },
		OnSync:         func(in *model.Inputs, m *model.Model) { got = append(got, seen{in, m}) },
	})
	in := &model.Inputs{DomainSuffix: "example"}
	c.Sync(in)
	if len(got) != 1 || got[0].in != in || got[0].m != built {
		t.Fatalf("OnSync calls %+v; want one with the inputs and the built model", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = c.Run(ctx) }()
	sink.waitReport(t, "the first report", func(map[string]ObjectStatus) bool { return true })
	c.RefreshStatus()
	sink.waitReport(t, "a report after RefreshStatus", func(map[string]ObjectStatus) bool { return true })
}
