// Package kube is the controller's Kubernetes source and status writer. The Source watches,
// through informers, the objects the model is built from (our MetaRouters and
// ApplicationProtocols, Services, EndpointSlices, Pod metadata, Istio ServiceEntries,
// WorkloadEntries and DestinationRules, and Aeraki MetaRouters when their CRD exists) and hands
// the controller a complete snapshot after every change. The StatusWriter writes the
// controller's verdicts (conditions, observedGeneration) into the status of our own objects.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	istionetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// Aeraki's MetaRouter, read into our MetaRouter type when its CRD is installed.
var (
	AerakiGroupVersion = schema.GroupVersion{Group: "metaprotocol.aeraki.io", Version: "v1alpha1"}
	istioGroupVersion  = istionetworkingv1.SchemeGroupVersion
)

// DefaultDiscoveryInterval is how often the Source looks for Istio and Aeraki CRDs that were
// installed or removed after it started.
const DefaultDiscoveryInterval = 10 * time.Second

// Source feeds the controller from a Kubernetes API server.
//
// Snapshots handed to out share their objects with the informer caches (List without deep
// copies): a snapshot costs a slice of pointers, not a copy of the cluster, and consecutive
// snapshots share unchanged objects. Receivers may keep a snapshot (informers replace cached
// objects on change, they never modify them) but must not modify its objects; model.Build
// does not.
type Source struct {
	// Config reaches the API server.
	Config *rest.Config
	// Namespaces restricts every watch to these namespaces; empty watches the whole cluster.
	Namespaces []string
	// Log receives the source's events; nil discards them.
	Log *slog.Logger
	// SyncPeriod, if set, re-delivers every cached object that often (and so calls out again).
	// Zero leaves it to the informers, which re-list after any watch failure anyway.
	SyncPeriod time.Duration
	// DiscoveryInterval is how often optional CRDs (Istio, Aeraki) are looked for; 0 means
	// DefaultDiscoveryInterval.
	DiscoveryInterval time.Duration
	// DomainSuffix is copied into every snapshot; "" means cluster.local.
	DomainSuffix string

	// cache is set once Run has built it; Reader reads through it.
	cache atomic.Pointer[cache.Cache]
}

// kind is one watched object kind.
type kind struct {
	name string
	// obj is the informer's prototype: a typed object, PartialObjectMetadata or Unstructured.
	obj client.Object
	// gv and resource are what discovery must list for an optional kind to be watched.
	gv       schema.GroupVersion
	resource string
	optional bool
	// pokeOnUpdate decides whether an update matters to the model; nil means always.
	pokeOnUpdate func(oldObj, newObj any) bool
}

func (s *Source) kinds() []*kind {
	pod := &metav1.PartialObjectMetadata{}
	pod.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	aeraki := &unstructured.Unstructured{}
	aeraki.SetGroupVersionKind(AerakiGroupVersion.WithKind("MetaRouter"))
	return []*kind{
		{name: "MetaRouter", obj: &v1alpha1.MetaRouter{}, pokeOnUpdate: specChanged},
		{name: "ApplicationProtocol", obj: &v1alpha1.ApplicationProtocol{}, pokeOnUpdate: specChanged},
		{name: "Service", obj: &corev1.Service{}},
		{name: "EndpointSlice", obj: &discoveryv1.EndpointSlice{}},
		{name: "Pod", obj: pod, pokeOnUpdate: labelsChanged},
		{name: "ServiceEntry", obj: &istionetworkingv1.ServiceEntry{}, gv: istioGroupVersion, resource: "serviceentries", optional: true},
		{name: "WorkloadEntry", obj: &istionetworkingv1.WorkloadEntry{}, gv: istioGroupVersion, resource: "workloadentries", optional: true},
		{name: "DestinationRule", obj: &istionetworkingv1.DestinationRule{}, gv: istioGroupVersion, resource: "destinationrules", optional: true},
		{name: "Aeraki MetaRouter", obj: aeraki, gv: AerakiGroupVersion, resource: "metarouters", optional: true, pokeOnUpdate: specChanged},
	}
}

