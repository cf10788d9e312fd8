//go:build envtest

package envtest_test

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/anypb"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/source/kube"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/translate"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// pushTimeout is how fast a change must reach an xDS client (the promise).
const pushTimeout = 2 * time.Second

// TestPipeline runs the controller against a real kube-apiserver and etcd and watches its
// output through a real ADS client. The cases share one API server and one controller and
// run in order; the API server restart comes last.
func TestPipeline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := startEnv(t)
	p := startPipeline(t, e)
	ads := dialADS(t, ctx, p.addr)

	t.Run("RoutesWeightsSubsetsDelete", func(t *testing.T) { testRoutes(t, ctx, e, ads) })
	t.Run("InvalidMetaRouter", func(t *testing.T) { testInvalid(t, ctx, e, ads) })
	t.Run("ApplicationProtocolConflict", func(t *testing.T) { testApplicationProtocols(t, ctx, e) })
	t.Run("AerakiMetaRouter", func(t *testing.T) { testAeraki(t, ctx, e, ads) })
	t.Run("Nack", func(t *testing.T) { testNack(t, ctx, e, p) })
	t.Run("NamespaceList", func(t *testing.T) { testNamespaces(t, ctx, e) })
	t.Run("APIServerRestart", func(t *testing.T) { testRestart(t, ctx, e, p, ads) })
}

// weightedClusters returns the weighted clusters of the named route as "cluster=weight".
func weightedClusters(rc *apiv1alpha1.RouteConfiguration, route string) []string {
	for _, r := range rc.GetRoutes() {
		if r.GetName() != route {
			continue
		}
		var out []string
		for _, c := range r.GetRoute().GetWeightedClusters().GetClusters() {
			out = append(out, fmt.Sprintf("%s=%d", c.GetName(), c.GetWeight()))
		}
		return out
	}
	return nil
}

func routeNames(rc *apiv1alpha1.RouteConfiguration) []string {
	var out []string
	for _, r := range rc.GetRoutes() {
		out = append(out, r.GetName())
	}
	return out
}

// addresses are the "ip:port" of a load assignment's endpoints, sorted.
func addresses(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
		}
	}
	slices.Sort(out)
	return out
}

// waitCondition waits until the MetaRouter's status satisfies ok.
func waitStatus(t *testing.T, ctx context.Context, c client.Client, ns, name string, timeout time.Duration, ok func(*v1alpha1.MetaRouter) bool) *v1alpha1.MetaRouter {
	t.Helper()
	mr := &v1alpha1.MetaRouter{}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, mr); err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		return ok(mr), nil
	})
	if err != nil {
		t.Fatalf("MetaRouter %s/%s: status not as expected within %v: %+v", ns, name, timeout, mr.Status)
	}
	return mr
}

func condIs(mr *v1alpha1.MetaRouter, typ string, status metav1.ConditionStatus, reason string) bool {
	c := meta.FindStatusCondition(mr.Status.Conditions, typ)
	return c != nil && c.Status == status && (reason == "" || c.Reason == reason) && c.ObservedGeneration == mr.Generation
}

