package engine

import "github.com/meltemi-mesh/meltemi/codecs"

// An engine made with Options.WaitForUpdate starts with an empty route table marked
// initial. Requests that arrive then are held here, outside any session or pool, until the
// first Update routes them on the table it brings, or until the initial fetch timeout
// answers them no_route (Envoy's initial_fetch_timeout: past it, the configuration is
// taken as empty). Sessions do not count held requests as in flight: a client that leaves
// meanwhile simply gets nothing when its requests are released.

// heldRequest is a request waiting for the first Update.
type heldRequest struct {
	s *Session
	f codecs.Frame
}

// hold keeps f until the first Update. It returns held false, with the current table, when
// that table is no longer initial, or with a nil table when too many requests wait
// already. The session lock is held.
func (e *Engine) hold(s *Session, f codecs.Frame) (t *table, held bool) {
	e.holdMu.Lock()
	defer e.holdMu.Unlock()
	if t := e.table.Load(); !t.initial {
		return t, false
	}
	if len(e.held) >= MaxHeldRequests {
		return nil, false
	}
	e.held = append(e.held, heldRequest{s: s, f: f})
	return nil, true
}

// releaseHeld ends the initial state. With a table t, it stores it and routes the held
// requests on it; without, it stores an empty table that is not initial (routing answers
// no_route from then on) and answers the held requests with why. Only the first call does
// anything.
func (e *Engine) releaseHeld(t *table, why string) {
	e.holdMu.Lock()
	cur := e.table.Load()
	if cur == nil || !cur.initial {
		e.holdMu.Unlock()
		if t != nil {
			e.table.Store(t)
		}
		return
	}
	if t == nil {
		t = &table{routes: cur.routes, clusters: cur.clusters}
	}
	e.table.Store(t)
	held := e.held
	e.held = nil
	e.holdMu.Unlock()
	if e.initialTimer != nil {
		e.initialTimer.Stop()
	}
	for _, h := range held {
		h.s.release(h.f, t, why)
	}
}

// initialTimeout gives up waiting for the first Update.
func (e *Engine) initialTimeout() {
	defer func() {
		if v := recover(); v != nil {
			e.recovered("initial fetch timer", v)
		}
	}()
	e.releaseHeld(nil, "no route configuration received within the initial fetch timeout")
}

// release routes f, held until the first configuration t arrived, or answers it no_route
// with why.
func (s *Session) release(f codecs.Frame, t *table, why string) {
	defer s.recoverPanic("held request")
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.e.stats.cancelled.Add(1)
		return
	}
	s.cur, s.curID = f, f.RequestID()
	if why != "" {
		s.localReply(f, codecs.ReasonNoRoute, why)
	} else {
		// The route timeout counts from now: the wait for the configuration is not the
		// upstream's fault.
		s.dispatch(t, f, s.e.now())
	}
	s.cur = nil
	s.flush()
}
