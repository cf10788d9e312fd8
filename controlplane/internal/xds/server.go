// Package xds is the controller's xDS server: it serves the translator's resources (Meltemi
// route configurations, Envoy clusters and cluster load assignments) to the plugin over gRPC
// ADS, state-of-the-world and delta, and tells the controller which resources clients
// accepted (ACK) or rejected (NACK) so that the status of the objects behind them can say so.
//
// # Caches
//
// go-control-plane's Snapshot cache only serves the type URLs it knows (Envoy's), and the
// route configuration is our own type. The server therefore keeps one cache.LinearCache per
// type URL behind a cache.MuxCache that picks the cache by the request's type URL. This was
// checked against go-control-plane v0.14.0: LinearCache never looks inside a resource (it
// marshals it with proto's deterministic encoding and wraps it in an Any with the request's
// type URL), serves both sotw (CreateWatch) and delta (CreateDeltaWatch) watches, and keeps a
// version per resource: in delta, the SHA-256 of the deterministic encoding; in sotw, the cache
// version at which the resource last changed. Update only hands the caches the resources
// whose hash changed, so an unchanged resource keeps both versions and is not re-sent.
//
// What clients see follows the xDS protocol as LinearCache implements it: in sotw, a Cluster
// response carries every subscribed cluster (full state, a missing cluster means deleted),
// while route configuration and endpoint responses carry only the resources that changed and
// cannot signal deletions; delta responses carry the changed resources and the names of the
// removed ones.
package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/translate"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// TypeURLs are the resource types the server serves, in the order a change is applied:
// clusters and endpoints before the routes that use them.
var TypeURLs = [...]string{
	apiv1alpha1.ClusterTypeURL,
	apiv1alpha1.EndpointTypeURL,
	apiv1alpha1.RouteConfigurationTypeURL,
}

// Defaults of Options.
const (
	DefaultDebounce    = 100 * time.Millisecond
	DefaultMaxDebounce = time.Second
)

// Options configure a Server. The zero value is usable.
type Options struct {
	// Debounce is how long Update waits for further updates before applying the latest;
	// MaxDebounce bounds the wait under continuous updates (from the first pending one).
	Debounce    time.Duration
	MaxDebounce time.Duration

	Logger *slog.Logger
	// Registerer receives the server's metrics; nil means not registered.
	Registerer prometheus.Registerer

	// OnNack is called (from a stream goroutine, keep it short) when a client rejects
	// resources. OnAck likewise when a client accepts some. OnApply after Update's resources
	// were handed to the caches.
	OnNack  func(Nack)
	OnAck   func(Ack)
	OnApply func(*translate.Resources)
}

// Nack is a client's rejection of a response.
type Nack struct {
	// Node is the client's node ID ("" if it sent none).
	Node    string
	TypeURL string
	// ResourceNames are the resources of the rejected response (for sotw, every resource of
	// the response: the protocol does not say which one was wrong; the message usually does).
	ResourceNames []string
	Message       string
}

// Ack is a client's acceptance of a response.
type Ack struct {
	Node          string
	TypeURL       string
	ResourceNames []string
}

// ResourceState is what connected clients made of the current version of one resource.
type ResourceState struct {
	// Sent: at least one connected client subscribed to the resource and was sent a version
	// of it (not necessarily the current one).
	Sent bool
	// Acked: at least one connected client accepted the current version.
	Acked bool
	// Nack is the error message of a client that rejected the current version, "" if none.
	Nack string
}

// Server is the xDS server. Create it with NewServer; Update and Serve may be called
// concurrently.
type Server struct {
	opts    Options
	log     *slog.Logger
	metrics *metrics
	caches  map[string]*cachev3.LinearCache
	mux     *cachev3.MuxCache

	// Debouncing: guarded by mu.
	mu         sync.Mutex
	pending    *translate.Resources
	hasPending bool
	first      time.Time // first Update since the last apply
	deadline   time.Time // when the pending update is due
	timer      *time.Timer

	// applyMu serializes applies; hashes is only written under it (and stateMu).
	applyMu sync.Mutex
	applied atomic.Pointer[translate.Resources]
	version atomic.Uint64
	// ready is closed by the first apply.
	ready     chan struct{}
	readyOnce sync.Once

	// Client state: guarded by stateMu.
	stateMu sync.Mutex
	hashes  map[string]map[string]string // type URL -> name -> hash of the applied resource
	streams map[streamKey]*streamState
	nacks   map[string]map[string]nackState // type URL -> name -> last NACK
}

