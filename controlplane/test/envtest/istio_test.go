//go:build envtest

package envtest_test

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	networkingapi "istio.io/api/networking/v1alpha3"
	istionetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/controller"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/envoyfilter"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/istio"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/source/kube"
)

// Lease timings of the replicas under test: short, so that a takeover is quick.
const (
	testLeaseDuration = 3 * time.Second
	testRenewDeadline = 2 * time.Second
	testRetryPeriod   = 250 * time.Millisecond
)

// replica is one controller replica in Istio mode, wired as meltemi-controller wires it:
// kube Source -> controller (xDS) -> OnSync -> istio.Writer, status through a StatusWriter
// that lists the EnvoyFilters, writers and status only while it holds the Lease.
type replica struct {
	name string
	// cut, once set, fails every request of the replica to the API server: a replica that
	// crashed or lost the network, and so cannot release its Lease.
	cut     atomic.Bool
	leader  *istio.Leader
	reg     *prometheus.Registry
	reports atomic.Int64 // status reports that reached the StatusWriter
	cancel  context.CancelFunc
	done    chan struct{}
}

// countingSink counts the reports passed to the StatusWriter.
type countingSink struct {
	sink controller.StatusSink
	n    *atomic.Int64
}

func (s countingSink) Report(ctx context.Context, st []controller.ObjectStatus) {
	s.n.Add(1)
	s.sink.Report(ctx, st)
}

func startReplica(t *testing.T, e *env, name string) *replica {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})).With("replica", name)
	r := &replica{name: name, reg: prometheus.NewRegistry(), cancel: cancel, done: make(chan struct{})}
	cfg := rest.CopyConfig(e.cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			if r.cut.Load() {
				return nil, errors.New("cut off from the API server")
			}
			return rt.RoundTrip(req)
		})
	})

	src := &kube.Source{Config: cfg, Log: log.With("component", "source"), DiscoveryInterval: time.Second}
	sw, err := kube.NewStatusWriter(cfg, src.Reader(), log.With("component", "status"))
	if err != nil {
		t.Fatal(err)
	}
	wc, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ctrl *controller.Controller
	w := istio.NewWriter(istio.WriterOptions{
		Client: wc,
		Generate: func(m *model.Model) *istio.Desired {
			res := envoyfilter.Generate(m, envoyfilter.Options{Inbound: true})
			return &istio.Desired{Filters: res.Filters, Origins: res.Origins, Problems: res.Problems}
		},
		VIPRange:   netip.MustParsePrefix(istio.DefaultVIPRange),
		Debounce:   200 * time.Millisecond,
		OnWritten:  func() { ctrl.RefreshStatus() },
		Log:        log.With("component", "istio"),
		Registerer: r.reg,
	})
	sw.EnvoyFilters = w.EnvoyFilters
	r.leader = istio.NewLeader(istio.LeaderOptions{
		Config: cfg, Namespace: "meltemi-system", Identity: name,
		LeaseDuration: testLeaseDuration, RenewDeadline: testRenewDeadline, RetryPeriod: testRetryPeriod,
		Log: log.With("component", "leader"),
	})
	ctrl = controller.New(controller.Options{
		Sink: &istio.LeaderOnlySink{
			Sink:    countingSink{sink: &istio.ProblemsSink{Sink: sw, Problems: w.Problems}, n: &r.reports},
			Leading: r.leader.Leading,
		},
		Logger: log.With("component", "controller"),
		OnSync: w.Update,
	})
	errc := make(chan error, 3)
	go func() { errc <- ctrl.Run(ctx) }()
	go func() { errc <- src.Run(ctx, ctrl.Sync) }()
	go func() {
		errc <- r.leader.Run(ctx, func(lctx context.Context) {
			ctrl.RefreshStatus()
			_ = w.Run(lctx)
		})
	}()
	go func() {
		defer close(r.done)
		for range 3 {
			if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("replica %s: %v", name, err)
			}
		}
	}()
	t.Cleanup(r.stop)
	return r
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func (r *replica) stop() {
	r.cancel()
	<-r.done
}

// metric is the value of a counter or gauge of the replica's writer.
func (r *replica) metric(t *testing.T, name string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("replica %s has no metric %s", r.name, name)
	return 0
}

