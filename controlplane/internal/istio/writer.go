package istio

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// Labels and field manager of everything the controller writes.
const (
	FieldManager   = "meltemi-controller"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "meltemi-controller"
)

// GVKs written.
var (
	EnvoyFilterGVK  = schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1alpha3", Kind: "EnvoyFilter"}
	ServiceEntryGVK = schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "ServiceEntry"}
)

// Desired is what the generator wants in the cluster.
type Desired struct {
	Filters []*networkingv1alpha3.EnvoyFilter
	// Origins maps "namespace/name" of a filter to the objects it was made from.
	Origins map[string][]model.ObjectRef
	// Problems are why some object got no (or not every) EnvoyFilter: they join the
	// object's status (Programmed False).
	Problems []model.Problem
}

// WriterOptions configure a Writer.
type WriterOptions struct {
	// Client writes to the API server (no cache: it lists what is there before writing).
	Client client.Client
	// Generate makes the desired EnvoyFilters from a model; nil writes no EnvoyFilter (and
	// collects none).
	Generate func(*model.Model) *Desired
	// VIPRange is the range ServiceEntry VIPs come from; the zero Prefix allocates none.
	VIPRange netip.Prefix
	// Debounce is how long a write waits for further syncs (default 1s).
	Debounce time.Duration
	// MaxBackoff caps the retry delay after a failed write (default 30s; the first retry
	// waits 200ms).
	MaxBackoff time.Duration
	// OnWritten is called after a write round that changed which EnvoyFilters program some
	// object, so that status is reported again.
	OnWritten func()
	Log       *slog.Logger
	// Registerer receives the writer's metrics; nil means not registered.
	Registerer prometheus.Registerer
}

// Writer keeps the cluster's managed EnvoyFilters and ServiceEntry VIPs in line with the
// latest model. Update hands it each sync; Run writes (only the leader runs it).
type Writer struct {
	opts WriterOptions
	log  *slog.Logger
	m    *writerMetrics

	mu      sync.Mutex
	in      *model.Inputs
	model   *model.Model
	written map[objectKey][]string // object -> EnvoyFilters ("ns/name") that program it
	// problems are the generator's, by object, from the last write.
	problems map[objectKey][]model.Problem
	dirty    chan struct{}
}

// objectKey is an ObjectRef without its generation and file.
type objectKey struct{ group, kind, namespace, name string }

func keyOf(r model.ObjectRef) objectKey { return objectKey{r.Group, r.Kind, r.Namespace, r.Name} }

// NewWriter returns a Writer.
func NewWriter(opts WriterOptions) *Writer {
	if opts.Debounce <= 0 {
		opts.Debounce = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Writer{opts: opts, log: opts.Log, m: newWriterMetrics(opts.Registerer), dirty: make(chan struct{}, 1)}
}

// Update records a sync's inputs and model (not modified, not copied: sources hand out
// fresh ones each sync) for the next write. It never blocks.
func (w *Writer) Update(in *model.Inputs, m *model.Model) {
	w.mu.Lock()
	w.in, w.model = in, m
	w.mu.Unlock()
	w.signal()
}

func (w *Writer) signal() {
	select {
	case w.dirty <- struct{}{}:
	default:
	}
}

// EnvoyFilters returns the EnvoyFilters ("namespace/name", sorted) the last write programmed
// obj with, for its status.
func (w *Writer) EnvoyFilters(obj model.ObjectRef) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written[keyOf(obj)]
}

// Problems returns the generator's problems with obj from the last write.
func (w *Writer) Problems(obj model.ObjectRef) []model.Problem {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.problems[keyOf(obj)]
}

// Run writes after each Update (debounced) until ctx is done, and returns nil then. A failed
// write is retried with exponential backoff. Run may be called again after it returned (a
// replica that lost the lease and won it back): it starts with a write of the latest model.
func (w *Writer) Run(ctx context.Context) error {
	w.signal()
	backoff := time.Duration(0)
	for {
		var retry <-chan time.Time
		if backoff > 0 {
			retry = time.After(backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.dirty:
		case <-retry:
		}
		// Debounce: a burst of syncs makes one write.
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(w.opts.Debounce):
		}
		w.mu.Lock()
		in, m := w.in, w.model
		w.mu.Unlock()
		if m == nil {
			continue // no sync yet
		}
		err := w.write(ctx, in, m)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			w.m.errors.Inc()
			backoff = min(max(2*backoff, 200*time.Millisecond), w.opts.MaxBackoff)
			w.log.Error("istio write failed; retrying", "in", backoff, "err", err)
			continue
		}
		backoff = 0
	}
}