type streamKey struct {
	delta bool // sotw and delta servers number their streams independently
	id    int64
}

type streamState struct {
	node string
	// sent and acked map type URL -> name -> hash of what was sent / accepted.
	sent  map[string]map[string]string
	acked map[string]map[string]string
	// inflight are the responses not yet ACKed or NACKed, oldest first, bounded.
	inflight []response
}

type response struct {
	typeURL   string
	nonce     string
	resources []sentResource
}

type sentResource struct{ name, hash string }

type nackState struct{ hash, message string }

// maxInflight bounds the unanswered responses remembered per stream: a client answers each
// response in order, so only the last few can still be answered.
const maxInflight = 16

// NewServer returns a server with empty caches.
func NewServer(opts Options) *Server {
	if opts.Debounce <= 0 {
		opts.Debounce = DefaultDebounce
	}
	if opts.MaxDebounce <= 0 {
		opts.MaxDebounce = DefaultMaxDebounce
	}
	if opts.MaxDebounce < opts.Debounce {
		opts.MaxDebounce = opts.Debounce
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		metrics: newMetrics(opts.Registerer),
		caches:  make(map[string]*cachev3.LinearCache, len(TypeURLs)),
		hashes:  make(map[string]map[string]string, len(TypeURLs)),
		streams: make(map[streamKey]*streamState),
		nacks:   make(map[string]map[string]nackState),
		ready:   make(chan struct{}),
	}
	// A prefix unique to this process: a client that reconnects after a restart presents a
	// version of the previous process, which the cache then treats as unknown and answers
	// with everything it has.
	prefix := strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	cacheLog := logAdapter{s.log}
	caches := make(map[string]cachev3.Cache, len(TypeURLs))
	for _, t := range TypeURLs {
		c := cachev3.NewLinearCache(t, cachev3.WithVersionPrefix(prefix), cachev3.WithLogger(cacheLog))
		s.caches[t] = c
		caches[t] = c
		s.hashes[t] = map[string]string{}
	}
	s.mux = &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return r.GetTypeUrl() },
		Caches:        caches,
	}
	s.applied.Store(&translate.Resources{})
	return s
}

// Update schedules resources to be served: they are applied Debounce after the last call,
// at most MaxDebounce after the first call not yet applied; the latest call wins. The caller
// must not modify r afterwards.
func (s *Server) Update(r *translate.Resources) {
	if r == nil {
		r = &translate.Resources{}
	}
	s.metrics.updates.Inc()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = r
	if !s.hasPending {
		s.hasPending = true
		s.first = now
		s.deadline = now.Add(s.opts.Debounce)
		if s.timer == nil {
			s.timer = time.AfterFunc(s.opts.Debounce, s.flush)
		} else {
			s.timer.Reset(s.opts.Debounce)
		}
		return
	}
	s.deadline = now.Add(s.opts.Debounce)
	if last := s.first.Add(s.opts.MaxDebounce); s.deadline.After(last) {
		s.deadline = last
	}
	s.timer.Reset(s.deadline.Sub(now))
}

// Flush applies the pending update now, without waiting for the debounce (benchmarks, and
// callers that must know the update is served). It returns when it is applied.
func (s *Server) Flush() { s.applyPending(true) }

// flush applies the pending update if it is due. The timer may fire early when Update reset
// it while it was firing; the reset timer fires again at the deadline.
func (s *Server) flush() { s.applyPending(false) }

func (s *Server) applyPending(force bool) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.mu.Lock()
	if !s.hasPending || (!force && time.Now().Before(s.deadline)) {
		s.mu.Unlock()
		return
	}
	r, first := s.pending, s.first
	s.pending, s.hasPending = nil, false
	s.mu.Unlock()

	s.apply(r)
	s.metrics.updateDelay.Observe(time.Since(first).Seconds())
	if s.opts.OnApply != nil {
		s.opts.OnApply(r)
	}
}