// sameVersion is true for updates that are re-deliveries (a re-list or a periodic resync):
// they are passed on, so that the controller rebuilds after a reconnect.
func sameVersion(oldObj, newObj any) bool {
	o, ok1 := oldObj.(metav1.Object)
	n, ok2 := newObj.(metav1.Object)
	return ok1 && ok2 && o.GetResourceVersion() == n.GetResourceVersion()
}

// specChanged ignores updates that only touch status (the status writer's own writes would
// otherwise trigger a rebuild each): the generation moves only with the spec.
func specChanged(oldObj, newObj any) bool {
	if sameVersion(oldObj, newObj) {
		return true
	}
	o, ok1 := oldObj.(metav1.Object)
	n, ok2 := newObj.(metav1.Object)
	return !ok1 || !ok2 || o.GetGeneration() != n.GetGeneration() || o.GetGeneration() == 0
}

// labelsChanged ignores Pod updates that do not change labels: Pods change status often, and
// only their labels reach the model.
func labelsChanged(oldObj, newObj any) bool {
	if sameVersion(oldObj, newObj) {
		return true
	}
	o, ok1 := oldObj.(metav1.Object)
	n, ok2 := newObj.(metav1.Object)
	return !ok1 || !ok2 || !maps.Equal(o.GetLabels(), n.GetLabels())
}

// Scheme knows every typed object the Source and StatusWriter read.
func Scheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, discoveryv1.AddToScheme, v1alpha1.AddToScheme, istionetworkingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			return nil, fmt.Errorf("build scheme: %w", err)
		}
	}
	return s, nil
}

// Run watches until ctx ends, calling out with a complete snapshot once the caches are synced
// and again after every change (changes that arrive while out runs are coalesced into one
// call). out is called from one goroutine at a time. Run returns nil when ctx ends, an error
// if the watches cannot start.
func (s *Source) Run(ctx context.Context, out func(*model.Inputs)) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	scheme, err := Scheme()
	if err != nil {
		return err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(s.Config)
	if err != nil {
		return fmt.Errorf("discovery client: %w", err)
	}
	opts := cache.Options{
		Scheme:           scheme,
		DefaultTransform: cache.TransformStripManagedFields(),
		// See the Source's documentation: snapshots are read-only views of the caches.
		DefaultUnsafeDisableDeepCopy: ptr.To(true),
	}
	if s.SyncPeriod > 0 {
		opts.SyncPeriod = &s.SyncPeriod
	}
	if len(s.Namespaces) > 0 {
		opts.DefaultNamespaces = make(map[string]cache.Config, len(s.Namespaces))
		for _, ns := range s.Namespaces {
			opts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(s.Config, opts)
	if err != nil {
		return fmt.Errorf("informer cache: %w", err)
	}

	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	w := &watcher{c: c, log: log, poke: make(chan struct{}, 1), active: map[*kind]bool{}}
	kinds := s.kinds()
	// Optional kinds present now are registered before the cache starts, so that the first
	// snapshot already holds them.
	present := w.discover(disc, kinds)
	for _, k := range kinds {
		if k.optional && !present[k] {
			continue
		}
		if err := w.watch(ctx, k); err != nil {
			return err
		}
		if k.optional {
			log.Info("watching optional kind", "kind", k.name)
		}
	}
	for _, k := range kinds {
		if k.optional && !present[k] {
			log.Info("optional kind not served by the API server; watching it once it is", "kind", k.name, "groupVersion", k.gv.String())
		}
	}

	errc := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		errc <- c.Start(ctx)
		cancel() // a cache that stopped on its own ends the wait for its sync too
	}()
	// The informers stop before Run returns.
	defer func() {
		cancel()
		wg.Wait()
	}()
	// WaitForCacheSync gives up only when ctx ends: when Run's caller cancels or the cache
	// stopped.
	// ended says why ctx ended: nil if Run's caller cancelled, the cache's error if it stopped
	// on its own.
	ended := func() error {
		if parent.Err() != nil {
			return nil
		}
		if err := <-errc; err != nil {
			return fmt.Errorf("informer cache: %w", err)
		}
		return errors.New("informer cache stopped")
	}
	if !c.WaitForCacheSync(ctx) {
		return ended()
	}
	s.cache.Store(&c)
	log.Info("kubernetes caches synced", "namespaces", s.Namespaces)

	interval := s.DiscoveryInterval
	if interval <= 0 {
		interval = DefaultDiscoveryInterval
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()

	w.trigger() // the first snapshot
	for {
		select {
		case <-ctx.Done():
			return ended()
		case <-ticker.C:
			w.rediscover(ctx, disc, kinds)
		case <-w.poke:
			in, err := w.snapshot(ctx, kinds)
			if err != nil {
				log.Error("snapshot of the kubernetes caches", "err", err)
				continue
			}
			in.DomainSuffix = s.DomainSuffix
			out(in)
		}
	}
}

// watcher holds Run's state: the cache and which optional kinds are watched. Only Run's
// goroutine touches active; poke is written by informer handlers.
type watcher struct {
	c      cache.Cache
	log    *slog.Logger
	poke   chan struct{}
	active map[*kind]bool
}

func (w *watcher) trigger() {
	select {
	case w.poke <- struct{}{}:
	default: // a snapshot is already due; it will see this change too
	}
}

// watch starts (or, after the cache started, starts and waits for) the informer of k and
// subscribes to its events.
func (w *watcher) watch(ctx context.Context, k *kind) error {
	inf, err := w.c.GetInformer(ctx, k.obj)
	if err != nil {
		return fmt.Errorf("watch %s: %w", k.name, err)
	}
	_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(any, bool) { w.trigger() },
		UpdateFunc: func(o, n any) {
			if k.pokeOnUpdate == nil || k.pokeOnUpdate(o, n) {
				w.trigger()
			}
		},
		DeleteFunc: func(any) { w.trigger() },
	})
	if err != nil {
		return fmt.Errorf("watch %s: %w", k.name, err)
	}
	w.active[k] = true
	return nil
}

