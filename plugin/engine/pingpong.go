package engine

import (
	"fmt"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// The ping-pong pool serves codecs that cannot multiplex (codecs.Multiplexes is false): a
// response can only be paired with its request by arriving on the same connection, next.
// So each connection carries one request at a time and request ids are left as the client
// sent them. The pool keeps up to Cluster.ConnectionsPerEndpoint idle connections for reuse
// and closes the others once they are free. A request that finds no idle connection waits,
// in order, and the pool dials one new connection for each waiting request that has none on
// the way; whichever connection frees first serves the oldest waiting request. The number of
// connections to an endpoint is thus bounded by the requests sent to it, hence by the
// cluster's MaxRequests (oneway ones aside, which hold a connection only while written), and
// MaxPendingRequests bounds the waiting ones.
//
// A connection whose request is abandoned with its response outstanding (route timeout,
// client gone) is closed: its late response would otherwise be taken for the next request.
// Everything here runs with the pool lock held unless its comment says otherwise.

// enqueuePingPong writes p on an idle connection, or makes it wait for one and returns a new
// connection to dial when every waiting request needs one.
func (pl *pool) enqueuePingPong(p *pending, c *clusterCfg) (dial *upstream, reason codecs.Reason, err error) {
	cl := pl.cl
	if n := len(pl.idle); n > 0 {
		u := pl.idle[n-1]
		pl.idle[n-1] = nil
		pl.idle = pl.idle[:n-1]
		u.idleIdx = -1
		if !p.oneway {
			pl.track(p)
		}
		if err := pl.write(u, p); err != nil {
			pl.remove(p)
			pl.park(u)
			return nil, codecs.ReasonInternal, err
		}
		if p.oneway {
			pl.park(u) // nothing waits: an idle connection was free
		}
		return nil, 0, nil
	}
	if cl.queued.Load() >= c.maxPending {
		return nil, codecs.ReasonOverLimit, fmt.Errorf("cluster %s: %d requests waiting for a connection", cl.name, c.maxPending)
	}
	p.state = stQueued
	p.up = nil
	pl.waitq = append(pl.waitq, p)
	pl.waiting++
	cl.queued.Add(1)
	if !p.oneway {
		pl.track(p)
	}
	if pl.waiting > pl.connecting {
		u := &upstream{p: pl, slot: len(pl.all), idleIdx: -1, state: upConnecting, codec: pl.e.codec.NewConn()}
		pl.all = append(pl.all, u)
		pl.connecting++
		u.connectTimer = time.AfterFunc(c.connectTimeout, u.onConnectTimeout)
		dial = u
	}
	return dial, 0, nil
}

// write encodes p, which the pool holds and no queue lists, and writes it on u, which is
// ready and free. p is u's request while the codec encodes it: should the codec panic, the
// recovery closes u and that answers p. On error nothing is written, and p, still held, is
// not u's request.
func (pl *pool) write(u *upstream, p *pending) error {
	p.up, p.state, u.cur = u, stSent, p
	buf, err := p.req.AppendTo(pl.wbuf[:0])
	if err != nil {
		u.cur = nil
		return fmt.Errorf("encode request: %w: %w", errMutation, err)
	}
	u.conn.Write(buf)
	pl.wbuf = keep(buf)
	if p.oneway {
		p.state, u.cur = stDone, nil
	}
	return nil
}

// serve gives u, ready and free, to the oldest waiting requests (oneway ones free it again at
// once), then parks it if it is still free. It returns the requests that could not be
// encoded, removed from the pool, for the caller to answer after unlocking.
func (pl *pool) serve(u *upstream) (failed []*pending) {
	for u.cur == nil && pl.waiting > 0 && pl.waitHead < len(pl.waitq) {
		p := pl.waitq[pl.waitHead]
		pl.waitq[pl.waitHead] = nil
		pl.waitHead++
		if p.state != stQueued {
			continue // removed while waiting
		}
		// Out of the queue before the codec runs, so that a panic leaves the counts right.
		pl.waiting--
		pl.cl.queued.Add(-1)
		if err := pl.write(u, p); err != nil {
			pl.e.stats.mutationErrors.Add(1)
			pl.e.log.Error("meltemi engine: request mutation failed", "route", p.route.name, "error", err)
			pl.remove(p)
			failed = append(failed, p)
		}
	}
	pl.compactWaitq()
	if u.cur == nil {
		pl.park(u)
	}
	return failed
}

// compactWaitq moves the live part of the queue to the front of its array once half of it
// is consumed (all of it, most often), so that appends reuse the array instead of growing it.
func (pl *pool) compactWaitq() {
	if pl.waiting == 0 {
		clear(pl.waitq[pl.waitHead:])
		pl.waitq, pl.waitHead = pl.waitq[:0], 0
		return
	}
	if pl.waitHead < len(pl.waitq)/2 {
		return
	}
	n := copy(pl.waitq, pl.waitq[pl.waitHead:])
	clear(pl.waitq[n:])
	pl.waitq, pl.waitHead = pl.waitq[:n], 0
}

// park keeps u, ready and free, among the idle connections, or closes it when enough are.
func (pl *pool) park(u *upstream) {
	if len(pl.idle) >= pl.cl.cfg.Load().conns || pl.closed {
		pl.discard(u, true)
		return
	}
	u.idleIdx = len(pl.idle)
	pl.idle = append(pl.idle, u)
}

// discard forgets u; closeConn closes the connection when it is established.
func (pl *pool) discard(u *upstream, closeConn bool) {
	switch u.state {
	case upClosed:
		return
	case upConnecting:
		pl.connecting--
		u.connectTimer.Stop()
	case upReady:
		pl.e.stats.upstreamCloses.Add(1)
		if closeConn {
			u.conn.Close()
		}
	}
	u.state = upClosed
	if i := u.idleIdx; i >= 0 {
		last := len(pl.idle) - 1
		pl.idle[i] = pl.idle[last]
		pl.idle[i].idleIdx = i
		pl.idle[last] = nil
		pl.idle = pl.idle[:last]
		u.idleIdx = -1
	}
	last := len(pl.all) - 1
	pl.all[u.slot] = pl.all[last]
	pl.all[u.slot].slot = u.slot
	pl.all[last] = nil
	pl.all = pl.all[:last]
}

// readyPingPong puts a new connection to work. The pool lock is not held.
func (u *upstream) readyPingPong(c UpstreamConn) {
	pl := u.p
	failed := func() []*pending {
		pl.mu.Lock()
		defer pl.mu.Unlock()
		if u.state != upConnecting {
			// Too late: the connect timed out or the pool closed.
			c.Close()
			return nil
		}
		u.connectTimer.Stop()
		pl.connecting--
		u.state, u.conn = upReady, c
		defer pl.pokeDrain()
		return pl.serve(u)
	}()
	for _, p := range failed {
		p.failed(codecs.ReasonInternal, "request header mutation failed")
	}
}

// connectFailedPingPong forgets u, which failed to connect, and removes the waiting requests
// left without a connection on the way (the newest ones), for the caller to retry elsewhere.
func (pl *pool) connectFailedPingPong(u *upstream) (retry []*pending) {
	pl.discard(u, false)
	for pl.waiting > pl.connecting {
		last := len(pl.waitq) - 1
		p := pl.waitq[last]
		pl.waitq[last] = nil
		pl.waitq = pl.waitq[:last]
		if p.state == stQueued {
			pl.remove(p)
			retry = append(retry, p)
		}
	}
	pl.compactWaitq()
	return retry
}

// responsePingPong hands f to the request u carries and gives u to the next one. The pool
// lock is not held.
func (u *upstream) responsePingPong(f codecs.Frame) {
	pl := u.p
	var failed []*pending
	p := func() *pending {
		pl.mu.Lock()
		defer pl.mu.Unlock()
		p := u.cur
		if p == nil || u.state != upReady {
			return nil // an answer to an abandoned request or to nothing
		}
		u.cur = nil
		pl.remove(p)
		failed = pl.serve(u)
		return p
	}()
	if p == nil {
		pl.e.stats.dropped.Add(1)
	} else {
		p.deliver(f)
	}
	for _, p := range failed {
		p.failed(codecs.ReasonInternal, "request header mutation failed")
	}
}

// closedPingPong fails the request u carries, if any. closeConn closes the connection from
// the engine's side. The pool lock is not held.
func (u *upstream) closedPingPong(closeConn bool) {
	pl := u.p
	connecting := false
	p := func() *pending {
		pl.mu.Lock()
		defer pl.mu.Unlock()
		switch u.state {
		case upClosed:
			return nil
		case upConnecting:
			connecting = true
			return nil
		}
		p := u.cur
		if p != nil {
			u.cur = nil
			pl.remove(p)
		}
		pl.discard(u, closeConn)
		return p
	}()
	if connecting {
		// The host reports a failure instead, but be safe.
		u.failConnect("closed while connecting")
	}
	if p != nil {
		p.failed(codecs.ReasonUnavailable, "upstream "+pl.ep.addr+" closed")
	}
}

// closePingPong closes every connection of a closing pool and returns the two-way requests
// it held, removed, for the caller to answer.
func (pl *pool) closePingPong() (held []*pending) {
	for len(pl.all) > 0 {
		u := pl.all[len(pl.all)-1]
		if p := u.cur; p != nil {
			u.cur = nil
			pl.remove(p)
			held = append(held, p)
		}
		pl.discard(u, true)
	}
	for _, p := range pl.waitq[pl.waitHead:] {
		if p.state == stQueued {
			pl.remove(p)
			if !p.oneway {
				held = append(held, p)
			}
		}
	}
	pl.compactWaitq()
	return held
}