// write makes the cluster match the model: VIPs first (the generator's listeners need
// them; the next sync brings them back as the model's addresses), then EnvoyFilters.
func (w *Writer) write(ctx context.Context, in *model.Inputs, m *model.Model) error {
	var errs []error
	if w.opts.VIPRange.IsValid() && in != nil {
		if err := w.writeVIPs(ctx, in, m); err != nil {
			errs = append(errs, err)
		}
	}
	if w.opts.Generate != nil {
		if err := w.writeFilters(ctx, w.opts.Generate(m)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (w *Writer) writeFilters(ctx context.Context, d *Desired) error {
	if d == nil {
		d = &Desired{}
	}
	want := make(map[string]*unstructured.Unstructured, len(d.Filters))
	for _, ef := range d.Filters {
		u, err := envoyFilterObject(ef)
		if err != nil {
			return err
		}
		want[ef.Namespace+"/"+ef.Name] = u
	}

	list := &unstructured.UnstructuredList{}
	list.SetGroupVersionKind(EnvoyFilterGVK.GroupVersion().WithKind("EnvoyFilterList"))
	if err := w.opts.Client.List(ctx, list, client.MatchingLabels{LabelManagedBy: ManagedBy}); err != nil {
		return fmt.Errorf("list EnvoyFilters: %w", err)
	}
	have := make(map[string]*unstructured.Unstructured, len(list.Items))
	for i := range list.Items {
		u := &list.Items[i]
		have[u.GetNamespace()+"/"+u.GetName()] = u
	}

	var errs []error
	inCluster := make(map[string]bool, len(want))
	for _, key := range slices.Sorted(maps.Keys(want)) {
		u := want[key]
		if cur, ok := have[key]; ok && sameContent(cur, u) {
			inCluster[key] = true
			continue
		}
		err := w.opts.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership)
		if err != nil {
			errs = append(errs, fmt.Errorf("apply EnvoyFilter %s: %w", key, err))
			continue
		}
		inCluster[key] = true
		w.m.applies.Inc()
		w.log.Info("applied EnvoyFilter", "envoyFilter", key)
	}
	for _, key := range slices.Sorted(maps.Keys(have)) {
		if _, ok := want[key]; ok {
			continue
		}
		err := w.opts.Client.Delete(ctx, have[key])
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete EnvoyFilter %s: %w", key, err))
			continue
		}
		w.m.deletes.Inc()
		w.log.Info("deleted EnvoyFilter", "envoyFilter", key)
	}
	w.m.filters.Set(float64(len(inCluster)))

	written := make(map[objectKey][]string)
	for key, refs := range d.Origins {
		if !inCluster[key] {
			continue
		}
		for _, r := range refs {
			k := keyOf(r)
			if !slices.Contains(written[k], key) {
				written[k] = append(written[k], key)
			}
		}
	}
	for _, v := range written {
		slices.Sort(v)
	}
	problems := make(map[objectKey][]model.Problem)
	for _, p := range d.Problems {
		k := keyOf(p.Object)
		problems[k] = append(problems[k], p)
	}
	w.mu.Lock()
	changed := !maps.EqualFunc(w.written, written, slices.Equal[[]string]) ||
		!maps.EqualFunc(w.problems, problems, slices.Equal[[]model.Problem])
	w.written, w.problems = written, problems
	w.mu.Unlock()
	if changed && w.opts.OnWritten != nil {
		w.opts.OnWritten()
	}
	return errors.Join(errs...)
}

// envoyFilterObject is ef as the object applied: identity, labels, annotations and spec,
// with the managed-by label garbage collection selects on.
func envoyFilterObject(ef *networkingv1alpha3.EnvoyFilter) (*unstructured.Unstructured, error) {
	spec, err := json.Marshal(&ef.Spec)
	if err != nil {
		return nil, fmt.Errorf("EnvoyFilter %s/%s: marshal spec: %w", ef.Namespace, ef.Name, err)
	}
	var specMap map[string]any
	if err := json.Unmarshal(spec, &specMap); err != nil {
		return nil, fmt.Errorf("EnvoyFilter %s/%s: spec: %w", ef.Namespace, ef.Name, err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{"spec": specMap}}
	u.SetGroupVersionKind(EnvoyFilterGVK)
	u.SetNamespace(ef.Namespace)
	u.SetName(ef.Name)
	labels := maps.Clone(ef.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelManagedBy] = ManagedBy
	u.SetLabels(labels)
	if len(ef.Annotations) > 0 {
		u.SetAnnotations(ef.Annotations)
	}
	return u, nil
}

// sameContent: cur (from the cluster) has exactly want's labels, annotations and spec. Exact,
// so that a label the generator stopped setting is removed by the next apply (a label
// someone else added makes an apply per write, which changes nothing). Both specs go through
// JSON, so numbers compare alike (the API server's int64 and the marshalled float64).
func sameContent(cur, want *unstructured.Unstructured) bool {
	return maps.Equal(cur.GetLabels(), want.GetLabels()) &&
		maps.Equal(cur.GetAnnotations(), want.GetAnnotations()) &&
		reflect.DeepEqual(normalize(cur.Object["spec"]), normalize(want.Object["spec"]))
}

func normalize(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out any
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}

// writeVIPs gives each ServiceEntry that has a Meltemi service in the model and no
// spec.addresses of its own a VIP (see AllocateVIPs), and writes the ones not yet written:
// spec.addresses and the meltemi.io/vip annotation, by server-side apply.
func (w *Writer) writeVIPs(ctx context.Context, in *model.Inputs, m *model.Model) error {
	meltemi := make(map[string]bool)
	for _, s := range m.Services {
		if s.Source.Kind == model.KindServiceEntry && s.Source.Group == model.GroupIstio {
			meltemi[s.Source.Namespace+"/"+s.Source.Name] = true
		}
	}
	type seState struct{ annotation, addresses string }
	entries := make([]VIPEntry, 0, len(in.ServiceEntries))
	state := make(map[string]seState, len(in.ServiceEntries))
	for _, se := range in.ServiceEntries {
		e := VIPEntry{Namespace: se.Namespace, Name: se.Name}
		ann := se.Annotations[model.AnnotationVIP]
		if a, err := netip.ParseAddr(strings.TrimSpace(ann)); err == nil {
			e.Current = a
		}
		addrs := se.Spec.Addresses
		ours := len(addrs) == 0 || (len(addrs) == 1 && e.Current.IsValid() && addrs[0] == e.Current.String())
		if ours {
			e.Wants = meltemi[e.Namespace+"/"+e.Name]
		} else {
			for _, s := range addrs {
				if p, err := netip.ParsePrefix(s); err == nil {
					e.Reserved = append(e.Reserved, p.Addr())
				} else if a, err := netip.ParseAddr(s); err == nil {
					e.Reserved = append(e.Reserved, a)
				}
			}
		}
		entries = append(entries, e)
		state[e.Namespace+"/"+e.Name] = seState{annotation: ann, addresses: strings.Join(addrs, ",")}
	}
	vips, allocErr := AllocateVIPs(w.opts.VIPRange, entries)
	var errs []error
	if allocErr != nil {
		errs = append(errs, allocErr)
	}
	keys := slices.SortedFunc(maps.Keys(vips), cmp.Compare[string])
	for _, key := range keys {
		vip := vips[key].String()
		if s := state[key]; s.annotation == vip && s.addresses == vip {
			continue
		}
		ns, name, _ := strings.Cut(key, "/")
		u := &unstructured.Unstructured{Object: map[string]any{
			"spec": map[string]any{"addresses": []any{vip}},
		}}
		u.SetGroupVersionKind(ServiceEntryGVK)
		u.SetNamespace(ns)
		u.SetName(name)
		u.SetAnnotations(map[string]string{model.AnnotationVIP: vip})
		err := w.opts.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(FieldManager), client.ForceOwnership)
		if apierrors.IsNotFound(err) {
			continue // deleted meanwhile
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("apply VIP %s to ServiceEntry %s: %w", vip, key, err))
			continue
		}
		w.m.vips.Inc()
		w.log.Info("allocated VIP", "serviceEntry", key, "vip", vip)
	}
	return errors.Join(errs...)
}

type writerMetrics struct {
	applies, deletes, vips, errors prometheus.Counter
	filters                        prometheus.Gauge
}

func newWriterMetrics(reg prometheus.Registerer) *writerMetrics {
	m := &writerMetrics{
		applies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meltemi_istio_envoyfilter_applies_total", Help: "EnvoyFilters created or updated (server-side apply).",
		}),
		deletes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meltemi_istio_envoyfilter_deletes_total", Help: "Managed EnvoyFilters deleted because no longer wanted.",
		}),
		vips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meltemi_istio_vip_applies_total", Help: "VIPs written to ServiceEntries.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meltemi_istio_write_errors_total", Help: "Write rounds that failed (retried with backoff).",
		}),
		filters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meltemi_istio_envoyfilters", Help: "Managed EnvoyFilters in the cluster after the last write.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.applies, m.deletes, m.vips, m.errors, m.filters)
	}
	return m
}
