package demo

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Stats counts the calls a demo server answered. The kind-cluster e2e reads it over HTTP to
// see that a mirror target received copies of requests whose replies the client never sees.
type Stats struct {
	Name  string
	calls atomic.Int64
}

// Calls is the number of calls served so far.
func (s *Stats) Calls() int64 { return s.calls.Load() }

// count records one call; a nil Stats counts nothing, so servers without one need no check.
func (s *Stats) count() {
	if s != nil {
		s.calls.Add(1)
	}
}

// StatsReport is the JSON body of GET /stats.
type StatsReport struct {
	Name  string `json:"name"`
	Calls int64  `json:"calls"`
}

// StatsHandler serves GET /stats as a StatsReport.
func StatsHandler(s *Stats) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(StatsReport{Name: s.Name, Calls: s.Calls()})
	})
	return mux
}

// ServeStats serves StatsHandler on addr until the process ends.
func ServeStats(addr string, s *Stats) error {
	srv := &http.Server{Addr: addr, Handler: StatsHandler(s), ReadHeaderTimeout: 5 * time.Second}
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("stats on %s: %w", addr, err)
	}
	return nil
}

// maxSleep bounds the delay a message can ask for, so a typo cannot wedge a server.
const maxSleep = 30 * time.Second

// requestedSleep returns the delay msg asks the server to wait before replying: a message
// that starts "sleep=<duration>" (Go syntax, e.g. "sleep=3s hello") makes the server slow,
// which is how the kind-cluster e2e checks route timeouts. Other messages ask for none.
func requestedSleep(msg string) time.Duration {
	rest, ok := strings.CutPrefix(msg, "sleep=")
	if !ok {
		return 0
	}
	word, _, _ := strings.Cut(rest, " ")
	d, err := time.ParseDuration(word)
	if err != nil || d < 0 {
		return 0
	}
	return min(d, maxSleep)
}

// reply is what every demo server answers: its name and the message, after the delay the
// message asks for.
func reply(name string, stats *Stats, msg string) string {
	stats.count()
	if d := requestedSleep(msg); d > 0 {
		time.Sleep(d)
	}
	return name + ": " + msg
}
