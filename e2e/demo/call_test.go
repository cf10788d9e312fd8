package demo

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRunCallsCountsServers runs a Thrift server with stats and checks that a batch of calls
// is reported as answered by it and counted by its stats endpoint.
func TestRunCallsCountsServers(t *testing.T) {
	addr := freeAddr(t)
	stats := &Stats{Name: "v7"}
	go func() { _ = ServeThriftStats("v7", addr, stats) }()
	waitListening(t, addr)

	r, err := RunCalls(CallOptions{Protocol: "thrift", Addr: addr, Mode: ThriftMode{"header", "binary"},
		Headers: map[string]string{"user": "beta-1"}, N: 5, Msg: "hi"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Replies["v7"] != 5 || r.Failed != 0 || len(r.Replies) != 1 {
		t.Errorf("report %+v, want 5 replies from v7 and no failures", r)
	}

	srv := httptest.NewServer(StatsHandler(stats))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/stats")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sr StatsReport
	if err := json.NewDecoder(resp.Body).Decode(&sr); err != nil {
		t.Fatal(err)
	}
	if sr != (StatsReport{Name: "v7", Calls: 5}) {
		t.Errorf("stats %+v, want v7 with 5 calls", sr)
	}
}

// TestRunCallsSlowAndFailing checks the "sleep=" delay and that failures are counted.
func TestRunCallsSlowAndFailing(t *testing.T) {
	addr := freeAddr(t)
	go func() { _ = ServeThriftStats("v1", addr, nil) }()
	waitListening(t, addr)
	r, err := RunCalls(CallOptions{Protocol: "thrift", Addr: addr, Mode: ThriftMode{"framed", "binary"}, N: 1, Msg: "sleep=300ms x"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Replies["v1"] != 1 || r.MinMillis < 300 {
		t.Errorf("report %+v, want one reply from v1 after at least 300ms", r)
	}

	r, err = RunCalls(CallOptions{Protocol: "thrift", Addr: freeAddr(t), Mode: ThriftMode{"framed", "binary"}, N: 2, Msg: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Failed != 2 || len(r.Errors) != 2 || len(r.Replies) != 0 {
		t.Errorf("calls to a closed port: report %+v, want 2 failures", r)
	}
	if _, err := RunCalls(CallOptions{Protocol: "smtp", Addr: addr, N: 1}); err == nil {
		t.Error("RunCalls accepted protocol smtp")
	}
}

func TestRequestedSleep(t *testing.T) {
	for msg, want := range map[string]time.Duration{
		"sleep=3s hello": 3 * time.Second, "sleep=250ms": 250 * time.Millisecond,
		"sleep=1h": maxSleep, "sleep=x": 0, "hello sleep=3s": 0, "sleep=-1s": 0,
	} {
		if got := requestedSleep(msg); got != want {
			t.Errorf("requestedSleep(%q) = %v, want %v", msg, got, want)
		}
	}
}

func TestParseThriftMode(t *testing.T) {
	if m, err := ParseThriftMode("header/compact"); err != nil || m != (ThriftMode{"header", "compact"}) {
		t.Errorf("ParseThriftMode(header/compact) = %v, %v", m, err)
	}
	for _, bad := range []string{"header", "/binary", "framed/"} {
		if _, err := ParseThriftMode(bad); err == nil {
			t.Errorf("ParseThriftMode(%q) accepted", bad)
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("%s not listening: %w", addr, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