// testRoutes: Service + EndpointSlice + Pods + DestinationRule + MetaRouter -> routes,
// subsets' endpoints, weight changes and deletion, as a client sees them.
func testRoutes(t *testing.T, ctx context.Context, e *env, ads *adsClient) {
	const ns, svc = "routes", "greeter"
	h := host(svc, ns)
	create(t, ctx, e.c,
		namespace(ns),
		pod(ns, "greeter-a", map[string]string{"app": svc, "version": "v1"}),
		pod(ns, "greeter-b", map[string]string{"app": svc, "version": "v2"}),
		pod(ns, "greeter-c", map[string]string{"app": svc, "version": "v2"}),
		service(ns, svc),
		endpointSlice(ns, svc, []string{"10.1.0.1", "10.1.0.2", "10.1.0.3"}, []string{"greeter-a", "greeter-b", "greeter-c"}),
		destinationRule(ns, svc, "v1", "v2"),
		metaRouter(ns, svc, h, split("split", h, []string{"v1", "v2"}, []int32{80, 20})),
	)
	rn := routeName(svc, ns)
	ads.subscribe(t, apiv1alpha1.RouteConfigurationTypeURL, rn)
	want := []string{clusterName(svc, ns, "v1") + "=80", clusterName(svc, ns, "v2") + "=20"}
	_, v1 := waitFor(t, ads, apiv1alpha1.RouteConfigurationTypeURL, rn, 30*time.Second, func(rc *apiv1alpha1.RouteConfiguration, _ string) bool {
		return slices.Equal(weightedClusters(rc, "split"), want)
	})
	mr := waitStatus(t, ctx, e.c, ns, svc, 10*time.Second, func(mr *v1alpha1.MetaRouter) bool {
		return mr.Status.ObservedGeneration == mr.Generation &&
			condIs(mr, v1alpha1.ConditionAccepted, metav1.ConditionTrue, kube.ReasonAccepted) &&
			condIs(mr, v1alpha1.ConditionResolvedRefs, metav1.ConditionTrue, kube.ReasonResolvedRefs) &&
			// the ADS client accepted the route configuration
			condIs(mr, v1alpha1.ConditionProgrammed, metav1.ConditionTrue, kube.ReasonProgrammed)
	})

	// Subsets: each subset cluster's endpoints are exactly the Pods with its label.
	ads.subscribe(t, apiv1alpha1.EndpointTypeURL, clusterName(svc, ns, "v1"), clusterName(svc, ns, "v2"), clusterName(svc, ns, ""))
	for subset, want := range map[string][]string{
		"v1": {"10.1.0.1:20880"}, "v2": {"10.1.0.2:20880", "10.1.0.3:20880"}, "": {"10.1.0.1:20880", "10.1.0.2:20880", "10.1.0.3:20880"},
	} {
		waitFor(t, ads, apiv1alpha1.EndpointTypeURL, clusterName(svc, ns, subset), 10*time.Second, func(cla *endpointv3.ClusterLoadAssignment, _ string) bool {
			return slices.Equal(addresses(cla), want)
		})
	}
	// Relabelling a Pod (metadata-only watch) moves its endpoint between subsets.
	podC := &metav1.PartialObjectMetadata{}
	podC.SetGroupVersionKind(corev1PodGVK)
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "greeter-c"}, podC); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(podC.DeepCopy())
	podC.Labels["version"] = "v1"
	if err := e.c.Patch(ctx, podC, patch); err != nil {
		t.Fatalf("relabel Pod: %v", err)
	}
	waitFor(t, ads, apiv1alpha1.EndpointTypeURL, clusterName(svc, ns, "v1"), pushTimeout, func(cla *endpointv3.ClusterLoadAssignment, _ string) bool {
		return slices.Equal(addresses(cla), []string{"10.1.0.1:20880", "10.1.0.3:20880"})
	})
	waitFor(t, ads, apiv1alpha1.EndpointTypeURL, clusterName(svc, ns, "v2"), pushTimeout, func(cla *endpointv3.ClusterLoadAssignment, _ string) bool {
		return slices.Equal(addresses(cla), []string{"10.1.0.2:20880"})
	})

	// A weight change is pushed, with a new version, within pushTimeout.
	mr.Spec.Routes[0].Route[0].Weight, mr.Spec.Routes[0].Route[1].Weight = 30, 70
	start := time.Now()
	if err := e.c.Update(ctx, mr); err != nil {
		t.Fatalf("update MetaRouter: %v", err)
	}
	want = []string{clusterName(svc, ns, "v1") + "=30", clusterName(svc, ns, "v2") + "=70"}
	_, v2 := waitFor(t, ads, apiv1alpha1.RouteConfigurationTypeURL, rn, pushTimeout, func(rc *apiv1alpha1.RouteConfiguration, _ string) bool {
		return slices.Equal(weightedClusters(rc, "split"), want)
	})
	t.Logf("weight change served in %v", time.Since(start).Round(time.Millisecond))
	if v2 == v1 {
		t.Errorf("weight change served under the same version %q", v1)
	}
	waitStatus(t, ctx, e.c, ns, svc, 10*time.Second, func(mr *v1alpha1.MetaRouter) bool {
		return mr.Generation == 2 && mr.Status.ObservedGeneration == 2 && condIs(mr, v1alpha1.ConditionAccepted, metav1.ConditionTrue, "")
	})

	// Deleting the MetaRouter leaves the default route only.
	if err := e.c.Delete(ctx, mr); err != nil {
		t.Fatalf("delete MetaRouter: %v", err)
	}
	rc, _ := waitFor(t, ads, apiv1alpha1.RouteConfigurationTypeURL, rn, pushTimeout, func(rc *apiv1alpha1.RouteConfiguration, _ string) bool {
		return len(rc.GetRoutes()) == 1 && weightedClusters(rc, "split") == nil
	})
	if c := rc.GetRoutes()[0].GetRoute().GetCluster(); c != clusterName(svc, ns, "") {
		t.Errorf("default route goes to %q, want %q", c, clusterName(svc, ns, ""))
	}
}

