package model

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

// genInputs makes a mesh of services Kubernetes Services (a dubbo and an HTTP port) with
// endpoints pods each (one EndpointSlice, pods labelled v1 or v2), a DestinationRule with
// subsets v1 and v2 per service, and a MetaRouter per service with routes routes, each to a
// subset of the next service.
func genInputs(services, endpoints, routes int) *Inputs {
	in := &Inputs{}
	ports := []discoveryv1.EndpointPort{slicePort("tcp-dubbo", 20880), slicePort("http", 8080)}
	for i := range services {
		ns := fmt.Sprintf("ns-%d", i%20)
		name := fmt.Sprintf("svc-%d", i)
		in.Services = append(in.Services, kubeService(ns, name, svcPort("tcp-dubbo", 20880), svcPort("http", 80)))
		eps := make([]discoveryv1.Endpoint, endpoints)
		for j := range endpoints {
			podName := fmt.Sprintf("%s-%d", name, j)
			eps[j] = podEndpoint(fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j+1), podName)
			eps[j].Zone = ptr("zone-a")
			in.Pods = append(in.Pods, pod(ns, podName, map[string]string{"app": name, "version": fmt.Sprintf("v%d", j%2+1)}))
		}
		in.EndpointSlices = append(in.EndpointSlices, endpointSlice(ns, name, name+"-abcde", discoveryv1.AddressTypeIPv4, ports, eps...))
		in.DestinationRules = append(in.DestinationRules, destinationRule(ns, name, 0, name, simpleLB(networkingapi.LoadBalancerSettings_LEAST_REQUEST),
			&networkingapi.Subset{Name: "v1", Labels: map[string]string{"version": "v1"}},
			&networkingapi.Subset{Name: "v2", Labels: map[string]string{"version": "v2"}},
		))
		next := fmt.Sprintf("svc-%d.ns-%d", (i+1)%services, (i+1)%services%20)
		mr := metaRouter(ours, ns, name, 0, []string{name})
		for k := range routes {
			r := route(v1alpha1.Destination{Host: next, Subset: "v1"}, v1alpha1.Destination{Host: name, Subset: "v2"})
			r.Route[0].Weight, r.Route[1].Weight = 90, 10
			r.Match = &v1alpha1.MetaRouteMatch{Attributes: map[string]v1alpha1.StringMatch{"method": {Exact: ptr(fmt.Sprintf("m%d", k))}}}
			mr.Spec.Routes = append(mr.Spec.Routes, r)
		}
		in.MetaRouters = append(in.MetaRouters, mr)
	}
	return in
}

// shuffled returns a copy of in with every slice in another order.
func shuffled(in *Inputs, seed uint64) *Inputs {
	r := rand.New(rand.NewPCG(seed, seed))
	out := *in
	shuffle := func(s any) any {
		v := reflect.ValueOf(s)
		c := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		reflect.Copy(c, v)
		r.Shuffle(c.Len(), reflect.Swapper(c.Interface()))
		return c.Interface()
	}
	out.MetaRouters = shuffle(in.MetaRouters).([]*v1alpha1.MetaRouter)
	out.ApplicationProtocols = shuffle(in.ApplicationProtocols).([]*v1alpha1.ApplicationProtocol)
	out.Services = shuffle(in.Services).([]*corev1.Service)
	out.EndpointSlices = shuffle(in.EndpointSlices).([]*discoveryv1.EndpointSlice)
	out.Pods = shuffle(in.Pods).([]*metav1.PartialObjectMetadata)
	out.ServiceEntries = shuffle(in.ServiceEntries).([]*networkingv1.ServiceEntry)
	out.WorkloadEntries = shuffle(in.WorkloadEntries).([]*networkingv1.WorkloadEntry)
	out.DestinationRules = shuffle(in.DestinationRules).([]*networkingv1.DestinationRule)
	return &out
}

