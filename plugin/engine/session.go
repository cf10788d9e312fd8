package engine

import (
	"errors"
	"sync"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// maxKeptBuffer is the capacity above which a connection's scratch buffer is released after
// use instead of kept: one large frame must not pin memory for the connection's life.
const maxKeptBuffer = 64 << 10

// maxRebalance bounds how many times a request is balanced again after picking an endpoint
// that an update removed in the meantime.
const maxRebalance = 3

// Session is the engine's side of one downstream connection. The host calls OnData and
// OnClose on the connection's worker; upstream responses and timers reach the session from
// other goroutines, hence its lock.
type Session struct {
	e    *Engine
	down Downstream
	idle *time.Timer

	mu         sync.Mutex
	conn       codecs.Conn
	rbuf       []byte // bytes of an incomplete frame
	out        []byte // replies being written
	closed     bool
	cur        codecs.Frame // the request being handled, for an error reply after a panic
	curID      uint64       // its id as the client sent it
	head       *pending     // requests waiting for a response
	spare      *pending     // a finished request to reuse
	inflight   int
	lastActive int64
	// mconn decodes the copies of mirrored requests (mirror.go), encoded in mbuf; nil until
	// the first.
	mconn codecs.Conn
	mbuf  []byte
}

// NewSession starts a session for a new downstream connection; the engine writes to down.
// If the codec panics while creating its connection state, the session is returned closed
// and down is closed.
func (e *Engine) NewSession(down Downstream) *Session {
	s := &Session{e: e, down: down, lastActive: e.now()}
	e.stats.activeSessions.Add(1)
	e.stats.totalSessions.Add(1)
	if !s.newConn() {
		return s
	}
	if e.idle > 0 {
		s.mu.Lock() // onIdle reads s.idle under the lock
		s.idle = time.AfterFunc(e.idle, s.onIdle)
		s.mu.Unlock()
	}
	return s
}

// newConn creates the codec state; a panic closes the session.
func (s *Session) newConn() (ok bool) {
	defer s.recoverPanic("new session")
	if s.e.codec != nil {
		s.conn = s.e.codec.NewConn()
	}
	return true
}

// OnData handles bytes from the client: it decodes every complete frame and keeps the rest
// for the next call. data is not used after OnData returns.
func (s *Session) OnData(data []byte) {
	defer s.recoverPanic("downstream data")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(data) == 0 {
		return
	}
	s.lastActive = s.e.now()
	if s.conn == nil {
		// A refusing engine without a codec.
		s.shutdown(true)
		return
	}
	buf := data
	if len(s.rbuf) > 0 {
		s.rbuf = append(s.rbuf, data...)
		buf = s.rbuf
	}
	for len(buf) > 0 && !s.closed {
		f, n, err := s.conn.Decode(buf)
		if err != nil {
			s.decodeError(err)
			return
		}
		if f == nil {
			break
		}
		buf = buf[n:]
		s.cur, s.curID = f, f.RequestID()
		s.handle(f)
		s.cur = nil
	}
	s.flush()
	if s.closed {
		return
	}
	// Keep the incomplete tail. buf is either inside s.rbuf or inside data.
	switch {
	case len(buf) == 0:
		s.rbuf = s.rbuf[:0]
		if cap(s.rbuf) > maxKeptBuffer {
			s.rbuf = nil
		}
	case len(s.rbuf) > 0:
		s.rbuf = s.rbuf[:copy(s.rbuf, buf)]
	default:
		s.rbuf = append(s.rbuf[:0], buf...)
	}
}

// OnClose tells the session its connection closed. In-flight requests are cancelled and
// their late responses dropped.
func (s *Session) OnClose() {
	defer s.recoverPanic("downstream close")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown(false)
}

// handle deals with one decoded frame from the client.
func (s *Session) handle(f codecs.Frame) {
	switch f.Kind() {
	case codecs.KindRequest, codecs.KindOneway:
		s.route(f)
	case codecs.KindHeartbeatRequest:
		out, err := s.conn.AppendHeartbeatReply(s.out, f)
		if err != nil {
			s.e.log.Warn("meltemi engine: heartbeat reply", "error", err)
			return
		}
		s.out = out
		s.e.stats.heartbeat.Add(1)
	default:
		// Responses and stream frames from a client answer nothing the engine sent.
		s.e.log.Debug("meltemi engine: unexpected frame from a client dropped", "kind", f.Kind())
	}
}

// route finds the request's route and forwards it.
func (s *Session) route(f codecs.Frame) {
	e := s.e
	e.stats.requests.Add(1)
	if e.refuse != "" {
		s.localReply(f, codecs.ReasonInternal, e.refuse)
		s.flush()
		s.shutdown(true)
		return
	}
	// The table is loaded once: the request keeps the route it matched whatever updates
	// happen while it is in flight.
	t := e.table.Load()
	if t.initial {
		// No route configuration received yet: wait for it (initial.go).
		var held bool
		if t, held = e.hold(s, f); held {
			return
		}
		if t == nil {
			s.localReply(f, codecs.ReasonOverLimit, "too many requests waiting for the route configuration")
			return
		}
	}
	s.dispatch(t, f, s.lastActive)
}

// dispatch routes f on t and forwards it; a route timeout runs from now (engine time). The
// session lock is held.
func (s *Session) dispatch(t *table, f codecs.Frame, now int64) {
	e := s.e
	r := t.match(f)
	if r == nil {
		s.localReply(f, codecs.ReasonNoRoute, "no route matches")
		return
	}
	p := s.spare
	if p != nil {
		s.spare = nil
	} else {
		p = new(pending)
	}
	*p = pending{s: s, req: f, origID: f.RequestID(), route: r, cl: r.pickCluster(), heapIdx: -1,
		oneway: f.Kind() == codecs.KindOneway || r.isOneway(f)}
	if p.oneway {
		e.stats.oneway.Add(1)
	}
	if !r.reqMut.empty() {
		if err := applyMutation(f, &r.reqMut); err != nil {
			s.mutationError(p, "request", err)
			return
		}
	}
	if r.timeout > 0 {
		p.deadline = now + int64(r.timeout)
	}
	if len(r.mirrors) > 0 {
		// Before forward: p's frame is copied as it stands, before its pool rewrites its id.
		s.mirror(p)
	}
	s.forward(p)
}

// forward sends p to an endpoint of its cluster, one it has not tried yet if any remain.
// The session lock is held.
func (s *Session) forward(p *pending) {
	var (
		ep     *endpoint
		dial   *upstream
		reason codecs.Reason
		err    error
	)
	// An endpoint drained by an update since the request was balanced refuses it
	// (errDrained): balance again, on the configuration the update stored. Only a cluster
	// that an update removed keeps offering drained endpoints, hence the bound.
	for range maxRebalance {
		var idx int
		ep, idx = p.cl.pick(p.req, p.tried)
		if ep == nil {
			s.fail(p, codecs.ReasonNoHealthyUpstream, "cluster "+p.cl.name+" has no endpoints")
			return
		}
		p.ep, p.epIdx = ep, idx
		pl := ep.pool(s.conn.Mode())
		p.pool = pl
		if !p.oneway {
			s.link(p)
		}
		dial, reason, err = pl.enqueue(p)
		if reason == 0 || !errors.Is(err, errDrained) {
			break
		}
		s.unlink(p)
	}
	if reason != 0 {
		s.unlink(p)
		msg := "upstream " + ep.addr
		if err != nil {
			msg = err.Error()
			if errors.Is(err, errMutation) {
				s.e.stats.mutationErrors.Add(1)
				s.e.log.Error("meltemi engine: request mutation failed", "route", p.route.name, "error", err)
			}
		}
		s.fail(p, reason, msg)
		return
	}
	if dial != nil {
		s.e.stats.connects.Add(1)
		s.e.dialer.Dial(ep.addr, dial)
	}
}

// fail answers p with an error reply (none for oneway requests). The session lock is held.
func (s *Session) fail(p *pending, reason codecs.Reason, msg string) {
	if p.oneway {
		s.e.stats.localReply(reason) // counted, though nobody hears it
		return
	}
	if p.req.RequestID() != p.origID {
		if err := p.req.SetRequestID(p.origID); err != nil {
			s.e.log.Error("meltemi engine: restore request id", "error", err)
			return
		}
	}
	s.localReply(p.req, reason, msg)
}

// localReply appends an error reply to req to the output. The session lock is held.
func (s *Session) localReply(req codecs.Frame, reason codecs.Reason, msg string) {
	s.e.stats.localReply(reason)
	out, err := s.conn.AppendErrorReply(s.out, req, reason, msg)
	if err != nil {
		// Oneway requests and protocols without a way to address the reply.
		s.e.log.Debug("meltemi engine: no error reply", "reason", reason, "error", err)
		return
	}
	s.out = out
}

func (s *Session) mutationError(p *pending, what string, err error) {
	s.e.stats.mutationErrors.Add(1)
	s.e.log.Error("meltemi engine: header mutation failed", "route", p.route.name, "frame", what, "error", err)
	s.fail(p, codecs.ReasonInternal, what+" header mutation failed")
}

// flush writes the output. The session lock is held.
func (s *Session) flush() {
	if len(s.out) == 0 || s.closed {
		s.out = s.out[:0]
		return
	}
	s.down.Write(s.out)
	s.out = s.out[:0]
	if cap(s.out) > maxKeptBuffer {
		s.out = nil
	}
}

// decodeError answers a stream the codec cannot read, where the protocol allows a reply
// without a request, then closes it.
func (s *Session) decodeError(err error) {
	s.e.stats.decodeErrors.Add(1)
	s.e.log.Info("meltemi engine: closing a client connection that sent an undecodable frame", "error", err)
	if out, rerr := s.conn.AppendErrorReply(s.out, nil, codecs.ReasonBadRequest, err.Error()); rerr == nil {
		s.out = out
		s.e.stats.localReply(codecs.ReasonBadRequest)
	}
	s.flush()
	s.shutdown(true)
}

// deliver writes the upstream's response to p, which the pool no longer holds.
func (s *Session) deliver(p *pending, resp codecs.Frame) {
	defer s.recoverPanic("response delivery")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !p.linked {
		s.e.stats.dropped.Add(1)
		return
	}
	s.unlink(p)
	s.lastActive = s.e.now()
	// s.cur stays set if a codec panics, so that recoverPanic can answer p.
	s.cur, s.curID = p.req, p.origID
	s.writeResponse(p, resp)
	s.cur = nil
	s.flush()
	// Nothing references p now (see pool.take): keep it for the next request, which saves an
	// allocation per request. Timed-out or failed requests are left to the GC: a queue of a
	// connection being established may still point at them.
	*p = pending{}
	s.spare = p
}

func (s *Session) writeResponse(p *pending, resp codecs.Frame) {
	if err := resp.SetRequestID(p.origID); err != nil {
		s.e.log.Error("meltemi engine: restore response id", "error", err)
		s.fail(p, codecs.ReasonInternal, "response id")
		return
	}
	if !p.route.respMut.empty() {
		if err := applyMutation(resp, &p.route.respMut); err != nil {
			s.mutationError(p, "response", err)
			return
		}
	}
	out, err := resp.AppendTo(s.out)
	if err != nil {
		s.mutationError(p, "response", err)
		return
	}
	s.out = out
	s.e.stats.responses.Add(1)
}

// failed answers p, which the pool no longer holds, with an error reply.
func (s *Session) failed(p *pending, reason codecs.Reason, msg string) {
	defer s.recoverPanic("local reply")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !p.linked {
		return
	}
	s.unlink(p)
	s.cur, s.curID = p.req, p.origID
	s.fail(p, reason, msg)
	s.cur = nil
	s.flush()
}

// retry sends p, whose connection failed on ep, to another endpoint if attempts remain.
func (s *Session) retry(p *pending, ep *endpoint) {
	defer s.recoverPanic("connect retry")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || (!p.oneway && !p.linked) {
		return
	}
	s.unlink(p)
	s.cur, s.curID = p.req, p.origID
	p.attempts++
	if p.epIdx < 64 {
		p.tried |= 1 << p.epIdx
	}
	if c := p.cl.cfg.Load(); p.attempts >= c.maxAttempts || len(c.eps) < 2 {
		s.fail(p, codecs.ReasonUnavailable, "cannot connect to upstream "+ep.addr)
	} else {
		s.forward(p)
	}
	s.cur = nil
	s.flush()
}

// onIdle closes the connection if nothing happened for the idle timeout, or re-arms.
func (s *Session) onIdle() {
	defer s.recoverPanic("idle timer")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	quiet := time.Duration(s.e.now() - s.lastActive)
	switch {
	case s.inflight > 0:
		// Not idle while waiting for responses; look again a full period later (a response
		// sets lastActive, so the connection gets a whole period after it).
		s.idle.Reset(s.e.idle)
		return
	case quiet < s.e.idle:
		s.idle.Reset(s.e.idle - quiet)
		return
	}
	s.e.stats.idleTimeouts.Add(1)
	s.shutdown(true)
}

// shutdown ends the session: requests in flight are cancelled, and the connection is closed
// if the engine decided it (closeDown). The session lock is held.
func (s *Session) shutdown(closeDown bool) {
	if s.closed {
		return
	}
	s.closed = true
	if s.idle != nil {
		s.idle.Stop()
	}
	for p := s.head; p != nil; p = p.next {
		if p.pool.cancel(p) {
			s.e.stats.cancelled.Add(1)
		}
		p.linked = false
	}
	s.head, s.inflight = nil, 0
	s.rbuf, s.out = nil, nil
	s.mconn, s.mbuf = nil, nil
	s.e.stats.activeSessions.Add(-1)
	if closeDown {
		s.down.Close()
	}
}

// recoverPanic is deferred first by every entry point: a panic closes this session, with an
// error reply to the frame being handled when the codec can build one.
func (s *Session) recoverPanic(where string) {
	v := recover()
	if v == nil {
		return
	}
	s.e.recovered(where, v)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if f := s.cur; f != nil && f.Kind() == codecs.KindRequest {
		s.cur = nil
		func() {
			defer func() { _ = recover() }() // the codec may be what panicked
			s.out = s.out[:0]
			if f.RequestID() != s.curID && f.SetRequestID(s.curID) != nil {
				return
			}
			s.localReply(f, codecs.ReasonInternal, "internal error")
			s.flush()
		}()
	}
	s.shutdown(true)
}

func (s *Session) link(p *pending) {
	p.prev, p.next = nil, s.head
	if s.head != nil {
		s.head.prev = p
	}
	s.head = p
	p.linked = true
	s.inflight++
}

func (s *Session) unlink(p *pending) {
	if !p.linked {
		return
	}
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		s.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	}
	p.prev, p.next, p.linked = nil, nil, false
	s.inflight--
}