// testInvalid: what CEL rejects never reaches the controller; what it cannot check (a
// destination that does not exist) is reported in the status.
func testInvalid(t *testing.T, ctx context.Context, e *env, ads *adsClient) {
	const ns, svc = "invalid", "greeter"
	h := host(svc, ns)
	create(t, ctx, e.c, namespace(ns), service(ns, svc), endpointSlice(ns, svc, []string{"10.2.0.1"}, nil))

	bad := metaRouter(ns, "bad-weights", h, split("split", h, []string{"v1", "v2"}, []int32{50, 40}))
	err := e.c.Create(ctx, bad)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "weights must sum to 100") {
		t.Errorf("create MetaRouter with weights summing to 90: err = %v, want Invalid: weights must sum to 100", err)
	}
	badMatch := metaRouter(ns, "bad-match", h, v1alpha1.MetaRoute{
		Name:  "two-matchers",
		Match: &v1alpha1.MetaRouteMatch{Attributes: map[string]v1alpha1.StringMatch{"method": {Exact: strPtr("a"), Prefix: strPtr("b")}}},
		Route: []v1alpha1.MetaRouteDestination{{Destination: v1alpha1.Destination{Host: h}}},
	})
	err = e.c.Create(ctx, badMatch)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "exactly one of exact, prefix, regex and present must be set") {
		t.Errorf("create MetaRouter with exact and prefix: err = %v, want Invalid: exactly one of ...", err)
	}

	dangling := metaRouter(ns, "dangling", h, v1alpha1.MetaRoute{
		Name:  "nowhere",
		Route: []v1alpha1.MetaRouteDestination{{Destination: v1alpha1.Destination{Host: host("nowhere", ns)}}},
	})
	create(t, ctx, e.c, dangling)
	mr := waitStatus(t, ctx, e.c, ns, "dangling", 10*time.Second, func(mr *v1alpha1.MetaRouter) bool {
		c := meta.FindStatusCondition(mr.Status.Conditions, v1alpha1.ConditionResolvedRefs)
		return mr.Status.ObservedGeneration == mr.Generation && c != nil && c.Status == metav1.ConditionFalse
	})
	c := meta.FindStatusCondition(mr.Status.Conditions, v1alpha1.ConditionResolvedRefs)
	if c.Reason == "" || c.Reason == kube.ReasonResolvedRefs || !strings.Contains(c.Message, "nowhere") {
		t.Errorf("ResolvedRefs = %+v, want a reason and a message naming the missing host", c)
	}
	if mr.Status.ObservedGeneration != 1 {
		t.Errorf("observedGeneration = %d, want 1", mr.Status.ObservedGeneration)
	}
	// The service is still served, with the route that could not be resolved left out.
	ads.subscribe(t, apiv1alpha1.RouteConfigurationTypeURL, routeName(svc, ns))
	waitFor(t, ads, apiv1alpha1.RouteConfigurationTypeURL, routeName(svc, ns), 10*time.Second, func(rc *apiv1alpha1.RouteConfiguration, _ string) bool {
		return !slices.Contains(routeNames(rc), "nowhere")
	})

	// A status write does not move lastTransitionTime unless the condition flips: read it
	// again after another change of the object set.
	ltt := c.LastTransitionTime
	create(t, ctx, e.c, pod(ns, "unrelated", map[string]string{"app": "other"}))
	time.Sleep(500 * time.Millisecond)
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(dangling), mr); err != nil {
		t.Fatal(err)
	}
	if c2 := meta.FindStatusCondition(mr.Status.Conditions, v1alpha1.ConditionResolvedRefs); c2 == nil || !c2.LastTransitionTime.Equal(&ltt) {
		t.Errorf("ResolvedRefs lastTransitionTime moved without a change: %v -> %+v", ltt, c2)
	}
}

func strPtr(s string) *string { return &s }

