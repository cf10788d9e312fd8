package engine

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// errMutation marks encode failures caused by header mutations.
var errMutation = errors.New("header mutation")

// Request states, guarded by the lock of the pool that holds the request.
const (
	stQueued uint8 = iota + 1 // waiting for its connection to be established
	stSent                    // written, waiting for its response
	stDone                    // no longer held by a pool
)

// pending is one forwarded request. Ownership moves: a pool holds it (in its id map) until
// a response, a timeout, a connection failure or a cancellation removes it, and whoever
// removed it then answers the client through the pending's methods (deliver, failed,
// retry), which go to the session, or only count for a mirror. After a response the session
// reuses the record for its next request (see Session.deliver).
type pending struct {
	// Set when the request is routed, read-only afterwards. A mirror (mirror.go) is a copy
	// of a request that nobody answers: its s is nil, and its fields guarded by the session
	// lock below are used only by whoever holds it, the pool lock passing it on.
	s      *Session
	origID uint64
	route  *route
	cl     *cluster
	oneway bool
	mirror bool
	// deadline is the engine time (ns) of the route timeout, 0 for none.
	deadline int64

	// req is used by the session while routing, by the holding pool while encoding, and by
	// whoever removed the request from its pool afterwards: never by two at once.
	req codecs.Frame

	// Guarded by the session lock.
	ep         *endpoint
	epIdx      int // ep's index in the cluster configuration it was picked from
	pool       *pool
	attempts   int
	tried      uint64 // bit i: endpoint i failed to connect
	prev, next *pending
	linked     bool

	// Guarded by the holding pool's lock.
	state   uint8
	upID    uint32
	up      *upstream
	heapIdx int
}

// pool is the set of connections to one endpoint for one protocol mode, shared by every
// session of the engine. For codecs that multiplex, it holds a fixed number of multiplexed
// connections, and request ids are allocated per pool, so that requests from different
// clients, whose ids collide, never share one on the wire. For codecs that cannot, it is a
// ping-pong pool (pingpong.go): one request at a time per connection.
type pool struct {
	ep   *endpoint
	cl   *cluster
	e    *Engine
	mode string

	mu       sync.Mutex
	conns    []*upstream // one slot per connection; nil when not connected
	next     int         // round robin over the slots
	nextID   uint32
	inflight map[uint32]*pending // every held two-way request, by its upstream id
	heap     deadlineHeap
	timer    *time.Timer
	armedAt  int64 // deadline the timer is armed for; 0 when not armed
	wbuf     []byte
	closed   bool

	// Draining (update.go), guarded by mu: an update removed the endpoint; the pool closes
	// once idle or at drainDeadline (engine time), and drained says it closed so.
	draining      bool
	drained       bool
	drainDeadline int64
	drainTimer    *time.Timer

	// Ping-pong pools only, guarded by mu; see pingpong.go.
	pingPong   bool
	all        []*upstream // every connection not closed, at index upstream.slot
	idle       []*upstream // ready connections carrying no request, most recently used last
	waitq      []*pending  // requests waiting for a connection from waitHead on; removed ones are stDone
	waitHead   int
	waiting    int // requests in waitq still stQueued
	connecting int // connections being established
}

func newPool(ep *endpoint, mode string) *pool {
	p := &pool{ep: ep, cl: ep.cl, e: ep.cl.e, mode: mode}
	if codecs.Multiplexes(p.e.codec) {
		p.conns = make([]*upstream, ep.cl.cfg.Load().conns)
		p.inflight = make(map[uint32]*pending)
	} else {
		p.pingPong = true
	}
	p.timer = time.AfterFunc(time.Hour, p.onTimer)
	p.timer.Stop()
	return p
}

// Connection states, guarded by the pool lock.
const (
	upConnecting uint8 = iota + 1
	upReady
	upClosed
)