// writes is everything the replica's writer wrote: EnvoyFilter applies and deletes, VIPs.
func (r *replica) writes(t *testing.T) float64 {
	return r.metric(t, "meltemi_istio_envoyfilter_applies_total") +
		r.metric(t, "meltemi_istio_envoyfilter_deletes_total") +
		r.metric(t, "meltemi_istio_vip_applies_total")
}

// managedFilters are the EnvoyFilters labelled managed-by meltemi-controller, by
// "namespace/name".
func managedFilters(ctx context.Context, c client.Client) (map[string]*unstructured.Unstructured, error) {
	l := &unstructured.UnstructuredList{}
	l.SetGroupVersionKind(istio.EnvoyFilterGVK.GroupVersion().WithKind("EnvoyFilterList"))
	if err := c.List(ctx, l, client.MatchingLabels{istio.LabelManagedBy: istio.ManagedBy}); err != nil {
		return nil, err
	}
	out := map[string]*unstructured.Unstructured{}
	for i := range l.Items {
		out[l.Items[i].GetNamespace()+"/"+l.Items[i].GetName()] = &l.Items[i]
	}
	return out, nil
}

// waitFilters waits until the managed EnvoyFilters satisfy ok, and returns them.
func waitFilters(t *testing.T, ctx context.Context, c client.Client, timeout time.Duration, what string, ok func(map[string]*unstructured.Unstructured) bool) map[string]*unstructured.Unstructured {
	t.Helper()
	var last map[string]*unstructured.Unstructured
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		fs, err := managedFilters(ctx, c)
		if err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		last = fs
		return ok(fs), nil
	})
	if err != nil {
		t.Fatalf("EnvoyFilters: not %s within %v; have %v", what, timeout, slices.Sorted(mapsKeys(last)))
	}
	return last
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// listenerNames are the listener names the filter's patches match.
func listenerNames(u *unstructured.Unstructured) []string {
	patches, _, _ := unstructured.NestedSlice(u.Object, "spec", "configPatches")
	var out []string
	for _, p := range patches {
		if n, ok, _ := unstructured.NestedString(p.(map[string]any), "match", "listener", "name"); ok {
			out = append(out, n)
		}
	}
	return out
}

func filterKey(ns, kind, hostname string) string {
	return ns + "/meltemi-" + kind + "-" + hostname
}

func serviceEntry(ns, name, host string) *istionetworkingv1.ServiceEntry {
	se := &istionetworkingv1.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	se.Spec.Hosts = []string{host}
	se.Spec.Ports = []*networkingapi.ServicePort{{Number: dubboPort, Name: "tcp-dubbo", Protocol: "TCP"}}
	se.Spec.Resolution = networkingapi.ServiceEntry_STATIC
	se.Spec.Location = networkingapi.ServiceEntry_MESH_INTERNAL
	se.Spec.Endpoints = []*networkingapi.WorkloadEntry{{Address: "10.3.0.1"}}
	return se
}