// testApplicationProtocols: of two ApplicationProtocols declaring the same protocol, the
// younger is not accepted, and its status says why.
func testApplicationProtocols(t *testing.T, ctx context.Context, e *env) {
	const ns = "protocols"
	ap := func(name string) *v1alpha1.ApplicationProtocol {
		return &v1alpha1.ApplicationProtocol{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       v1alpha1.ApplicationProtocolSpec{Protocol: "myproto", Codec: "dubbo"},
		}
	}
	// Names break creation-time ties: a-first is the older either way.
	create(t, ctx, e.c, namespace(ns), ap("a-first"), ap("b-second"))
	got := &v1alpha1.ApplicationProtocol{}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "b-second"}, got); err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAccepted)
		return got.Status.ObservedGeneration == got.Generation && c != nil && c.Status == metav1.ConditionFalse, nil
	})
	if err != nil {
		t.Fatalf("ApplicationProtocol b-second: no Accepted=False within 10s: %+v", got.Status)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionAccepted); c.Reason != "Conflicted" || !strings.Contains(c.Message, "a-first") {
		t.Errorf("Accepted = %+v, want reason Conflicted naming a-first", c)
	}
	// The older one is in effect: Accepted and Programmed True (an ApplicationProtocol has
	// nothing to program into a client beyond being accepted).
	first := &v1alpha1.ApplicationProtocol{}
	err = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "a-first"}, first); err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		return first.Status.ObservedGeneration == first.Generation &&
			meta.IsStatusConditionTrue(first.Status.Conditions, v1alpha1.ConditionAccepted) &&
			meta.IsStatusConditionTrue(first.Status.Conditions, v1alpha1.ConditionProgrammed), nil
	})
	if err != nil {
		t.Fatalf("ApplicationProtocol a-first: not Accepted and Programmed within 10s: %+v", first.Status)
	}
}

// testAeraki: the Aeraki MetaRouter CRD is installed after the controller started; its
// MetaRouters are then routed like ours, and their status is left alone.
func testAeraki(t *testing.T, ctx context.Context, e *env, ads *adsClient) {
	const ns, svc = "aeraki", "greeter"
	h := host(svc, ns)
	create(t, ctx, e.c, namespace(ns), service(ns, svc), endpointSlice(ns, svc, []string{"10.3.0.1"}, nil))
	installAerakiCRD(t, ctx, e)

	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kube.AerakiGroupVersion.String(),
		"kind":       "MetaRouter",
		"metadata":   map[string]any{"namespace": ns, "name": svc},
		"spec": map[string]any{
			"hosts": []any{h},
			"routes": []any{map[string]any{
				"name":  "aeraki-route",
				"match": map[string]any{"attributes": map[string]any{"method": map[string]any{"exact": "sayHello"}}},
				"route": []any{map[string]any{"destination": map[string]any{"host": h}}},
			}},
		},
	}}
	if err := e.c.Create(ctx, u); err != nil {
		t.Fatalf("create Aeraki MetaRouter: %v", err)
	}
	// Aeraki (through Istio's status manager) writes statuses in Istio's shape, with int64s
	// as strings; the source must route the MetaRouter all the same.
	aerakiStatus := map[string]any{
		"observedGeneration": "1",
		"conditions": []any{map[string]any{
			"type": "Reconciled", "status": "True", "lastProbeTime": "2026-01-02T03:04:05Z",
		}},
	}
	u.Object["status"] = aerakiStatus
	if err := e.c.Status().Update(ctx, u); err != nil {
		t.Fatalf("write an Istio-style status on the Aeraki MetaRouter: %v", err)
	}
	rn := routeName(svc, ns)
	ads.subscribe(t, apiv1alpha1.RouteConfigurationTypeURL, rn)
	waitFor(t, ads, apiv1alpha1.RouteConfigurationTypeURL, rn, 20*time.Second, func(rc *apiv1alpha1.RouteConfiguration, _ string) bool {
		return slices.Contains(routeNames(rc), "aeraki-route")
	})
	// A spec change made after that status was written is served too.
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(u), u); err != nil {
		t.Fatal(err)
	}
	routes, _, _ := unstructured.NestedSlice(u.Object, "spec", "routes")
	routes[0].(map[string]any)["name"] = "aeraki-route-2"
	if err := unstructured.SetNestedSlice(u.Object, routes, "spec", "routes"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Update(ctx, u); err != nil {
		t.Fatalf("update Aeraki MetaRouter: %v", err)
	}
	waitFor(t, ads, apiv1alpha1.RouteConfigurationTypeURL, rn, pushTimeout, func(rc *apiv1alpha1.RouteConfiguration, _ string) bool {
		return slices.Contains(routeNames(rc), "aeraki-route-2")
	})
	// Give the status writer the time it takes to write ours, then check it wrote nothing.
	time.Sleep(time.Second)
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(kube.AerakiGroupVersion.WithKind("MetaRouter"))
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(u), got); err != nil {
		t.Fatal(err)
	}
	if st := got.Object["status"]; !reflect.DeepEqual(st, aerakiStatus) {
		t.Errorf("Aeraki MetaRouter status = %v, want it untouched: %v", st, aerakiStatus)
	}
	for _, mf := range got.GetManagedFields() {
		if mf.Manager == kube.FieldManager {
			t.Errorf("Aeraki MetaRouter has fields managed by %s: %v", kube.FieldManager, mf)
		}
	}
	// The MetaRouter of our group with the same name and namespace is a different object.
	ours := &v1alpha1.MetaRouter{}
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(u), ours); !apierrors.IsNotFound(err) {
		t.Errorf("get metaprotocol.meltemi.io MetaRouter %s/%s: err = %v, want NotFound", ns, svc, err)
	}

	// When the CRD goes away, so do its MetaRouters' routes.
	crd := &apiextensionsv1.CustomResourceDefinition{}
	crd.Name = "metarouters." + kube.AerakiGroupVersion.Group
	if err := e.c.Delete(ctx, crd); err != nil {
		t.Fatalf("delete the Aeraki MetaRouter CRD: %v", err)
	}
	waitFor(t, ads, apiv1alpha1.RouteConfigurationTypeURL, rn, 20*time.Second, func(rc *apiv1alpha1.RouteConfiguration, _ string) bool {
		return slices.Equal(routeNames(rc), []string{translate.DefaultRouteName})
	})
}