// apply hands the resources whose hash changed to the caches. Called with applyMu held.
func (s *Server) apply(r *translate.Resources) {
	start := time.Now()
	type change struct {
		hashes map[string]string
		upd    map[string]types.Resource
		del    []string
	}
	s.stateMu.Lock()
	old := s.hashes
	s.stateMu.Unlock()
	// Encoding dominates the cost of an apply; the three types are hashed in parallel.
	var results [len(TypeURLs)]change
	var wg sync.WaitGroup
	for i, t := range TypeURLs {
		wg.Go(func() {
			c := &results[i]
			switch t {
			case apiv1alpha1.ClusterTypeURL:
				c.hashes, c.upd, c.del = diff(s.log, t, old[t], r.Clusters)
			case apiv1alpha1.EndpointTypeURL:
				c.hashes, c.upd, c.del = diff(s.log, t, old[t], r.Endpoints)
			case apiv1alpha1.RouteConfigurationTypeURL:
				c.hashes, c.upd, c.del = diff(s.log, t, old[t], r.Routes)
			}
		})
	}
	wg.Wait()
	changes := make(map[string]change, len(TypeURLs))
	for i, t := range TypeURLs {
		changes[t] = results[i]
		s.metrics.resources.WithLabelValues(t).Set(float64(len(results[i].hashes)))
	}

	// Publish the hashes and resources before the caches push, so that an ACK that races
	// the push finds the hash it acknowledges.
	hashes := make(map[string]map[string]string, len(TypeURLs))
	for t, c := range changes {
		hashes[t] = c.hashes
	}
	s.stateMu.Lock()
	s.hashes = hashes
	// A NACK concerns one version of a resource: forget those of versions no longer served.
	for t, nm := range s.nacks {
		for name, n := range nm {
			if hashes[t][name] != n.hash {
				delete(nm, name)
			}
		}
	}
	s.stateMu.Unlock()
	s.applied.Store(r)

	// Make before break: new and changed resources in dependency order (clusters, endpoints,
	// routes), then removals in the reverse order, so that a route never names a cluster the
	// client was told is gone.
	for _, t := range TypeURLs {
		if c := changes[t]; len(c.upd) > 0 || (t == apiv1alpha1.RouteConfigurationTypeURL && len(c.del) > 0) {
			var del []string
			if t == apiv1alpha1.RouteConfigurationTypeURL {
				del = c.del
			}
			if err := s.caches[t].UpdateResources(c.upd, del); err != nil {
				s.log.Error("xds: updating the cache", "type", t, "err", err)
			}
		}
	}
	for i := len(TypeURLs) - 1; i >= 0; i-- {
		t := TypeURLs[i]
		if c := changes[t]; t != apiv1alpha1.RouteConfigurationTypeURL && len(c.del) > 0 {
			if err := s.caches[t].UpdateResources(nil, c.del); err != nil {
				s.log.Error("xds: updating the cache", "type", t, "err", err)
			}
		}
	}

	v := s.version.Add(1)
	s.readyOnce.Do(func() { close(s.ready) })
	s.metrics.applies.Inc()
	s.metrics.applyDuration.Observe(time.Since(start).Seconds())
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		attrs := []any{"version", v}
		for _, t := range TypeURLs {
			attrs = append(attrs, shortType(t), fmt.Sprintf("%d (+/-%d, -%d)", len(changes[t].hashes), len(changes[t].upd), len(changes[t].del)))
		}
		s.log.Debug("xds: applied", attrs...)
	}
}

// diff hashes the deterministic encoding of each resource and returns the new hashes, the
// resources whose hash changed and the names that disappeared.
func diff[M proto.Message](log *slog.Logger, typeURL string, old map[string]string, in map[string]M) (map[string]string, map[string]types.Resource, []string) {
	hashes := make(map[string]string, len(in))
	var upd map[string]types.Resource
	for name, m := range in {
		b, err := cachev3.MarshalResource(m)
		if err != nil {
			// Cannot happen with well-formed messages; the resource is left out rather
			// than served half-encoded.
			log.Error("xds: encoding a resource", "type", typeURL, "name", name, "err", err)
			continue
		}
		h := cachev3.HashResource(b)
		hashes[name] = h
		if old[name] != h {
			if upd == nil {
				upd = make(map[string]types.Resource)
			}
			upd[name] = m
		}
	}
	var del []string
	for name := range old {
		if _, ok := hashes[name]; !ok {
			del = append(del, name)
		}
	}
	return hashes, upd, del
}

