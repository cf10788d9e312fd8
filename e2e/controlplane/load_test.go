package controlplane_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// record is one call of the load.
type record struct {
	worker     int
	start, end time.Time
	server     string // who answered; "" if the call failed
	err        error
}

// load is several clients, each on its own connection to the proxy, calling one after the
// other without pause until stopped. A failed call is counted, and its client reconnects.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu   sync.Mutex
	recs []record
}

// gap between a client's calls: continuous load that leaves the machine's other work some CPU.
const gap = 2 * time.Millisecond

func startLoad(t *testing.T, p peers, addr string, workers int) *load {
	t.Helper()
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		c, err := p.dial(addr, w)
		if err != nil {
			l.halt()
			t.Fatal(err)
		}
		l.wg.Add(1)
		go l.run(p, addr, w, c)
	}
	t.Cleanup(l.halt)
	return l
}

func (l *load) run(p peers, addr string, w int, c caller) {
	defer l.wg.Done()
	defer func() {
		if c != nil {
			c.close()
		}
	}()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		r := record{worker: w, start: time.Now()}
		if c == nil {
			c, r.err = p.dial(addr, w)
		}
		if c != nil {
			msg := fmt.Sprintf("w%d-%d", w, i)
			var reply string
			if reply, r.err = c.echo(msg); r.err == nil {
				r.server, r.err = serverOf(reply, msg)
			}
		}
		r.end = time.Now()
		if r.err != nil && c != nil {
			c.close()
			c = nil
		}
		l.mu.Lock()
		l.recs = append(l.recs, r)
		l.mu.Unlock()
		time.Sleep(gap)
	}
}

// halt stops the clients and waits for their last calls.
func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// records returns the calls so far, in the order they ended.
func (l *load) records() []record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.recs)
}

// waitFor waits until a call that started at or after since was answered by server, and
// returns when that call ended; false after timeout.
func (l *load) waitFor(server string, since time.Time, timeout time.Duration) (time.Time, bool) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, r := range l.records() {
			if r.server == server && !r.start.Before(since) {
				return r.end, true
			}
		}
	}
	return time.Time{}, false
}

// summary counts calls by who answered, and errors.
type summary struct {
	calls, errors int
	servers       map[string]int
	firstErrors   []string
}

func (s summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d calls, %d errors", s.calls, s.errors)
	for _, k := range slices.Sorted(maps.Keys(s.servers)) {
		fmt.Fprintf(&b, ", %s %d", k, s.servers[k])
	}
	return b.String()
}

// summarize counts the calls that started in [from, to) (zero times: unbounded).
func summarize(recs []record, from, to time.Time) summary {
	s := summary{servers: map[string]int{}}
	for _, r := range recs {
		if r.start.Before(from) || (!to.IsZero() && !r.start.Before(to)) {
			continue
		}
		s.calls++
		if r.err != nil {
			s.errors++
			if len(s.firstErrors) < 5 {
				s.firstErrors = append(s.firstErrors, fmt.Sprintf("worker %d at %s: %v",
					r.worker, r.start.Format("15:04:05.000"), r.err))
			}
			continue
		}
		s.servers[r.server]++
	}
	return s
}

// move measures a change of destination from old to new made at t0: settled is how long
// after t0 the last call answered by old started (0 if none did), first how long after t0
// the first call answered by new ended. Calls that start after the settled point all go to
// new.
type move struct{ settled, first time.Duration }

func measureMove(recs []record, t0 time.Time, old, new string) (move, bool) {
	var m move
	found := false
	for _, r := range recs {
		if r.start.Before(t0) {
			continue
		}
		if r.server == old {
			m.settled = max(m.settled, r.start.Sub(t0))
		}
		if r.server == new && (!found || r.end.Sub(t0) < m.first) {
			m.first, found = r.end.Sub(t0), true
		}
	}
	return m, found
}

// assertNoErrors fails the test if a call in [from, to) failed.
func assertNoErrors(t *testing.T, recs []record, from, to time.Time, what string) summary {
	t.Helper()
	s := summarize(recs, from, to)
	if s.calls == 0 {
		t.Errorf("%s: no calls", what)
	}
	if s.errors > 0 {
		t.Errorf("%s: %d of %d calls failed; first: %s", what, s.errors, s.calls, strings.Join(s.firstErrors, "; "))
	}
	return s
}

// assertOnly fails the test if a call that started in [from, to) was answered by another
// server than want, or if none was answered.
func assertOnly(t *testing.T, recs []record, from, to time.Time, want, what string) {
	t.Helper()
	s := summarize(recs, from, to)
	if s.servers[want] == 0 || len(s.servers) != 1 {
		t.Errorf("%s: answered by %v; want only %s", what, s.servers, want)
	}
}
