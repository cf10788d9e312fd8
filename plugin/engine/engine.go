package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/plugin/engine/lb"
)

// Engine proxies the downstream connections of one filter configuration. It owns the
// upstream connection pools, which all its sessions share. It is safe for concurrent use.
type Engine struct {
	codec    codecs.Codec
	routes   []*route
	clusters map[string]*cluster
	idle     time.Duration
	dialer   Dialer
	log      *slog.Logger
	start    time.Time
	stats    counters
	closed   atomic.Bool
	// refuse, when set, is why every request is refused (see Refusing).
	refuse string
}

// New compiles cfg. Every error names the route, cluster or field at fault.
func New(cfg Config, opts Options) (*Engine, error) {
	if cfg.Codec == nil {
		return nil, errors.New("engine: no codec")
	}
	if opts.Dialer == nil {
		return nil, errors.New("engine: no dialer")
	}
	if cfg.IdleTimeout < 0 {
		return nil, errors.New("engine: negative idle timeout")
	}
	clusters, err := compileClusters(cfg.Clusters)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	routes, err := compileRoutes(cfg.Routes, clusters)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{codec: cfg.Codec, routes: routes, clusters: clusters, idle: cfg.IdleTimeout,
		dialer: opts.Dialer, log: log, start: time.Now()}
	for _, cl := range clusters {
		cl.e = e
	}
	return e, nil
}

// Refusing returns an engine for a filter whose configuration is invalid: each session
// answers its first request with an internal error carrying msg (where the codec can build
// one) and closes its connection. codec may be nil when even the protocol is unknown; the
// connection is then closed at the first bytes. logger may be nil.
func Refusing(codec codecs.Codec, msg string, logger *slog.Logger) *Engine {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Engine{codec: codec, refuse: msg, log: logger, start: time.Now()}
}

// now is the monotonic time since the engine started, in nanoseconds.
func (e *Engine) now() int64 { return int64(time.Since(e.start)) }

// match returns the first route whose conditions hold for f, or nil.
func (e *Engine) match(f codecs.Frame) *route {
	for _, r := range e.routes {
		if r.matches(f) {
			return r
		}
	}
	return nil
}

// Close closes every upstream connection and answers the requests still waiting with
// "unavailable" errors. Sessions keep working but new requests get errors; the host closes
// them. Used when a configuration is replaced.
func (e *Engine) Close() {
	if e.closed.Swap(true) {
		return
	}
	for _, cl := range e.clusters {
		for _, ep := range cl.eps {
			for _, p := range ep.allPools() {
				p.close()
			}
		}
	}
}

// recovered logs and counts a panic caught at an entry point.
func (e *Engine) recovered(where string, v any) {
	e.stats.panics.Add(1)
	e.log.Error("meltemi engine: recovered from a panic", "where", where, "panic", fmt.Sprint(v),
		"stack", string(debug.Stack()))
}

// cluster is a compiled Cluster.
type cluster struct {
	e              *Engine
	name           string
	eps            []*endpoint
	bal            lb.Balancer
	hashAttrs      []string
	conns          int
	maxPending     int64
	maxRequests    int64
	connectTimeout time.Duration
	maxAttempts    int

	active atomic.Int64 // requests owned by a pool: waiting or in flight
	queued atomic.Int64 // requests waiting for a connection
}

// pick chooses an endpoint for f, avoiding the endpoints whose index bits are set in tried
// while others remain. nil: no endpoint.
func (cl *cluster) pick(f codecs.Frame, tried uint64) *endpoint {
	if len(cl.eps) == 0 {
		return nil
	}
	var h uint64
	hashed := false
	if len(cl.hashAttrs) > 0 {
		h = lb.Seed
		for _, a := range cl.hashAttrs {
			if v, ok := f.Attribute(a); ok {
				hashed = true
				h = lb.HashString(h, v)
			}
			h = lb.HashUint64(h, 0xff) // separator: ("ab","c") and ("a","bc") differ
		}
	}
	i := cl.bal.Pick(h, hashed)
	if tried != 0 {
		// Retries walk on from the balancer's choice to the next endpoint not tried yet
		// (only the first 64 endpoints are tracked).
		for n := 0; n < len(cl.eps) && i < 64 && tried&(1<<i) != 0; n++ {
			i = (i + 1) % len(cl.eps)
		}
	}
	return cl.eps[i]
}

// endpoint is one upstream address of a cluster, with its pools, one per protocol mode.
type endpoint struct {
	idx    int // in cluster.eps
	addr   string
	cl     *cluster
	active atomic.Int64 // for least request

	mu    sync.Mutex              // serialises pool creation
	pools atomic.Pointer[[]*pool] // copy on write: read on every request without a lock
}

// pool returns the endpoint's pool for mode, creating it on first use.
func (ep *endpoint) pool(mode string) *pool {
	if ps := ep.pools.Load(); ps != nil {
		for _, p := range *ps {
			if p.mode == mode {
				return p
			}
		}
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	var cur []*pool
	if ps := ep.pools.Load(); ps != nil {
		cur = *ps
		for _, p := range cur {
			if p.mode == mode {
				return p
			}
		}
	}
	p := newPool(ep, mode)
	next := append(append(make([]*pool, 0, len(cur)+1), cur...), p)
	ep.pools.Store(&next)
	if ep.cl.e.closed.Load() {
		p.close()
	}
	return p
}

func (ep *endpoint) allPools() []*pool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ps := ep.pools.Load(); ps != nil {
		return *ps
	}
	return nil
}

// Update replaces the engine's routes and clusters while it runs (see update.go).
func (e *Engine) Update(routes []Route, clusters []Cluster) error {
	return errors.New("engine: Update: not implemented yet")
}