// discover reports which optional kinds the API server serves. A kind whose presence cannot
// be told (the API server is unreachable) is reported as it is now, so that an outage does
// not stop its watch.
func (w *watcher) discover(disc discovery.DiscoveryInterface, kinds []*kind) map[*kind]bool {
	present := map[*kind]bool{}
	served := map[schema.GroupVersion]map[string]bool{}
	failed := map[schema.GroupVersion]bool{}
	for _, k := range kinds {
		if !k.optional {
			continue
		}
		if failed[k.gv] {
			present[k] = w.active[k]
			continue
		}
		res, ok := served[k.gv]
		if !ok {
			list, err := disc.ServerResourcesForGroupVersion(k.gv.String())
			switch {
			case apierrors.IsNotFound(err):
				res = map[string]bool{}
			case err != nil:
				w.log.Debug("discovery", "groupVersion", k.gv.String(), "err", err)
				failed[k.gv] = true
				present[k] = w.active[k]
				continue
			default:
				res = map[string]bool{}
				for _, r := range list.APIResources {
					res[r.Name] = true
				}
			}
			served[k.gv] = res
		}
		present[k] = res[k.resource]
	}
	return present
}

// rediscover starts the watches of optional kinds that appeared and stops those whose CRD
// went away, then asks for a snapshot if anything changed.
func (w *watcher) rediscover(ctx context.Context, disc discovery.DiscoveryInterface, kinds []*kind) {
	present := w.discover(disc, kinds)
	changed := false
	for _, k := range kinds {
		if !k.optional || present[k] == w.active[k] {
			continue
		}
		if present[k] {
			// GetInformer on a started cache waits for the informer to sync; bound it so that
			// a CRD that is not served after all does not stall the source.
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := w.watch(wctx, k)
			cancel()
			if err != nil {
				w.log.Error("start watching optional kind", "kind", k.name, "err", err)
				_ = w.c.RemoveInformer(ctx, k.obj)
				continue
			}
			w.log.Info("optional kind appeared; watching it", "kind", k.name)
		} else {
			if err := w.c.RemoveInformer(ctx, k.obj); err != nil {
				w.log.Error("stop watching optional kind", "kind", k.name, "err", err)
			}
			w.active[k] = false
			w.log.Info("optional kind went away; stopped watching it", "kind", k.name)
		}
		changed = true
	}
	if changed {
		w.trigger()
	}
}

