package engine

import (
	"errors"
	"fmt"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// errDrained is enqueue's answer from a pool of an endpoint that an update removed and
// whose draining finished: the request was balanced on a configuration older than the
// update, and the session balances it again on the current one.
var errDrained = errors.New("endpoint removed by a configuration update")

// Update replaces the engine's routes and clusters while it runs; it is how routes received
// over xDS (RDS, CDS, EDS) take effect. It compiles the new configuration completely before
// changing anything: invalid input returns an error naming the route or cluster at fault
// and the engine keeps serving the previous configuration.
//
// Then it swaps, atomically, the route table that new requests load (requests already
// routed keep the route and cluster they started with) and the configuration of every
// cluster. Clusters are matched by name and their endpoints by address:
//
//   - an endpoint present before and after keeps its pools and connections;
//   - an endpoint added receives traffic from the next request on;
//   - an endpoint removed (or whose cluster is removed) drains: it is balanced to no more,
//     the requests in flight and waiting for a connection on it complete, and its
//     connections close once they carry no request, or after Options.DrainTimeout, when
//     the requests left get "unavailable" errors;
//   - changed settings (LB policy, weights, hash attributes, limits, connect timeout and
//     attempts) apply to requests balanced from then on. ConnectionsPerEndpoint applies to
//     the pools created afterwards: an existing pool keeps its size.
//
// Downstream connections are never touched. Update is safe to call concurrently with
// traffic and with itself (updates are serialised).
func (e *Engine) Update(routes []Route, clusters []Cluster) error {
	if e.refuse != "" {
		return errors.New("engine: update: the engine refuses every request (invalid filter configuration)")
	}
	e.updateMu.Lock()
	defer e.updateMu.Unlock()
	if e.closed.Load() {
		return errors.New("engine: update: engine closed")
	}
	old := e.table.Load()
	t, swaps, err := e.compile(routes, clusters, old)
	if err != nil {
		return fmt.Errorf("engine: update: %w", err)
	}
	// Cluster configurations first, so that a request routed on the new table finds them;
	// a request routed on the old one balances on whichever it loads, both being valid.
	for _, sw := range swaps {
		sw.cl.cfg.Store(sw.next)
	}
	if old.initial {
		// The first configuration: the requests that waited for it are routed on it.
		e.releaseHeld(t, "")
	} else {
		e.table.Store(t)
	}

	var removed []*endpoint
	for _, sw := range swaps {
		if sw.prev == nil {
			continue
		}
		kept := make(map[*endpoint]bool, len(sw.next.eps))
		for _, ep := range sw.next.eps {
			kept[ep] = true
		}
		for _, ep := range sw.prev.eps {
			if !kept[ep] {
				removed = append(removed, ep)
			}
		}
	}
	for name, cl := range old.clusters {
		if _, ok := t.clusters[name]; !ok {
			removed = append(removed, cl.cfg.Load().eps...)
		}
	}
	// Forget the endpoints whose draining finished.
	live := e.draining[:0]
	for _, ep := range e.draining {
		if !ep.drained() {
			live = append(live, ep)
		}
	}
	clear(e.draining[len(live):])
	e.draining = live
	for _, ep := range removed {
		ep.startDrain(e.drain)
		e.draining = append(e.draining, ep)
	}
	if len(removed) > 0 {
		e.log.Info("meltemi engine: configuration updated", "routes", len(t.routes),
			"clusters", len(t.clusters), "draining_endpoints", len(removed))
	}
	return nil
}

// startDrain marks ep removed and drains its pools: see Update.
func (ep *endpoint) startDrain(timeout time.Duration) {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.draining {
		return
	}
	ep.draining = true
	if ps := ep.pools.Load(); ps != nil {
		for _, p := range *ps {
			p.startDrain(timeout)
		}
	}
}

// drained reports whether every pool of ep, which is draining, is closed.
func (ep *endpoint) drained() bool {
	for _, p := range ep.allPools() {
		p.mu.Lock()
		closed := p.closed
		p.mu.Unlock()
		if !closed {
			return false
		}
	}
	return true
}

// startDrain lets the pool's requests finish and closes its connections once they have, or
// at the latest after timeout.
func (pl *pool) startDrain(timeout time.Duration) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.closed || pl.draining {
		return
	}
	pl.draining = true
	pl.drainDeadline = pl.e.now() + int64(timeout)
	// The check runs on the timer's goroutine, never under the caller's locks.
	pl.drainTimer = time.AfterFunc(0, pl.onDrainTimer)
}

// pokeDrain asks a draining pool to check whether it is done, after a request left it or a
// connection was established. The pool lock is held.
func (pl *pool) pokeDrain() {
	if pl.draining && !pl.closed {
		pl.drainTimer.Reset(0)
	}
}

// onDrainTimer closes a draining pool once it holds no request and dials nothing, or when
// its drain timeout expires.
func (pl *pool) onDrainTimer() {
	defer func() {
		if v := recover(); v != nil {
			pl.e.recovered("drain timer", v)
		}
	}()
	var held []*pending
	func() {
		pl.mu.Lock()
		defer pl.mu.Unlock()
		if pl.closed {
			return
		}
		if left := pl.drainDeadline - pl.e.now(); left > 0 && !pl.idleLocked() {
			pl.drainTimer.Reset(time.Duration(left))
			return
		}
		pl.drained = true
		held = pl.closeLocked()
	}()
	if len(held) > 0 {
		pl.e.log.Warn("meltemi engine: drain timeout of a removed endpoint", "addr", pl.ep.addr, "requests", len(held))
	}
	for _, p := range held {
		p.failed(codecs.ReasonUnavailable, "upstream "+pl.ep.addr+" removed: drain timeout")
	}
}

// idleLocked reports whether the pool holds no request, waiting or in flight. The pool lock is held.
func (pl *pool) idleLocked() bool {
	if pl.pingPong {
		// Connections being established for requests no longer waiting are not needed.
		if pl.waiting > 0 {
			return false
		}
		for _, u := range pl.all {
			if u.cur != nil {
				return false
			}
		}
		return true
	}
	if len(pl.inflight) > 0 {
		return false
	}
	for _, u := range pl.conns {
		// Oneway requests waiting for their connection (two-way ones are in inflight).
		if u != nil && u.state == upConnecting && len(u.queued) > u.dead {
			return false
		}
	}
	return true
}
