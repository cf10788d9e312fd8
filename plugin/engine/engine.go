package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/plugin/engine/lb"
)

// Engine proxies the downstream connections of one filter configuration. It owns the
// upstream connection pools, which all its sessions share. It is safe for concurrent use.
// Its routes and clusters can be replaced while it runs (Update).
type Engine struct {
	codec  codecs.Codec
	idle   time.Duration
	drain  time.Duration
	dialer Dialer
	log    *slog.Logger
	start  time.Time
	stats  counters
	closed atomic.Bool
	// refuse, when set, is why every request is refused (see Refusing).
	refuse string
	// rng is the state of the generator that samples mirrored requests (random).
	rng atomic.Uint64

	// table is the route table; each request loads it once and keeps what it loaded, so an
	// Update never changes the routing of a request already routed.
	table atomic.Pointer[table]

	// updateMu serialises Update and Close.
	updateMu sync.Mutex
	// draining lists the endpoints removed by updates whose pools may still be open, for
	// Close. Guarded by updateMu.
	draining []*endpoint

	// Requests held until the first Update (initial.go), guarded by holdMu; the table
	// leaves its initial state under holdMu too.
	holdMu       sync.Mutex
	held         []heldRequest
	initialTimer *time.Timer
}

// table is one compiled set of routes and the clusters they name. It is immutable.
type table struct {
	routes   []*route
	clusters map[string]*cluster
	// initial marks the empty table of an engine waiting for its first Update
	// (Options.WaitForUpdate): requests are held until then.
	initial bool
}

// New compiles cfg. Every error names the route, cluster or field at fault. cfg may have no
// routes (an RDS configuration before its first Update): requests then get no_route.
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
	if opts.DrainTimeout < 0 {
		return nil, errors.New("engine: negative drain timeout")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Engine{codec: cfg.Codec, idle: cfg.IdleTimeout, drain: orDefault(opts.DrainTimeout, DefaultDrainTimeout),
		dialer: opts.Dialer, log: log, start: time.Now()}
	e.rng.Store(rand.Uint64())
	t, swaps, err := e.compile(cfg.Routes, cfg.Clusters, nil)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	for _, sw := range swaps {
		sw.cl.cfg.Store(sw.next)
	}
	if opts.WaitForUpdate {
		if len(t.routes) > 0 {
			return nil, errors.New("engine: routes given to an engine that waits for its first update")
		}
		if opts.InitialFetchTimeout < 0 {
			return nil, errors.New("engine: negative initial fetch timeout")
		}
		t.initial = true
		e.initialTimer = time.AfterFunc(orDefault(opts.InitialFetchTimeout, DefaultInitialFetchTimeout), e.initialTimeout)
	}
	e.table.Store(t)
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

// random returns a pseudo-random number: SplitMix64 over an atomic counter, so that every
// session of the engine, on any worker, draws from it without a lock. It is for sampling,
// not for anything an attacker must not predict.
func (e *Engine) random() uint64 {
	z := e.rng.Add(0x9e3779b97f4a7c15)
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// now is the monotonic time since the engine started, in nanoseconds.
func (e *Engine) now() int64 { return int64(time.Since(e.start)) }

// match returns the first route of t whose conditions hold for f, or nil.
func (t *table) match(f codecs.Frame) *route {
	for _, r := range t.routes {
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
	e.updateMu.Lock()
	defer e.updateMu.Unlock()
	if e.closed.Swap(true) {
		return
	}
	e.releaseHeld(nil, "engine closed")
	eps := e.draining
	e.draining = nil
	if t := e.table.Load(); t != nil {
		for _, cl := range t.clusters {
			eps = append(eps, cl.cfg.Load().eps...)
		}
	}
	for _, ep := range eps {
		for _, p := range ep.allPools() {
			p.close()
		}
	}
}

// recovered logs and counts a panic caught at an entry point.
func (e *Engine) recovered(where string, v any) {
	e.stats.panics.Add(1)
	e.log.Error("meltemi engine: recovered from a panic", "where", where, "panic", fmt.Sprint(v),
		"stack", string(debug.Stack()))
}

// cluster is a destination, one per cluster name for as long as updates keep the name. Its
// settings and endpoints (clusterCfg) are replaced as a whole by updates; its request
// counters, which the limits bound, carry over.
type cluster struct {
	e    *Engine
	name string
	cfg  atomic.Pointer[clusterCfg]

	active atomic.Int64 // requests owned by a pool: waiting or in flight
	queued atomic.Int64 // requests waiting for a connection
}

// clusterCfg is a compiled Cluster. It is immutable; endpoints present in consecutive
// configurations are the same *endpoint, with their pools.
type clusterCfg struct {
	eps            []*endpoint
	bal            lb.Balancer
	hashAttrs      []string
	conns          int
	maxPending     int64
	maxRequests    int64
	connectTimeout time.Duration
	maxAttempts    int
}

// pick chooses an endpoint for f in the cluster's current configuration, avoiding the
// endpoints whose index bits are set in tried while others remain, and returns it with its
// index. nil: no endpoint.
func (cl *cluster) pick(f codecs.Frame, tried uint64) (*endpoint, int) {
	c := cl.cfg.Load()
	if len(c.eps) == 0 {
		return nil, 0
	}
	var h uint64
	hashed := false
	if len(c.hashAttrs) > 0 {
		h = lb.Seed
		for _, a := range c.hashAttrs {
			if v, ok := f.Attribute(a); ok {
				hashed = true
				h = lb.HashString(h, v)
			}
			h = lb.HashUint64(h, 0xff) // separator: ("ab","c") and ("a","bc") differ
		}
	}
	i := c.bal.Pick(h, hashed)
	if tried != 0 {
		// Retries walk on from the balancer's choice to the next endpoint not tried yet
		// (only the first 64 endpoints are tracked). Indexes are those of the configuration
		// current at each try; after an update they may point elsewhere, which only makes the
		// walk less exact.
		for n := 0; n < len(c.eps) && i < 64 && tried&(1<<i) != 0; n++ {
			i = (i + 1) % len(c.eps)
		}
	}
	return c.eps[i], i
}

// endpoint is one upstream address of a cluster, with its pools, one per protocol mode.
type endpoint struct {
	addr   string
	cl     *cluster
	active atomic.Int64 // for least request

	mu    sync.Mutex              // serialises pool creation and the start of draining
	pools atomic.Pointer[[]*pool] // copy on write: read on every request without a lock
	// draining is set, under mu, once an update removed the endpoint.
	draining bool
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
	if ep.draining {
		// Reached through a route table loaded before the update that removed the endpoint:
		// enqueue refuses with errDrained and the request is balanced again.
		p.closed, p.drained = true, true
	}
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
