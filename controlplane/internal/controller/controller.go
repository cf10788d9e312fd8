// Package controller is the control plane's pipeline: a source (Kubernetes informers or a
// directory of files) hands it the objects it collected on every change; the controller
// builds the model, translates it into xDS resources and hands them to the xDS server, and
// reports to a status sink, per source object, the problems found and whether the data plane
// accepted what was made of it.
package controller

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/translate"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/xds"
)

// ObjectStatus is the controller's verdict on one source object.
type ObjectStatus struct {
	Ref model.ObjectRef
	// Problems are what Build and Translate found wrong with the object.
	Problems []model.Problem
	// Nack is the message of a client that rejected the current version of a resource made
	// from the object ("" if none): Programmed False, reason Rejected.
	Nack string
	// Programmed: at least one connected client accepted a resource made from the object,
	// every resource made from it that a connected client was sent is accepted at its
	// current version, and none is rejected. Objects no client uses are not Programmed.
	Programmed bool
}

// StatusSink receives status reports: after each applied sync and each ACK or NACK (several
// coalesced into one report), the status of every object the applied resources came from or
// that has problems, sorted by kind, namespace and name. Report is called from one goroutine,
// one call at a time; it should skip objects whose status already says the same.
type StatusSink interface {
	Report(ctx context.Context, statuses []ObjectStatus)
}

// Options configure a Controller.
type Options struct {
	// XDS configures the xDS server the controller creates. Its OnNack, OnAck and OnApply
	// are called too, after the controller's own handling.
	XDS xds.Options
	// Sink receives status reports; nil means none are made.
	Sink StatusSink
	// StatusInterval is the least time between two status reports (default 100ms), so that
	// a burst of ACKs from many clients makes one report.
	StatusInterval time.Duration
	Logger         *slog.Logger
	// Registerer receives the controller's metrics (and the xDS server's, unless
	// XDS.Registerer is set); nil means not registered.
	Registerer prometheus.Registerer

	// OnSync, if set, is handed every sync's inputs and model (after the xDS server got the
	// resources), from the Sync caller's goroutine: Istio mode writes EnvoyFilters and VIPs
	// from them. It must not modify them and should return quickly.
	OnSync func(*model.Inputs, *model.Model)

	// Build and Translate default to model.Build and translate.Translate; tests replace
	// them.
	Build     func(*model.Inputs) *model.Model
	Translate func(*model.Model) *translate.Resources
}

// Controller runs the pipeline. Create it with New, serve its Server, run Run for status
// reports, and have a source call Sync.
type Controller struct {
	opts   Options
	log    *slog.Logger
	server *xds.Server

	syncMu sync.Mutex
	// protocols are the ApplicationProtocols of the last sync: they produce no resource, so
	// Statuses learns of them here.
	protocols atomic.Pointer[[]model.ObjectRef]
	syncs     atomic.Uint64
	dirty     chan struct{}
	metrics   *metrics
}

// New returns a controller and its xDS server.
func New(opts Options) *Controller {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = 100 * time.Millisecond
	}
	if opts.Build == nil {
		opts.Build = model.Build
	}
	if opts.Translate == nil {
		opts.Translate = translate.Translate
	}
	c := &Controller{
		opts:    opts,
		log:     opts.Logger,
		dirty:   make(chan struct{}, 1),
		metrics: newMetrics(opts.Registerer),
	}
	xo := opts.XDS
	if xo.Logger == nil {
		xo.Logger = opts.Logger
	}
	if xo.Registerer == nil {
		xo.Registerer = opts.Registerer
	}
	onNack, onAck, onApply := xo.OnNack, xo.OnAck, xo.OnApply
	xo.OnNack = func(n xds.Nack) {
		c.markDirty()
		if onNack != nil {
			onNack(n)
		}
	}
	xo.OnAck = func(a xds.Ack) {
		c.markDirty()
		if onAck != nil {
			onAck(a)
		}
	}
	xo.OnApply = func(r *translate.Resources) {
		c.markDirty()
		if onApply != nil {
			onApply(r)
		}
	}
	c.server = xds.NewServer(xo)
	return c
}

// Server is the controller's xDS server.
func (c *Controller) Server() *xds.Server { return c.server }

// Syncs counts the completed Sync calls; the controller is ready once it is not zero.
func (c *Controller) Syncs() uint64 { return c.syncs.Load() }

// Sync builds and translates in and hands the resources to the xDS server (which applies
// them after its debounce). Sources call it on every change, with the complete Inputs; calls
// are serialized.
func (c *Controller) Sync(in *model.Inputs) {
	if in == nil {
		in = &model.Inputs{}
	}
	c.syncMu.Lock()
	defer c.syncMu.Unlock()
	start := time.Now()
	m := c.opts.Build(in)
	c.protocols.Store(&m.ApplicationProtocols)
	built := time.Now()
	res := c.opts.Translate(m)
	done := time.Now()
	c.server.Update(res)
	if c.opts.OnSync != nil {
		c.opts.OnSync(in, m)
	}
	c.syncs.Add(1)
	c.metrics.syncs.Inc()
	c.metrics.build.Observe(built.Sub(start).Seconds())
	c.metrics.translate.Observe(done.Sub(built).Seconds())
	c.metrics.problems.Set(float64(len(res.Problems)))
	c.log.Info("synced", "services", len(m.Services), "routers", len(m.Routers),
		"routes", len(res.Routes), "clusters", len(res.Clusters), "endpoints", len(res.Endpoints),
		"problems", len(res.Problems), "build", built.Sub(start), "translate", done.Sub(built))
	for _, p := range res.Problems {
		c.log.Debug("problem", "object", p.Object.String(), "condition", p.Condition, "reason", p.Reason, "message", p.Message)
	}
}