// upstream is one connection of a pool; it is the UpstreamHandler the host reports to.
type upstream struct {
	p    *pool
	slot int // in pool.conns, or in pool.all for ping-pong pools

	// Ping-pong pools only, guarded by the pool lock.
	cur     *pending // the request written and waiting for its response
	idleIdx int      // in pool.idle; -1 when not idle

	// Guarded by the pool lock.
	state        uint8
	conn         UpstreamConn
	queued       []*pending // requests encoded in qbuf, in order
	qbuf         []byte
	dead         int // queued requests removed before the connection was ready
	connectTimer *time.Timer

	// Used by the host's callbacks only, which never run concurrently for one connection.
	rx    sync.Mutex
	codec codecs.Conn
	rbuf  []byte
}

// enqueue gives p to the pool: it allocates an upstream id, encodes the request and writes
// it, or queues it while its connection is established. A non-zero reason means p was not
// taken (err says why when there is more to say). A non-nil dial is a new connection the
// caller must dial, after this returns.
func (pl *pool) enqueue(p *pending) (dial *upstream, reason codecs.Reason, err error) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	cl := pl.cl
	if pl.closed {
		if pl.drained {
			return nil, codecs.ReasonUnavailable, errDrained
		}
		return nil, codecs.ReasonUnavailable, errors.New("upstream pool closed")
	}
	c := cl.cfg.Load()
	if cl.active.Load() >= c.maxRequests {
		return nil, codecs.ReasonOverLimit, fmt.Errorf("cluster %s: %d requests in flight", cl.name, c.maxRequests)
	}
	if pl.pingPong {
		return pl.enqueuePingPong(p, c)
	}
	slot := pl.next % len(pl.conns)
	pl.next++
	u := pl.conns[slot]
	fresh := u == nil
	if fresh {
		u = &upstream{p: pl, slot: slot, state: upConnecting, codec: pl.e.codec.NewConn()}
	}
	if u.state != upReady && cl.queued.Load() >= c.maxPending {
		return nil, codecs.ReasonOverLimit, fmt.Errorf("cluster %s: %d requests waiting for a connection", cl.name, c.maxPending)
	}
	id := pl.allocID()
	if err := p.req.SetRequestID(uint64(id)); err != nil {
		return nil, codecs.ReasonInternal, fmt.Errorf("rewrite request id: %w", err)
	}
	if u.state == upReady {
		buf, err := p.req.AppendTo(pl.wbuf[:0])
		if err != nil {
			return nil, codecs.ReasonInternal, fmt.Errorf("encode request: %w: %w", errMutation, err)
		}
		u.conn.Write(buf)
		pl.wbuf = keep(buf)
		p.state = stSent
	} else {
		buf, err := p.req.AppendTo(u.qbuf)
		if err != nil {
			return nil, codecs.ReasonInternal, fmt.Errorf("encode request: %w: %w", errMutation, err)
		}
		u.qbuf = buf
		u.queued = append(u.queued, p)
		cl.queued.Add(1)
		p.state = stQueued
	}
	p.up = u
	if fresh {
		pl.conns[slot] = u
		u.connectTimer = time.AfterFunc(c.connectTimeout, u.onConnectTimeout)
		dial = u
	}
	if p.oneway {
		if p.state == stSent {
			p.state = stDone
		}
		return dial, 0, nil
	}
	p.upID = id
	pl.inflight[id] = p
	pl.track(p)
	return dial, 0, nil
}

// track counts p, a two-way request the pool now holds, and watches its deadline. The pool
// lock is held.
func (pl *pool) track(p *pending) {
	pl.cl.active.Add(1)
	pl.ep.active.Add(1)
	if p.deadline != 0 {
		pl.heap.push(p)
		if pl.armedAt == 0 || p.deadline < pl.armedAt {
			pl.arm(p.deadline)
		}
	}
}

// allocID returns an upstream id no held request uses. The pool lock is held.
func (pl *pool) allocID() uint32 {
	for {
		pl.nextID++
		if pl.nextID == 0 {
			continue // 0 is left out: some clients treat it specially
		}
		if _, used := pl.inflight[pl.nextID]; !used {
			return pl.nextID
		}
	}
}

// keep returns buf emptied for reuse, or nil when it grew too large to keep.
func keep(buf []byte) []byte {
	if cap(buf) > maxKeptBuffer {
		return nil
	}
	return buf[:0]
}

