package controller

import (
	"runtime"
	"strconv"
	"testing"

	networkingapi "istio.io/api/networking/v1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// scaleInputs is the scale target: services Kubernetes Services (a tcp-dubbo port),
// each with 10 endpoints (Pods labelled v1 or v2), a DestinationRule with subsets v1 and v2
// and a MetaRouter of 5 routes over them. weight varies the routes' weights so that two
// inputs differ in every route configuration.
func scaleInputs(services int, weight int32) *model.Inputs {
	in := &model.Inputs{}
	for i := range services {
		name := "svc-" + strconv.Itoa(i)
		host := name + ".demo.svc.cluster.local"
		in.Services = append(in.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", Generation: 1},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "tcp-dubbo", Port: 20880}}},
		})
		es := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Name: name + "-1", Namespace: "demo",
				Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("tcp-dubbo"), Port: ptr[int32](20880)}},
		}
		for k := range 10 {
			pod := name + "-" + strconv.Itoa(k)
			version := "v" + strconv.Itoa(1+k%2)
			in.Pods = append(in.Pods, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
				Name: pod, Namespace: "demo", Labels: map[string]string{"app": name, "version": version}}})
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{"10." + strconv.Itoa(i/250) + "." + strconv.Itoa(i%250) + "." + strconv.Itoa(k+1)},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)},
				TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "demo", Name: pod},
			})
		}
		in.EndpointSlices = append(in.EndpointSlices, es)
		in.DestinationRules = append(in.DestinationRules, &networkingv1.DestinationRule{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", Generation: 1},
			Spec: networkingapi.DestinationRule{Host: host, Subsets: []*networkingapi.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}},
			}},
		})
		mr := &v1alpha1.MetaRouter{
			TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "MetaRouter"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "demo", Generation: 1},
			Spec:       v1alpha1.MetaRouterSpec{Hosts: []string{host}},
		}
		for j := range 5 {
			mr.Spec.Routes = append(mr.Spec.Routes, v1alpha1.MetaRoute{
				Name:  "route-" + strconv.Itoa(j),
				Match: &v1alpha1.MetaRouteMatch{Attributes: map[string]v1alpha1.StringMatch{"method": {Exact: ptr("method" + strconv.Itoa(j))}}},
				Route: []v1alpha1.MetaRouteDestination{
					{Destination: v1alpha1.Destination{Host: host, Subset: "v1"}, Weight: 100 - weight},
					{Destination: v1alpha1.Destination{Host: host, Subset: "v2"}, Weight: weight},
				},
			})
		}
		in.MetaRouters = append(in.MetaRouters, mr)
	}
	return in
}

func ptr[T any](v T) *T { return &v }

// TestScaleInputs checks that the benchmark's inputs make what they claim, so that the
// benchmark measures the real thing.
func TestScaleInputs(t *testing.T) {
	c := New(Options{})
	c.Sync(scaleInputs(10, 10))
	c.Server().Flush()
	r := c.Server().Resources()
	if len(r.Problems) != 0 {
		t.Fatalf("problems: %+v", r.Problems)
	}
	// Per service: one route configuration (5 routes), clusters and endpoints for all and
	// each subset.
	if len(r.Routes) != 10 || len(r.Clusters) != 30 || len(r.Endpoints) != 30 {
		t.Fatalf("%d routes, %d clusters, %d endpoints", len(r.Routes), len(r.Clusters), len(r.Endpoints))
	}
	for _, rc := range r.Routes {
		if len(rc.Routes) != 5 {
			t.Fatalf("route configuration %s has %d routes", rc.Name, len(rc.Routes))
		}
	}
	for name, cla := range r.Endpoints {
		n := 0
		for _, l := range cla.Endpoints {
			n += len(l.LbEndpoints)
		}
		_, _, subset, _, err := apiv1alpha1.ParseResourceName(name)
		if err != nil {
			t.Fatal(err)
		}
		want := 10
		if subset != "" {
			want = 5 // half the pods are v1, half v2
		}
		if n != want {
			t.Fatalf("%s: %d endpoints, want %d", name, n, want)
		}
	}
}

// BenchmarkSync1000Services: the scale target, 1,000 services x 10 endpoints x 5
// routes: build, translate and apply to the xDS caches (debounce skipped), each iteration
// changing every route configuration. heap-MiB is the live heap after the last iteration.
func BenchmarkSync1000Services(b *testing.B) {
	inputs := [2]*model.Inputs{scaleInputs(1000, 10), scaleInputs(1000, 20)}
	c := New(Options{})
	for i := 0; b.Loop(); i++ {
		c.Sync(inputs[i%2])
		c.Server().Flush()
	}
	b.StopTimer()
	if r := c.Server().Resources(); len(r.Routes) != 1000 || len(r.Clusters) != 3000 || len(r.Problems) != 0 {
		b.Fatalf("%d routes, %d clusters, %d problems", len(r.Routes), len(r.Clusters), len(r.Problems))
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	// What the controller holds: the inputs (a source's caches), the resources and the xDS caches.
	runtime.KeepAlive(c)
	runtime.KeepAlive(inputs)
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
}