func TestBuildDeterministic(t *testing.T) {
	in := genInputs(40, 4, 3)
	// Ties everywhere: equally old conflicting routers, rules, entries and protocols, the
	// same pod in two slices, problems of several kinds.
	in.MetaRouters = append(in.MetaRouters,
		metaRouter(aeraki, "ns-0", "svc-0", 0, []string{"svc-0"}),
		metaRouter(ours, "ns-0", "dup", 0, []string{"svc-0.ns-0.svc.cluster.local"}),
		metaRouter(ours, "ns-1", "lost", 0, []string{"nope"}, route(v1alpha1.Destination{Host: "gone", Subset: "x"})),
	)
	in.DestinationRules = append(in.DestinationRules, destinationRule("ns-0", "dup", 0, "svc-0", simpleLB(networkingapi.LoadBalancerSettings_PASSTHROUGH)))
	in.EndpointSlices = append(in.EndpointSlices, endpointSlice("ns-0", "svc-0", "svc-0-dup", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{slicePort("tcp-dubbo", 20880)}, podEndpoint("10.0.0.1", "svc-1-1")))
	dubbo := []*networkingapi.ServicePort{{Number: 20880, Name: "tcp-dubbo"}}
	in.ServiceEntries = append(in.ServiceEntries,
		serviceEntry("ns-0", "se-a", 0, &networkingapi.ServiceEntry{Hosts: []string{"x.example.com", "svc-0.ns-0.svc.cluster.local"}, Ports: dubbo,
			Endpoints: []*networkingapi.WorkloadEntry{{Address: "10.9.0.1"}, {Address: "host.example.com"}}}),
		serviceEntry("ns-0", "se-b", 0, &networkingapi.ServiceEntry{Hosts: []string{"x.example.com"}, Ports: dubbo,
			WorkloadSelector: &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "x"}}}),
	)
	in.WorkloadEntries = append(in.WorkloadEntries,
		workloadEntry("ns-0", "we-1", &networkingapi.WorkloadEntry{Address: "10.9.1.1", Labels: map[string]string{"app": "x"}}),
		workloadEntry("ns-0", "we-2", &networkingapi.WorkloadEntry{Address: "10.9.1.2", Labels: map[string]string{"app": "x"}}),
	)
	in.ApplicationProtocols = []*v1alpha1.ApplicationProtocol{
		{ObjectMeta: meta("m", "p1", 0), Spec: v1alpha1.ApplicationProtocolSpec{Protocol: "trpc", Codec: "a"}},
		{ObjectMeta: meta("m", "p2", 0), Spec: v1alpha1.ApplicationProtocolSpec{Protocol: "trpc", Codec: "b"}},
	}
	in.Services = append(in.Services, kubeService("ns-0", "trpc", svcPort("tcp-metaprotocol-trpc", 8000)))

	want := Build(in)
	if len(want.Problems) < 6 || len(want.Services) != 42 || len(want.Routers) != 41 {
		t.Fatalf("fixture: %d services, %d routers, %d problems: %+v", len(want.Services), len(want.Routers), len(want.Problems), want.Problems)
	}
	if c := mustService(t, want, "trpc.ns-0.svc.cluster.local").Ports[0].Codec; c != "a" {
		t.Errorf("trpc codec %q; want a (p1 wins the tie by name)", c)
	}
	for seed := range uint64(20) {
		if got := Build(shuffled(in, seed)); !reflect.DeepEqual(got, want) {
			t.Fatalf("seed %d: shuffled inputs give another model", seed)
		}
	}
}

// BenchmarkBuild: 1,000 services x 10 endpoints (Service, EndpointSlice, Pods, a
// DestinationRule with two subsets) and 1,000 MetaRouters x 5 routes. model-bytes is the heap
// the Model holds beyond its Inputs.
func BenchmarkBuild(b *testing.B) {
	in := genInputs(1000, 10, 5)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	m := Build(in)
	runtime.GC()
	runtime.ReadMemStats(&after)
	if len(m.Services) != 1000 || len(m.Routers) != 1000 || len(m.Problems) != 0 {
		b.Fatalf("%d services, %d routers, %d problems", len(m.Services), len(m.Routers), len(m.Problems))
	}
	runtime.KeepAlive(m)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		Build(in)
	}
	b.ReportMetric(float64(after.HeapAlloc)-float64(before.HeapAlloc), "model-bytes")
}