// remove takes p out of the pool. It reports false if p was already removed. The pool lock
// is held.
func (pl *pool) remove(p *pending) bool {
	if !pl.removeHeld(p) {
		return false
	}
	pl.pokeDrain()
	return true
}

func (pl *pool) removeHeld(p *pending) bool {
	if p.state == stDone {
		return false
	}
	switch {
	case p.state == stQueued:
		pl.cl.queued.Add(-1)
		if pl.pingPong {
			pl.waiting-- // its waitq slot is skipped when reached
		} else if p.up != nil && p.up.state == upConnecting {
			p.up.dead++
		}
	case pl.pingPong && p.up != nil && p.up.cur == p:
		// Abandoned (timeout, cancelled client) with its response outstanding: that response
		// would be taken for the next request's, so the connection cannot be used again.
		p.up.cur = nil
		pl.discard(p.up, true)
	}
	p.state = stDone
	if p.oneway {
		return true
	}
	if !pl.pingPong {
		delete(pl.inflight, p.upID)
	}
	if p.heapIdx >= 0 {
		pl.heap.remove(p.heapIdx)
	}
	pl.cl.active.Add(-1)
	pl.ep.active.Add(-1)
	return true
}

// cancel removes p if the pool still holds it (its client went away).
func (pl *pool) cancel(p *pending) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return pl.remove(p)
}

// take removes and returns the request a response with upstream id id answers, if it was
// written on u. A request taken here is referenced by nothing of the pool any more (it is
// in no queue), which lets the session reuse it.
func (pl *pool) take(id uint64, u *upstream) *pending {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	p := pl.inflight[uint32(id)]
	if p == nil || uint64(p.upID) != id || p.up != u || p.state != stSent {
		return nil
	}
	pl.remove(p)
	return p
}

// arm sets the timer for deadline. The pool lock is held.
func (pl *pool) arm(deadline int64) {
	pl.armedAt = deadline
	pl.timer.Reset(time.Duration(max(deadline-pl.e.now(), 0)))
}

// onTimer answers every request whose deadline passed with a timeout error.
func (pl *pool) onTimer() {
	defer func() {
		if v := recover(); v != nil {
			pl.e.recovered("timeout timer", v)
		}
	}()
	var expired []*pending
	func() {
		pl.mu.Lock()
		defer pl.mu.Unlock()
		pl.armedAt = 0
		now := pl.e.now()
		for len(pl.heap) > 0 && pl.heap[0].deadline <= now {
			p := pl.heap[0]
			pl.remove(p)
			expired = append(expired, p)
		}
		if len(pl.heap) > 0 && !pl.closed {
			pl.arm(pl.heap[0].deadline)
		}
	}()
	for _, p := range expired {
		p.failed(codecs.ReasonTimeout, fmt.Sprintf("no response within %v", p.route.timeout))
	}
}

// close closes the pool's connections and answers everything it holds with errors.
func (pl *pool) close() {
	var held []*pending
	func() {
		pl.mu.Lock()
		defer pl.mu.Unlock()
		held = pl.closeLocked()
	}()
	for _, p := range held {
		p.failed(codecs.ReasonUnavailable, "upstream pool closed")
	}
}

// closeLocked closes the pool's connections and returns the two-way requests it held,
// removed, for the caller to answer once it unlocked. The pool lock is held.
func (pl *pool) closeLocked() (held []*pending) {
	if pl.closed {
		return nil
	}
	pl.closed = true
	pl.timer.Stop()
	if pl.drainTimer != nil {
		pl.drainTimer.Stop()
	}
	if pl.pingPong {
		return pl.closePingPong()
	}
	for i, u := range pl.conns {
		if u == nil {
			continue
		}
		if u.state == upReady {
			u.conn.Close()
		}
		if u.connectTimer != nil {
			u.connectTimer.Stop()
		}
		for _, p := range u.queued {
			if !p.oneway && p.state == stQueued {
				held = append(held, p) // to be answered; in inflight too
			}
		}
		u.dropQueued()
		u.state = upClosed
		pl.conns[i] = nil
	}
	for _, p := range pl.inflight {
		if p.state == stSent {
			held = append(held, p)
		}
	}
	for _, p := range pl.inflight {
		pl.remove(p)
	}
	return held
}