// testNamespaces: a Source restricted to a namespace list sees the objects of those
// namespaces only, Pods as metadata.
func testNamespaces(t *testing.T, ctx context.Context, e *env) {
	ctx, cancel := context.WithCancel(ctx)
	snapshots := make(chan *model.Inputs, 1)
	src := &kube.Source{Config: e.cfg, Namespaces: []string{"routes", "nack"}}
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, func(in *model.Inputs) {
			select {
			case snapshots <- in:
			default:
			}
		})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Source.Run: %v", err)
		}
	}()
	var in *model.Inputs
	select {
	case in = <-snapshots:
	case <-time.After(20 * time.Second):
		t.Fatal("no snapshot from a namespace-restricted Source within 20s")
	}
	nsOf := func(objs []metav1.Object) []string {
		var out []string
		for _, o := range objs {
			out = append(out, o.GetNamespace()+"/"+o.GetName())
		}
		slices.Sort(out)
		return out
	}
	var svcs, pods, mrs []metav1.Object
	for _, s := range in.Services {
		svcs = append(svcs, s)
	}
	for _, p := range in.Pods {
		pods = append(pods, p)
	}
	for _, m := range in.MetaRouters {
		mrs = append(mrs, m)
	}
	if got, want := nsOf(svcs), []string{"nack/greeter", "routes/greeter"}; !slices.Equal(got, want) {
		t.Errorf("Services = %v, want %v", got, want)
	}
	if got, want := nsOf(pods), []string{"routes/greeter-a", "routes/greeter-b", "routes/greeter-c"}; !slices.Equal(got, want) {
		t.Errorf("Pods = %v, want %v", got, want)
	}
	if got, want := nsOf(mrs), []string{"nack/greeter"}; !slices.Equal(got, want) {
		t.Errorf("MetaRouters = %v, want %v", got, want)
	}
	for _, p := range in.Pods {
		if p.Labels["app"] != "greeter" || len(p.ManagedFields) != 0 {
			t.Errorf("Pod %s: labels %v, %d managedFields; want its labels and no managedFields", p.Name, p.Labels, len(p.ManagedFields))
		}
	}
	if len(in.DestinationRules) != 1 || in.DestinationRules[0].Namespace != "routes" {
		t.Errorf("DestinationRules: %d, want the one in routes", len(in.DestinationRules))
	}
}