// TestIstioMode runs two replicas in Istio mode against one API server: the leader writes
// the EnvoyFilters (created, updated, garbage-collected), ServiceEntry VIPs and the
// MetaRouter's status.envoyFilters; the follower writes nothing; when the leader stops the
// follower takes over within the lease duration, writes, and keeps the VIPs.
func TestIstioMode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	e := startEnv(t)
	const ns = "ist"
	create(t, ctx, e.c, namespace(ns), namespace("istio-system"), namespace("meltemi-system"))

	a := startReplica(t, e, "replica-a")
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return a.leader.Leading(), nil
	}); err != nil {
		t.Fatal("replica-a never led")
	}
	b := startReplica(t, e, "replica-b")

	// Create: Service + MetaRouter -> outbound filter (root namespace: exported to all),
	// inbound filter and plainText cluster, labelled, selecting the plugin's sidecars.
	const svc = "greeter"
	h := host(svc, ns)
	create(t, ctx, e.c,
		service(ns, svc),
		endpointSlice(ns, svc, []string{"10.1.0.1"}, []string{""}),
		metaRouter(ns, svc, h, toHost(h)),
	)
	k8sSvc := &corev1.Service{}
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: ns, Name: svc}, k8sSvc); err != nil {
		t.Fatal(err)
	}
	clusterIP := k8sSvc.Spec.ClusterIP
	out, in := filterKey("istio-system", "outbound", h), filterKey(ns, "inbound", h)
	fs := waitFilters(t, ctx, e.c, 20*time.Second, "created", func(fs map[string]*unstructured.Unstructured) bool {
		return fs[out] != nil && fs[in] != nil && fs["istio-system/"+envoyfilter.PlainTextFilterName] != nil && fs[ns+"/"+envoyfilter.PlainTextFilterName] != nil
	})
	for key, f := range fs {
		if got := f.GetLabels()[envoyfilter.LabelOwner]; got == "" {
			t.Errorf("%s: no %s label", key, envoyfilter.LabelOwner)
		}
		sel, _, _ := unstructured.NestedStringMap(f.Object, "spec", "workloadSelector", "labels")
		if len(sel) != 1 || sel[envoyfilter.DefaultWorkloadLabel] != envoyfilter.DefaultWorkloadValue {
			t.Errorf("%s: workloadSelector %v; want %s=%s", key, sel, envoyfilter.DefaultWorkloadLabel, envoyfilter.DefaultWorkloadValue)
		}
		var applied bool
		for _, mf := range f.GetManagedFields() {
			if mf.Manager == istio.FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply {
				applied = true
			}
		}
		if !applied {
			t.Errorf("%s: not server-side applied by %s: %+v", key, istio.FieldManager, f.GetManagedFields())
		}
	}
	if got, want := listenerNames(fs[out]), []string{clusterIP + "_20880"}; !slices.Equal(got, want) {
		t.Errorf("outbound listeners %v; want %v", got, want)
	}
	waitStatus(t, ctx, e.c, ns, svc, 10*time.Second, func(mr *v1alpha1.MetaRouter) bool {
		// The inbound filter belongs to the Service only: the MetaRouter routes clients.
		return slices.Contains(mr.Status.EnvoyFilters, out) && !slices.Contains(mr.Status.EnvoyFilters, in)
	})
	// An unchanged model rewrites nothing.
	applies := a.metric(t, "meltemi_istio_envoyfilter_applies_total")
	time.Sleep(time.Second)
	if now := a.metric(t, "meltemi_istio_envoyfilter_applies_total"); now != applies {
		t.Errorf("EnvoyFilter applies went from %v to %v without a change", applies, now)
	}

	// Update: a port change moves the outbound listener.
	k8sSvc.Spec.Ports[0].Port = 20881
	if err := e.c.Update(ctx, k8sSvc); err != nil {
		t.Fatal(err)
	}
	waitFilters(t, ctx, e.c, 10*time.Second, "updated to port 20881", func(fs map[string]*unstructured.Unstructured) bool {
		return fs[out] != nil && slices.Equal(listenerNames(fs[out]), []string{clusterIP + "_20881"})
	})

	// A stray managed filter is deleted; a user's filter without the label is left alone.
	stray, user := &unstructured.Unstructured{}, &unstructured.Unstructured{}
	for _, u := range []*unstructured.Unstructured{stray, user} {
		u.SetGroupVersionKind(istio.EnvoyFilterGVK)
		u.SetNamespace(ns)
		u.Object["spec"] = map[string]any{"workloadSelector": map[string]any{"labels": map[string]any{"app": "x"}}}
	}
	stray.SetName("stray")
	stray.SetLabels(map[string]string{istio.LabelManagedBy: istio.ManagedBy})
	user.SetName("users-own")
	create(t, ctx, e.c, stray, user)
	// The writer only runs on changes: one makes it look (a new ServiceEntry, below, too).
	se := serviceEntry(ns, "external", "dubbo.example.com")
	create(t, ctx, e.c, se)
	waitFilters(t, ctx, e.c, 10*time.Second, "without the stray", func(fs map[string]*unstructured.Unstructured) bool {
		return fs[ns+"/stray"] == nil
	})
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(user), user); err != nil {
		t.Errorf("the user's EnvoyFilter: %v", err)
	}

	// A write that fails is retried with backoff, without a further change: a service
	// exported to a namespace that does not exist yet gets its filter once it does.
	const late = "late"
	lateSvc := service(ns, late)
	lateSvc.Annotations = map[string]string{"networking.istio.io/exportTo": "late-ns"}
	errs := a.metric(t, "meltemi_istio_write_errors_total")
	create(t, ctx, e.c, lateSvc)
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return a.metric(t, "meltemi_istio_write_errors_total") >= errs+2, nil
	}); err != nil {
		t.Fatal("applying into a missing namespace failed fewer than twice")
	}
	create(t, ctx, e.c, namespace("late-ns"))
	waitFilters(t, ctx, e.c, 10*time.Second, "written on retry", func(fs map[string]*unstructured.Unstructured) bool {
		return fs[filterKey("late-ns", "outbound", host(late, ns))] != nil
	})

	// A ServiceEntry without addresses gets a VIP, and a filter on it.
	var vip string
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(se), se); err != nil {
			return false, nil //nolint:nilerr // retried until the timeout
		}
		vip = se.Annotations[model.AnnotationVIP]
		return vip != "" && slices.Equal(se.Spec.Addresses, []string{vip}), nil
	}); err != nil {
		t.Fatalf("ServiceEntry: no VIP written: annotations %v, addresses %v", se.Annotations, se.Spec.Addresses)
	}
	if !netip.MustParsePrefix(istio.DefaultVIPRange).Contains(netip.MustParseAddr(vip)) {
		t.Errorf("VIP %s outside %s", vip, istio.DefaultVIPRange)
	}
	seOut := filterKey("istio-system", "outbound", "dubbo.example.com")
	waitFilters(t, ctx, e.c, 10*time.Second, "on the VIP", func(fs map[string]*unstructured.Unstructured) bool {
		return fs[seOut] != nil && slices.Equal(listenerNames(fs[seOut]), []string{vip + "_20880"})
	})

	// Delete the Service: its filters are garbage-collected, the MetaRouter's status
	// forgets them.
	if err := e.c.Delete(ctx, k8sSvc); err != nil {
		t.Fatal(err)
	}
	waitFilters(t, ctx, e.c, 10*time.Second, "collected", func(fs map[string]*unstructured.Unstructured) bool {
		return fs[out] == nil && fs[in] == nil && fs[seOut] != nil
	})
	waitStatus(t, ctx, e.c, ns, svc, 10*time.Second, func(mr *v1alpha1.MetaRouter) bool {
		return !slices.Contains(mr.Status.EnvoyFilters, out)
	})

	// The follower wrote nothing.
	if b.leader.Leading() {
		t.Fatal("both replicas lead")
	}
	if w := b.writes(t); w != 0 || b.reports.Load() != 0 {
		t.Errorf("follower wrote %v objects and %d status reports", w, b.reports.Load())
	}
	if w := a.writes(t); w == 0 {
		t.Error("leader wrote nothing")
	}

	// The leader stops: the follower leads within the lease duration, and writes.
	start := time.Now()
	a.stop()
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, testLeaseDuration+testRetryPeriod, true, func(context.Context) (bool, error) {
		return b.leader.Leading(), nil
	}); err != nil {
		t.Fatalf("replica-b did not take over within %v", testLeaseDuration+testRetryPeriod)
	}
	t.Logf("takeover in %v", time.Since(start).Round(time.Millisecond))
	const svc2 = "second"
	h2 := host(svc2, ns)
	create(t, ctx, e.c, service(ns, svc2), metaRouter(ns, svc2, h2, toHost(h2)))
	waitFilters(t, ctx, e.c, 10*time.Second, "written by the new leader", func(fs map[string]*unstructured.Unstructured) bool {
		return fs[filterKey("istio-system", "outbound", h2)] != nil
	})
	waitStatus(t, ctx, e.c, ns, svc2, 10*time.Second, func(mr *v1alpha1.MetaRouter) bool {
		return slices.Contains(mr.Status.EnvoyFilters, filterKey("istio-system", "outbound", h2))
	})
	if b.metric(t, "meltemi_istio_envoyfilter_applies_total") == 0 || b.reports.Load() == 0 {
		t.Errorf("new leader: %v applies, %d status reports", b.metric(t, "meltemi_istio_envoyfilter_applies_total"), b.reports.Load())
	}
	// A MetaRouter whose exportTo shares no namespace with its service's gets no filter and
	// says why: Programmed False, NotExported.
	const svc4 = "hidden"
	h4 := host(svc4, ns)
	hidden := service(ns, svc4)
	hidden.Annotations = map[string]string{"networking.istio.io/exportTo": "."}
	mr4 := metaRouter(ns, svc4, h4, toHost(h4))
	mr4.Spec.ExportTo = []string{"elsewhere"}
	create(t, ctx, e.c, hidden, mr4)
	waitStatus(t, ctx, e.c, ns, svc4, 10*time.Second, func(mr *v1alpha1.MetaRouter) bool {
		return condIs(mr, v1alpha1.ConditionProgrammed, metav1.ConditionFalse, envoyfilter.ReasonNotExported)
	})

	// The VIP survived the change of controller: kept, not rewritten.
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(se), se); err != nil {
		t.Fatal(err)
	}
	if got := se.Annotations[model.AnnotationVIP]; got != vip || !slices.Equal(se.Spec.Addresses, []string{vip}) {
		t.Errorf("VIP %s became annotation %q, addresses %v", vip, got, se.Spec.Addresses)
	}
	if n := b.metric(t, "meltemi_istio_vip_applies_total"); n != 0 {
		t.Errorf("new leader rewrote %v VIPs", n)
	}
	// The lease names the new leader.
	lease := &unstructured.Unstructured{}
	lease.SetAPIVersion("coordination.k8s.io/v1")
	lease.SetKind("Lease")
	if err := e.c.Get(ctx, client.ObjectKey{Namespace: "meltemi-system", Name: istio.LeaseName}, lease); err != nil {
		t.Fatal(err)
	}
	if holder, _, _ := unstructured.NestedString(lease.Object, "spec", "holderIdentity"); holder != "replica-b" {
		t.Errorf("Lease held by %q", holder)
	}

	// A leader that crashes (cut off: it cannot release the Lease) stops leading within
	// its renew deadline, and a follower takes over once the Lease expires.
	c := startReplica(t, e, "replica-c")
	time.Sleep(2 * testRetryPeriod) // c is a candidate
	start = time.Now()
	b.cut.Store(true)
	// The follower sees the Lease expire LeaseDuration after it last saw it renewed, which
	// is up to a (jittered) retry period after the renewal; then it acquires at its next try.
	crashBound := testLeaseDuration + 4*testRetryPeriod + 2*time.Second
	if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, crashBound, true, func(context.Context) (bool, error) {
		return c.leader.Leading(), nil
	}); err != nil {
		t.Fatalf("replica-c did not take over from a crashed leader within %v", crashBound)
	}
	t.Logf("takeover from a crashed leader in %v", time.Since(start).Round(time.Millisecond))
	if b.leader.Leading() {
		t.Error("the crashed leader still thinks it leads after the Lease expired")
	}
	const svc3 = "third"
	h3 := host(svc3, ns)
	create(t, ctx, e.c, service(ns, svc3))
	waitFilters(t, ctx, e.c, 10*time.Second, "written by the third leader", func(fs map[string]*unstructured.Unstructured) bool {
		return fs[filterKey("istio-system", "outbound", h3)] != nil
	})
	if c.metric(t, "meltemi_istio_envoyfilter_applies_total") == 0 {
		t.Error("replica-c leads but applied nothing")
	}

	// A VIP change: the ServiceEntry's owner sets an address of their own. The filter moves
	// to it, and the controller leaves it alone (no VIP written over it).
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(se), se); err != nil {
		t.Fatal(err)
	}
	se.Spec.Addresses = []string{"240.0.0.9"}
	if err := e.c.Update(ctx, se); err != nil {
		t.Fatal(err)
	}
	waitFilters(t, ctx, e.c, 10*time.Second, "moved to the owner's address", func(fs map[string]*unstructured.Unstructured) bool {
		return fs[seOut] != nil && slices.Equal(listenerNames(fs[seOut]), []string{"240.0.0.9_20880"})
	})
	if err := e.c.Get(ctx, client.ObjectKeyFromObject(se), se); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(se.Spec.Addresses, []string{"240.0.0.9"}) {
		t.Errorf("the owner's address became %v", se.Spec.Addresses)
	}
	if n := c.metric(t, "meltemi_istio_vip_applies_total"); n != 0 {
		t.Errorf("replica-c wrote %v VIPs; the ServiceEntry kept its VIP, then got its own address", n)
	}
}

// toHost is a MetaRouter route sending everything to host.
func toHost(host string) v1alpha1.MetaRoute {
	return v1alpha1.MetaRoute{Name: "all", Route: []v1alpha1.MetaRouteDestination{{Destination: v1alpha1.Destination{Host: host}}}}
}