// RefreshStatus asks for a status report (coalesced like the others) although no resource
// changed: something the sink reports besides them did (the EnvoyFilters written for an
// object, the sink's permission to write).
func (c *Controller) RefreshStatus() { c.markDirty() }

func (c *Controller) markDirty() {
	select {
	case c.dirty <- struct{}{}:
	default:
	}
}

// Run reports statuses to the sink until ctx is done; it returns nil then. Without a sink
// it only waits.
func (c *Controller) Run(ctx context.Context) error {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.dirty:
		}
		// Coalesce: wait out the rest of the interval, taking the signals that arrive.
		if wait := c.opts.StatusInterval - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
			select {
			case <-c.dirty:
			default:
			}
		}
		last = time.Now()
		if c.opts.Sink == nil {
			continue
		}
		statuses := c.Statuses()
		c.opts.Sink.Report(ctx, statuses)
		c.metrics.reports.Inc()
	}
}

// Statuses computes the status of every object behind the applied resources.
func (c *Controller) Statuses() []ObjectStatus {
	res := c.server.Resources()
	type object struct {
		st        ObjectStatus
		resources []resourceKey
	}
	objects := make(map[model.ObjectRef]*object)
	get := func(ref model.ObjectRef) *object {
		o := objects[ref]
		if o == nil {
			o = &object{st: ObjectStatus{Ref: ref}}
			objects[ref] = o
		}
		return o
	}
	for _, p := range res.Problems {
		o := get(p.Object)
		o.st.Problems = append(o.st.Problems, p)
	}
	var protocols []*object
	if aps := c.protocols.Load(); aps != nil {
		for _, ref := range *aps {
			protocols = append(protocols, get(ref))
		}
	}
	for key, refs := range res.Origins {
		rk, ok := parseOriginKey(key)
		if !ok {
			continue
		}
		for _, ref := range refs {
			o := get(ref)
			o.resources = append(o.resources, rk)
		}
	}

	for _, o := range objects {
		// Sorted, so that NACK messages come in the same order every time.
		slices.SortFunc(o.resources, func(a, b resourceKey) int {
			return cmp.Or(cmp.Compare(a.typeURL, b.typeURL), cmp.Compare(a.name, b.name))
		})
	}
	c.server.States(func(state func(typeURL, name string) xds.ResourceState) {
		for _, o := range objects {
			anyAcked, allAcked := false, true
			var nacks []string
			for _, r := range o.resources {
				s := state(r.typeURL, r.name)
				if s.Nack != "" {
					nacks = append(nacks, r.name+": "+s.Nack)
				}
				if s.Sent {
					if s.Acked {
						anyAcked = true
					} else {
						allAcked = false
					}
				}
			}
			o.st.Nack = strings.Join(nacks, "; ")
			o.st.Programmed = len(nacks) == 0 && anyAcked && allAcked
		}
	})

	// An ApplicationProtocol has nothing to be programmed into a client: it is in effect as
	// soon as it is accepted.
	for _, o := range protocols {
		o.st.Programmed = len(o.st.Problems) == 0
	}

	out := make([]ObjectStatus, 0, len(objects))
	for _, o := range objects {
		out = append(out, o.st)
	}
	slices.SortFunc(out, func(a, b ObjectStatus) int { return model.CompareRefs(a.Ref, b.Ref) })
	return out
}

type resourceKey struct{ typeURL, name string }

// parseOriginKey splits a translate.OriginKey: the type URL is one of the served ones (type
// URLs contain slashes themselves).
func parseOriginKey(key string) (resourceKey, bool) {
	for _, t := range xds.TypeURLs {
		if name, ok := strings.CutPrefix(key, t+"/"); ok {
			return resourceKey{typeURL: t, name: name}, true
		}
	}
	return resourceKey{}, false
}

type metrics struct {
	syncs     prometheus.Counter
	reports   prometheus.Counter
	build     prometheus.Histogram
	translate prometheus.Histogram
	problems  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	buckets := prometheus.ExponentialBuckets(.0001, 4, 10)
	m := &metrics{
		syncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meltemi_controller_syncs_total", Help: "Inputs built and translated.",
		}),
		reports: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meltemi_controller_status_reports_total", Help: "Status reports made to the sink.",
		}),
		build: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meltemi_controller_build_duration_seconds", Help: "Time to build the model from the inputs.", Buckets: buckets,
		}),
		translate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "meltemi_controller_translate_duration_seconds", Help: "Time to translate the model into xDS resources.", Buckets: buckets,
		}),
		problems: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meltemi_controller_problems", Help: "Problems found by the last sync.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.syncs, m.reports, m.build, m.translate, m.problems)
	}
	return m
}