// testNack: a client that rejects a route configuration makes the MetaRouter behind it
// Programmed=False, reason Rejected, with the client's message.
func testNack(t *testing.T, ctx context.Context, e *env, p *pipeline) {
	const ns, svc = "nack", "greeter"
	h := host(svc, ns)
	create(t, ctx, e.c, namespace(ns), service(ns, svc), endpointSlice(ns, svc, []string{"10.4.0.1"}, nil),
		metaRouter(ns, svc, h, v1alpha1.MetaRoute{Name: "reject-me", Route: []v1alpha1.MetaRouteDestination{{Destination: v1alpha1.Destination{Host: h}}}}))

	// A client of its own, so that the other cases' client keeps accepting everything.
	ads := dialADS(t, ctx, p.addr)
	const msg = "route reject-me: not supported by this client"
	ads.setNack(func(typeURL, _ string, res *anypb.Any) string {
		rc := &apiv1alpha1.RouteConfiguration{}
		if typeURL != apiv1alpha1.RouteConfigurationTypeURL || res.UnmarshalTo(rc) != nil {
			return ""
		}
		if slices.Contains(routeNames(rc), "reject-me") {
			return msg
		}
		return ""
	})
	ads.subscribe(t, apiv1alpha1.RouteConfigurationTypeURL, routeName(svc, ns))
	mr := waitStatus(t, ctx, e.c, ns, svc, 20*time.Second, func(mr *v1alpha1.MetaRouter) bool {
		return condIs(mr, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, kube.ReasonRejected)
	})
	if c := meta.FindStatusCondition(mr.Status.Conditions, v1alpha1.ConditionProgrammed); !strings.Contains(c.Message, msg) {
		t.Errorf("Programmed message = %q, want it to hold %q", c.Message, msg)
	}
}

// testRestart: the API server goes away and comes back on the same etcd; the controller
// re-lists and serves a change made after the restart.
func testRestart(t *testing.T, ctx context.Context, e *env, p *pipeline, ads *adsClient) {
	const ns, svc = "restart", "greeter"
	h := host(svc, ns)
	route := func(name string) v1alpha1.MetaRoute {
		return v1alpha1.MetaRoute{Name: name, Route: []v1alpha1.MetaRouteDestination{{Destination: v1alpha1.Destination{Host: h}}}}
	}
	create(t, ctx, e.c, namespace(ns), service(ns, svc), endpointSlice(ns, svc, []string{"10.5.0.1"}, nil), metaRouter(ns, svc, h, route("before")))
	rn := routeName(svc, ns)
	ads.subscribe(t, apiv1alpha1.RouteConfigurationTypeURL, rn)
	waitFor(t, ads, apiv1alpha1.RouteConfigurationTypeURL, rn, 10*time.Second, func(rc *apiv1alpha1.RouteConfiguration, _ string) bool {
		return slices.Contains(routeNames(rc), "before")
	})

	apiserver := e.te.ControlPlane.GetAPIServer()
	stopped := time.Now()
	// Stop sends SIGTERM and, if the API server has not exited after StopTimeout, SIGKILL;
	// it then reports the timeout, which is no failure here.
	if err := apiserver.Stop(); err != nil && !strings.Contains(err.Error(), "timeout waiting for process") {
		t.Fatalf("stop kube-apiserver: %v", err)
	}
	time.Sleep(2 * time.Second) // long enough for the watches to fail
	if err := apiserver.Start(); err != nil {
		t.Fatalf("restart kube-apiserver: %v", err)
	}
	t.Logf("kube-apiserver stopped and restarted in %v", time.Since(stopped).Round(time.Millisecond))

	// Once the informers reach the API server again they re-list (each at its own backoff),
	// and the source hands the controller a fresh snapshot.
	before := p.syncs()
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		return p.syncs() > before, nil
	}); err != nil {
		t.Errorf("no snapshot after the restart within 60s (%d syncs)", before)
	}
	t.Logf("resynced %v after the restart began", time.Since(stopped).Round(time.Millisecond))

	mr := &v1alpha1.MetaRouter{}
	if err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: svc}, mr); err != nil {
			return false, nil //nolint:nilerr // the API server may not be ready yet
		}
		mr.Spec.Routes = []v1alpha1.MetaRoute{route("after")}
		return e.c.Update(ctx, mr) == nil, nil
	}); err != nil {
		t.Fatalf("update MetaRouter after the restart: %v", err)
	}
	t.Logf("MetaRouter updated %v after the restart began", time.Since(stopped).Round(time.Millisecond))
	start := time.Now()
	waitFor(t, ads, apiv1alpha1.RouteConfigurationTypeURL, rn, 60*time.Second, func(rc *apiv1alpha1.RouteConfiguration, _ string) bool {
		return slices.Equal(routeNames(rc), []string{"after"}) || slices.Contains(routeNames(rc), "after") && !slices.Contains(routeNames(rc), "before")
	})
	t.Logf("change after the restart served in %v", time.Since(start).Round(time.Millisecond))
	waitStatus(t, ctx, e.c, ns, svc, 10*time.Second, func(mr *v1alpha1.MetaRouter) bool {
		return mr.Status.ObservedGeneration == mr.Generation && mr.Generation == 2
	})
}