// Resources returns the resources last applied (not those still debounced). They must not
// be modified.
func (s *Server) Resources() *translate.Resources { return s.applied.Load() }

// Ready is closed once the first update is applied. A server that answers before it
// has a configuration tells clients that reconnect after a restart that their resources do
// not exist; the controller's binary waits for Ready before it serves.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Version counts the applied updates: it changes each time Update's resources reach the
// caches.
func (s *Server) Version() uint64 { return s.version.Load() }

// Hash returns the version of the applied resource typeURL/name: the hex SHA-256 of its
// deterministic encoding (what delta clients see as its version); "" if there is none.
func (s *Server) Hash(typeURL, name string) string {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.hashes[typeURL][name]
}

// State returns what connected clients made of the current version of typeURL/name.
func (s *Server) State(typeURL, name string) ResourceState {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.stateLocked(typeURL, name)
}

// States calls f with the state of each resource; it holds the server's state lock for the
// whole walk, so f must be short and must not call back into the server.
func (s *Server) States(f func(state func(typeURL, name string) ResourceState)) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	f(s.stateLocked)
}

func (s *Server) stateLocked(typeURL, name string) ResourceState {
	var st ResourceState
	h, ok := s.hashes[typeURL][name]
	if !ok {
		return st
	}
	if n, ok := s.nacks[typeURL][name]; ok && n.hash == h {
		st.Nack = n.message
	}
	for _, ss := range s.streams {
		if _, ok := ss.sent[typeURL][name]; ok {
			st.Sent = true
		}
		if ss.acked[typeURL][name] == h {
			st.Acked = true
			st.Sent = true
			break
		}
	}
	return st
}

// Streams returns the number of connected streams.
func (s *Server) Streams() int {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return len(s.streams)
}

// Serve serves xDS on l until ctx is done, then stops gracefully (streams are closed; the
// server waits for them at most a few seconds).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	g := grpc.NewServer(
		// Long-lived streams through NATs and load balancers: ping idle connections, drop
		// dead ones, and let clients ping every 15 s without being sent GOAWAY.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(10000),
		grpc.MaxRecvMsgSize(16<<20),
	)
	xs := serverv3.NewServer(ctx, s.mux, callbacks{s})
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(g, xs)
	endpointservice.RegisterEndpointDiscoveryServiceServer(g, xs)

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			g.Stop()
		}
	}()
	s.log.Info("xds: serving", "address", l.Addr().String())
	err := g.Serve(l)
	if ctx.Err() != nil {
		<-stopped
		s.mu.Lock()
		if s.timer != nil {
			s.timer.Stop()
		}
		s.mu.Unlock()
		if err == nil || errors.Is(err, grpc.ErrServerStopped) {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("xds: serving on %s: %w", l.Addr(), err)
	}
	return nil
}

func shortType(t string) string {
	switch t {
	case apiv1alpha1.ClusterTypeURL:
		return "clusters"
	case apiv1alpha1.EndpointTypeURL:
		return "endpoints"
	case apiv1alpha1.RouteConfigurationTypeURL:
		return "routes"
	}
	return t
}

// logAdapter gives go-control-plane's logger interface to slog. go-control-plane logs every
// watch at Info level; that is debug detail here.
type logAdapter struct{ l *slog.Logger }

func (a logAdapter) Debugf(f string, args ...any) { a.logf(slog.LevelDebug, f, args) }
func (a logAdapter) Infof(f string, args ...any)  { a.logf(slog.LevelDebug, f, args) }
func (a logAdapter) Warnf(f string, args ...any)  { a.logf(slog.LevelWarn, f, args) }
func (a logAdapter) Errorf(f string, args ...any) { a.logf(slog.LevelError, f, args) }

func (a logAdapter) logf(level slog.Level, f string, args []any) {
	if a.l.Enabled(context.Background(), level) {
		a.l.Log(context.Background(), level, "go-control-plane: "+fmt.Sprintf(f, args...))
	}
}
