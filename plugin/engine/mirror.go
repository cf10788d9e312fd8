package engine

import (
	"errors"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// Request mirroring (Route.Mirrors). When a request is routed, each mirror policy of its
// route samples it (mirror.sample); a sampled request is copied, before the request itself
// is forwarded, by encoding it (header mutations applied, the client's id) and decoding
// the bytes again with a codec state of the session's own, so that the copy shares nothing
// with the request, whose bytes the pool rewrites in place. The copy is a pending marked
// mirror, with no session: it is balanced, limited, pooled (its pool gives it an id of its
// own) and timed out like any request, but whatever ends it — a response, a timeout, a
// failure — ends at the pending's methods below, which count it and never reach a client.
// Copies do not count as the session's requests in flight, and a client that leaves does
// not cancel them: the route timeout frees them.

// deliver hands resp, the response to p, to p's client; a mirror's is dropped.
func (p *pending) deliver(resp codecs.Frame) {
	if p.mirror {
		p.cl.e.stats.mirrorResponses.Add(1)
		return
	}
	p.s.deliver(p, resp)
}

// failed answers p, which the pool no longer holds, with an error reply; a mirror's failure
// is counted.
func (p *pending) failed(reason codecs.Reason, msg string) {
	if p.mirror {
		p.cl.e.mirrorFailed(p, msg)
		return
	}
	p.s.failed(p, reason, msg)
}

// retry sends p, whose connection to ep failed, to another endpoint if attempts remain.
func (p *pending) retry(ep *endpoint) {
	if p.mirror {
		p.cl.e.retryMirror(p, ep)
		return
	}
	p.s.retry(p, ep)
}

// mirror sends the copies of p that its route's mirror policies sample. p is routed, its
// mutations recorded, and not forwarded yet: its frame still carries the client's id and no
// pool holds it. The session lock is held.
func (s *Session) mirror(p *pending) {
	for i := range p.route.mirrors {
		m := &p.route.mirrors[i]
		if !m.sample(s.e) {
			continue
		}
		s.e.stats.mirrored.Add(1)
		s.sendMirror(p, m.cl)
	}
}

// sendMirror copies p and forwards the copy to cl. A panic here (a codec's) is counted as a
// mirror failure and does not reach the request being handled. The session lock is held.
func (s *Session) sendMirror(p *pending, cl *cluster) {
	e := s.e
	defer func() {
		if v := recover(); v != nil {
			e.recovered("mirror", v)
			e.stats.mirrorFailed.Add(1)
			s.mconn = nil
		}
	}()
	buf, err := p.req.AppendTo(s.mbuf[:0])
	if err != nil {
		e.stats.mirrorFailed.Add(1)
		e.log.Debug("meltemi engine: mirror: encode request", "cluster", cl.name, "error", err)
		return
	}
	if s.mconn == nil {
		s.mconn = e.codec.NewConn()
	}
	f, n, err := s.mconn.Decode(buf) // the frame never aliases buf
	s.mbuf = keep(buf)
	if err == nil && (f == nil || n != len(buf)) {
		err = errors.New("the request's encoding is not one frame")
	}
	if err != nil {
		s.mconn = nil // its stream is unusable after an error
		e.stats.mirrorFailed.Add(1)
		e.log.Debug("meltemi engine: mirror: decode request copy", "cluster", cl.name, "error", err)
		return
	}
	m := &pending{req: f, origID: p.origID, route: p.route, cl: cl, oneway: p.oneway,
		deadline: p.deadline, heapIdx: -1, mirror: true}
	e.forwardMirror(m, s.conn.Mode())
}

// forwardMirror sends m, a mirror that nothing else holds, to an endpoint of its cluster,
// one it has not tried yet if any remain, in the pool of mode.
func (e *Engine) forwardMirror(m *pending, mode string) {
	var (
		ep     *endpoint
		dial   *upstream
		reason codecs.Reason
		err    error
	)
	for range maxRebalance { // see Session.forward
		ep, m.epIdx = m.cl.pick(m.req, m.tried)
		if ep == nil {
			e.mirrorFailed(m, "cluster "+m.cl.name+" has no endpoints")
			return
		}
		m.ep = ep
		m.pool = ep.pool(mode)
		dial, reason, err = m.pool.enqueue(m)
		if reason == 0 || !errors.Is(err, errDrained) {
			break
		}
	}
	if reason != 0 {
		msg := reason.String()
		if err != nil {
			msg = err.Error()
		}
		e.mirrorFailed(m, msg)
		return
	}
	if dial != nil {
		e.stats.connects.Add(1)
		e.dialer.Dial(ep.addr, dial)
	}
}

// retryMirror sends m, whose connection to ep failed and which nothing else holds, to
// another endpoint if attempts remain, as Session.retry does for requests.
func (e *Engine) retryMirror(m *pending, ep *endpoint) {
	m.attempts++
	if m.epIdx < 64 {
		m.tried |= 1 << m.epIdx
	}
	if c := m.cl.cfg.Load(); m.attempts >= c.maxAttempts || len(c.eps) < 2 {
		e.mirrorFailed(m, "cannot connect to upstream "+ep.addr)
		return
	}
	e.forwardMirror(m, m.pool.mode)
}

// mirrorFailed counts the failure of m, a mirror.
func (e *Engine) mirrorFailed(m *pending, msg string) {
	e.stats.mirrorFailed.Add(1)
	e.log.Debug("meltemi engine: mirrored request failed", "route", m.route.name, "cluster", m.cl.name, "error", msg)
}