// dropQueued forgets the requests waiting for u (oneway ones included, which nobody
// answers). The pool lock is held.
func (u *upstream) dropQueued() {
	for _, p := range u.queued {
		u.p.remove(p)
	}
	u.queued, u.qbuf = nil, nil
}

// OnReady writes the requests queued while connecting.
func (u *upstream) OnReady(c UpstreamConn) {
	defer u.recoverPanic("upstream ready")
	pl := u.p
	if pl.pingPong {
		u.readyPingPong(c)
		return
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if u.state != upConnecting {
		// Too late: the connect timed out or the pool closed.
		c.Close()
		return
	}
	u.connectTimer.Stop()
	u.state, u.conn = upReady, c
	buf := u.qbuf
	if u.dead > 0 {
		// Some queued requests timed out or were cancelled: encode the others again.
		buf = buf[:0]
		for _, p := range u.queued {
			if p.state != stQueued {
				continue
			}
			var err error
			if buf, err = p.req.AppendTo(buf); err != nil {
				// It encoded once already; this cannot fail unless the codec is broken.
				pl.e.log.Error("meltemi engine: re-encode queued request", "error", err)
			}
		}
	}
	if len(buf) > 0 {
		c.Write(buf)
	}
	for _, p := range u.queued {
		if p.state != stQueued {
			continue
		}
		pl.cl.queued.Add(-1)
		p.state = stSent
		if p.oneway {
			p.state = stDone
		}
	}
	u.queued, u.qbuf, u.dead = nil, nil, 0
	pl.pokeDrain()
}

// OnFailure sends the queued requests to other endpoints, or answers them.
func (u *upstream) OnFailure(reason ConnectFailure) {
	defer u.recoverPanic("upstream failure")
	u.failConnect("connect failed: " + reason.String())
}

func (u *upstream) onConnectTimeout() {
	defer u.recoverPanic("connect timer")
	u.failConnect("connect timeout")
}

func (u *upstream) failConnect(why string) {
	pl := u.p
	var retry []*pending
	failed := func() bool {
		pl.mu.Lock()
		defer pl.mu.Unlock()
		if u.state != upConnecting {
			return false // a late report after a connect timeout, or the pool closed
		}
		pl.e.stats.connectFailures.Add(1)
		if pl.pingPong {
			retry = pl.connectFailedPingPong(u)
			return true
		}
		u.state = upClosed
		if pl.conns[u.slot] == u {
			pl.conns[u.slot] = nil
		}
		for _, p := range u.queued {
			if pl.remove(p) {
				retry = append(retry, p)
			}
		}
		u.queued, u.qbuf = nil, nil
		return true
	}()
	if !failed {
		return
	}
	pl.e.log.Info("meltemi engine: upstream connection failed", "addr", pl.ep.addr, "why", why, "requests", len(retry))
	for _, p := range retry {
		p.retry(pl.ep)
	}
}

// OnData decodes responses and hands each to its client.
func (u *upstream) OnData(b []byte) {
	defer u.recoverPanic("upstream data")
	u.rx.Lock()
	defer u.rx.Unlock()
	if len(b) == 0 {
		return
	}
	buf := b
	if len(u.rbuf) > 0 {
		u.rbuf = append(u.rbuf, b...)
		buf = u.rbuf
	}
	for len(buf) > 0 {
		f, n, err := u.codec.Decode(buf)
		if err != nil {
			u.p.e.stats.upstreamDecodeErrors.Add(1)
			u.p.e.log.Warn("meltemi engine: closing an upstream connection that sent an undecodable frame",
				"addr", u.p.ep.addr, "error", err)
			u.rbuf = nil
			u.abort()
			return
		}
		if f == nil {
			break
		}
		buf = buf[n:]
		u.handle(f)
	}
	switch {
	case len(buf) == 0:
		u.rbuf = keep(u.rbuf)
	case len(u.rbuf) > 0:
		u.rbuf = u.rbuf[:copy(u.rbuf, buf)]
	default:
		u.rbuf = append(u.rbuf[:0], buf...)
	}
}

func (u *upstream) handle(f codecs.Frame) {
	pl := u.p
	switch f.Kind() {
	case codecs.KindResponse, codecs.KindErrorResponse:
		if pl.pingPong {
			u.responsePingPong(f)
			return
		}
		p := pl.take(f.RequestID(), u)
		if p == nil {
			pl.e.stats.dropped.Add(1)
			return
		}
		p.deliver(f)
	case codecs.KindHeartbeatRequest:
		// Servers probe idle clients (Dubbo providers do): answer for the connection.
		pl.mu.Lock()
		defer pl.mu.Unlock()
		if u.state != upReady {
			return
		}
		buf, err := u.codec.AppendHeartbeatReply(pl.wbuf[:0], f)
		if err != nil {
			return
		}
		u.conn.Write(buf)
		pl.wbuf = keep(buf)
		pl.e.stats.heartbeat.Add(1)
	default:
		// Heartbeat responses (the engine sends no heartbeats) and requests from a server.
	}
}

// OnClose answers every request in flight on the connection with an "unavailable" error.
func (u *upstream) OnClose() {
	defer u.recoverPanic("upstream close")
	u.closed(false)
}

// abort closes the connection from the engine's side and fails its requests.
func (u *upstream) abort() { u.closed(true) }

func (u *upstream) closed(closeConn bool) {
	pl := u.p
	if pl.pingPong {
		u.closedPingPong(closeConn)
		return
	}
	var lost []*pending
	func() {
		pl.mu.Lock()
		defer pl.mu.Unlock()
		if u.state == upConnecting {
			// Closed before ready: the host reports a failure instead, but be safe.
			u.connectTimer.Stop()
		}
		if u.state == upClosed {
			return
		}
		if u.state == upReady {
			pl.e.stats.upstreamCloses.Add(1)
			if closeConn {
				u.conn.Close()
			}
		}
		u.state = upClosed
		if pl.conns[u.slot] == u {
			pl.conns[u.slot] = nil
		}
		for _, p := range pl.inflight {
			if p.up == u {
				lost = append(lost, p)
			}
		}
		for _, p := range lost {
			pl.remove(p)
		}
		u.dropQueued()
	}()
	for _, p := range lost {
		p.failed(codecs.ReasonUnavailable, "upstream "+pl.ep.addr+" closed")
	}
}

func (u *upstream) recoverPanic(where string) {
	v := recover()
	if v == nil {
		return
	}
	u.p.e.recovered(where, v)
	func() {
		defer func() {
			if v := recover(); v != nil {
				u.p.e.recovered(where+" cleanup", v)
			}
		}()
		u.abort()
	}()
}

// deadlineHeap is a min-heap of requests by deadline; each request knows its index, so a
// response removes its entry in O(log n) without searching.
type deadlineHeap []*pending

func (h *deadlineHeap) push(p *pending) {
	*h = append(*h, p)
	p.heapIdx = len(*h) - 1
	h.up(p.heapIdx)
}

func (h *deadlineHeap) remove(i int) {
	s := *h
	last := len(s) - 1
	s[i].heapIdx = -1
	if i != last {
		s[i] = s[last]
		s[i].heapIdx = i
	}
	s[last] = nil
	*h = s[:last]
	if i != last {
		if !h.down(i) {
			h.up(i)
		}
	}
}

func (h deadlineHeap) up(i int) {
	for i > 0 {
		parent := (i - 1) / 2
		if h[parent].deadline <= h[i].deadline {
			return
		}
		h.swap(i, parent)
		i = parent
	}
}

func (h deadlineHeap) down(i int) bool {
	start := i
	for {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && h[r].deadline < h[l].deadline {
			c = r
		}
		if h[i].deadline <= h[c].deadline {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

func (h deadlineHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