// snapshot lists every watched kind from the caches.
func (w *watcher) snapshot(ctx context.Context, kinds []*kind) (*model.Inputs, error) {
	in := &model.Inputs{}
	for _, k := range kinds {
		if !w.active[k] {
			continue
		}
		var err error
		switch k.obj.(type) {
		case *v1alpha1.MetaRouter:
			var l v1alpha1.MetaRouterList
			err = w.c.List(ctx, &l)
			for i := range l.Items {
				// The model tells ours from Aeraki's by apiVersion: make sure it is set.
				l.Items[i].SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("MetaRouter"))
				in.MetaRouters = append(in.MetaRouters, &l.Items[i])
			}
		case *v1alpha1.ApplicationProtocol:
			var l v1alpha1.ApplicationProtocolList
			err = w.c.List(ctx, &l)
			for i := range l.Items {
				l.Items[i].SetGroupVersionKind(v1alpha1.GroupVersion.WithKind("ApplicationProtocol"))
				in.ApplicationProtocols = append(in.ApplicationProtocols, &l.Items[i])
			}
		case *corev1.Service:
			var l corev1.ServiceList
			err = w.c.List(ctx, &l)
			for i := range l.Items {
				in.Services = append(in.Services, &l.Items[i])
			}
		case *discoveryv1.EndpointSlice:
			var l discoveryv1.EndpointSliceList
			err = w.c.List(ctx, &l)
			for i := range l.Items {
				in.EndpointSlices = append(in.EndpointSlices, &l.Items[i])
			}
		case *metav1.PartialObjectMetadata:
			var l metav1.PartialObjectMetadataList
			l.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("PodList"))
			err = w.c.List(ctx, &l)
			for i := range l.Items {
				in.Pods = append(in.Pods, &l.Items[i])
			}
		case *istionetworkingv1.ServiceEntry:
			var l istionetworkingv1.ServiceEntryList
			err = w.c.List(ctx, &l)
			in.ServiceEntries = append(in.ServiceEntries, l.Items...)
		case *istionetworkingv1.WorkloadEntry:
			var l istionetworkingv1.WorkloadEntryList
			err = w.c.List(ctx, &l)
			in.WorkloadEntries = append(in.WorkloadEntries, l.Items...)
		case *istionetworkingv1.DestinationRule:
			var l istionetworkingv1.DestinationRuleList
			err = w.c.List(ctx, &l)
			in.DestinationRules = append(in.DestinationRules, l.Items...)
		case *unstructured.Unstructured:
			var l unstructured.UnstructuredList
			l.SetGroupVersionKind(AerakiGroupVersion.WithKind("MetaRouterList"))
			err = w.c.List(ctx, &l)
			for i := range l.Items {
				// The status is Aeraki's (Istio's status shape, int64 as strings), never
				// read: leave it out of the conversion. A shallow copy, as the cached map
				// must not change.
				obj := make(map[string]any, len(l.Items[i].Object))
				for k, v := range l.Items[i].Object {
					if k != "status" {
						obj[k] = v
					}
				}
				mr := &v1alpha1.MetaRouter{}
				if cerr := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, mr); cerr != nil {
					// The Aeraki CRD has its own schema; an object ours cannot read is
					// left out rather than failing the whole snapshot.
					w.log.Error("decode Aeraki MetaRouter", "namespace", l.Items[i].GetNamespace(), "name", l.Items[i].GetName(), "err", cerr)
					continue
				}
				mr.SetGroupVersionKind(AerakiGroupVersion.WithKind("MetaRouter"))
				in.MetaRouters = append(in.MetaRouters, mr)
			}
		default:
			err = fmt.Errorf("no lister for %T", k.obj)
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", k.name, err)
		}
	}
	return in, nil
}

// Reader reads objects from the Source's caches once Run has synced them; before that, its
// reads fail. The StatusWriter reads current status through it instead of the API server.
// What it returns shares maps and slices with the cached objects: deep-copy before
// modifying.
func (s *Source) Reader() client.Reader { return sourceReader{s} }

type sourceReader struct{ s *Source }

var errNotStarted = errors.New("kubernetes source caches are not synced yet")

func (r sourceReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c := r.s.cache.Load()
	if c == nil {
		return errNotStarted
	}
	return (*c).Get(ctx, key, obj, opts...)
}

func (r sourceReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	c := r.s.cache.Load()
	if c == nil {
		return errNotStarted
	}
	return (*c).List(ctx, list, opts...)
}
