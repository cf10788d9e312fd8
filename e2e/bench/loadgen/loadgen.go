// Package loadgen is the load generator of the end-to-end benchmark: N TCP connections
// sending Thrift or Dubbo echo requests to one address, closed loop (each connection sends
// its next request when the previous reply arrives) or open loop (requests at a fixed rate,
// latency measured from when each was due, so a slow server cannot hide its queueing delay),
// reporting throughput and latency quantiles.
//
// Requests are encoded once per connection and only their id changes; replies are read
// through a per-connection buffer; latencies go into a fixed-size histogram. The hot loop
// does not allocate, so that the client is not what the benchmark measures.
package loadgen

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a Load.
type Options struct {
	Addr     string
	Protocol Protocol
	Conns    int
	Payload  int // request payload size in bytes
}

// Result is what one Run measured.
type Result struct {
	Requests uint64 // replies received in the window
	Errors   uint64 // failed connections
	Elapsed  time.Duration
	Latency  Histogram
}

// QPS is the replies per second.
func (r *Result) QPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Load is a set of open connections to one server.
type Load struct {
	opts  Options
	conns []*conn
}

type conn struct {
	c    net.Conn
	r    *bufio.Reader
	req  []byte
	buf  []byte
	id   uint32
	sent atomic.Uint32 // open loop: the last id whose send time is recorded
	hist Histogram
	err  error
}

// Dial opens the connections.
func Dial(o Options) (*Load, error) {
	if o.Conns < 1 || o.Protocol == nil {
		return nil, errors.New("loadgen: Conns >= 1 and a Protocol are required")
	}
	l := &Load{opts: o}
	for range o.Conns {
		c, err := net.DialTimeout("tcp", o.Addr, 5*time.Second)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("loadgen: dial %s: %w", o.Addr, err)
		}
		req, err := o.Protocol.Request(o.Payload)
		if err != nil {
			c.Close()
			l.Close()
			return nil, fmt.Errorf("loadgen: %w", err)
		}
		l.conns = append(l.conns, &conn{c: c, r: bufio.NewReaderSize(c, 64<<10), req: req,
			buf: make([]byte, len(req)+1024)})
	}
	return l, nil
}

// Close closes the connections.
func (l *Load) Close() {
	for _, c := range l.conns {
		c.c.Close()
	}
}

// Run sends load for d and returns what it measured. rate 0 is closed loop; a positive
// rate is the total requests per second of open loop, spread evenly over the connections.
// A connection that fails stops and is counted in Errors; Run can be called again on the
// remaining ones.
func (l *Load) Run(d time.Duration, rate float64) *Result {
	var (
		wg       sync.WaitGroup
		requests atomic.Uint64
	)
	start := time.Now()
	deadline := start.Add(d)
	for _, c := range l.conns {
		if c.err != nil {
			continue
		}
		c.hist = Histogram{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n uint64
			if rate > 0 {
				n, c.err = c.openLoop(l.opts.Protocol, start, deadline, time.Duration(float64(len(l.conns))/rate*1e9))
			} else {
				n, c.err = c.closedLoop(l.opts.Protocol, deadline)
			}
			requests.Add(n)
		}()
	}
	wg.Wait()
	res := &Result{Requests: requests.Load(), Elapsed: time.Since(start)}
	if rate <= 0 {
		// Closed loop: the window ends at the deadline plus the last round trip.
		res.Elapsed = d
	}
	for _, c := range l.conns {
		if c.err != nil {
			res.Errors++
		}
		res.Latency.Merge(&c.hist)
	}
	return res
}

// Err returns the first connection error, if any.
func (l *Load) Err() error {
	for _, c := range l.conns {
		if c.err != nil {
			return c.err
		}
	}
	return nil
}

func (c *conn) closedLoop(p Protocol, deadline time.Time) (uint64, error) {
	var n uint64
	for {
		t0 := time.Now()
		if !t0.Before(deadline) {
			return n, nil
		}
		c.id++
		p.SetID(c.req, c.id)
		if _, err := c.c.Write(c.req); err != nil {
			return n, fmt.Errorf("write: %w", err)
		}
		id, err := p.ReadResponse(c.r, c.buf)
		if err != nil {
			return n, err
		}
		if id != c.id {
			return n, fmt.Errorf("reply id %d, want %d", id, c.id)
		}
		c.hist.Record(time.Since(t0))
		n++
	}
}

// inflight bounds the requests one open-loop connection may have outstanding.
const inflight = 1 << 14

// answered marks a sentAt slot whose reply has arrived.
const answered = -1

func (c *conn) openLoop(p Protocol, start, deadline time.Time, interval time.Duration) (uint64, error) {
	if interval <= 0 {
		return 0, errors.New("open loop: rate too high")
	}
	total := uint32(deadline.Sub(start)/interval) + 1
	// sentAt[id%inflight] is when request id was written, in ns since start. Not when it was
	// due: Go's timers wake the writer up to a millisecond late, which is the client's delay,
	// not the server's; the writer never blocks on replies, so the server cannot delay it.
	sentAt := make([]atomic.Int64, inflight)
	var received atomic.Uint32
	first := c.id + 1
	writeErr := make(chan error, 1)
	go func() {
		writeErr <- c.write(p, start, interval, first, total, sentAt, &received)
	}()
	_ = c.c.SetReadDeadline(deadline.Add(2 * time.Second))
	defer c.c.SetReadDeadline(time.Time{})
	var n uint64
	for n < uint64(total) {
		id, err := p.ReadResponse(c.r, c.buf)
		if err != nil {
			if werr := <-writeErr; werr != nil {
				return n, werr
			}
			return n, err
		}
		// Replies may come out of order (a dubbo-go provider runs calls concurrently): any
		// id sent and not yet answered is fine.
		if id-first >= total || id-first > c.sent.Load()-first {
			return n, fmt.Errorf("reply id %d, never sent", id)
		}
		at := sentAt[id%inflight].Swap(answered)
		if at == answered {
			return n, fmt.Errorf("second reply to id %d", id)
		}
		c.hist.Record(time.Since(start) - time.Duration(at))
		received.Add(1)
		n++
	}
	return n, <-writeErr
}

// write sends total requests from id first on, request k when it is due at k*interval
// after start: after a late wake-up it sends every overdue one at once.
func (c *conn) write(p Protocol, start time.Time, interval time.Duration, first, total uint32, sentAt []atomic.Int64, received *atomic.Uint32) error {
	fail := func(err error) error {
		// Unblocks the reader.
		_ = c.c.SetReadDeadline(time.Now())
		return err
	}
	for k := uint32(0); k < total; k++ {
		next := time.Duration(k) * interval
		if now := time.Since(start); next > now {
			time.Sleep(next - now)
		}
		if k-received.Load() >= inflight {
			return fail(errors.New("open loop: too many requests outstanding"))
		}
		id := first + k
		sentAt[id%inflight].Store(int64(time.Since(start)))
		c.sent.Store(id)
		p.SetID(c.req, id)
		if _, err := c.c.Write(c.req); err != nil {
			return fail(fmt.Errorf("write: %w", err))
		}
		c.id = id
	}
	return nil
}
