package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/meltemi-mesh/meltemi/e2e/bench/loadgen"
)

func TestCPUTimeGrowsWithWork(t *testing.T) {
	before, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	machine0, err := machineBusy()
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the process's CPU time has grown by 50ms (5 ticks of /proc/<pid>/stat); on
	// a busy machine that takes more wall time, hence the generous bound.
	for start := time.Now(); ; {
		now, err := cpuTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now-before >= 50*time.Millisecond {
			if wall := time.Since(start); now-before > 2*wall+20*time.Millisecond {
				t.Errorf("CPU time grew by %v in %v of wall time on one goroutine", now-before, wall)
			}
			// The machine was at least as busy as this process (both count in 10ms ticks).
			machine1, err := machineBusy()
			if err != nil {
				t.Fatal(err)
			}
			if machine1-machine0 < now-before-20*time.Millisecond {
				t.Errorf("machine busy time grew by %v, less than this process's %v", machine1-machine0, now-before)
			}
			return
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("CPU time grew by only %v after 10s of spinning", now-before)
		}
	}
}

func result(qps float64, p99 time.Duration) *loadgen.Result {
	r := &loadgen.Result{Requests: uint64(qps), Elapsed: time.Second}
	r.Latency.Record(p99)
	return r
}

func TestMarkdownRatios(t *testing.T) {
	rows := []row{
		{path: "direct", protocol: "thrift", conns: 8, res: result(40000, 300*time.Microsecond)},
		{path: "haproxy", protocol: "thrift", conns: 8, res: result(30000, 400*time.Microsecond), cpuPerReq: 20 * time.Microsecond},
		{path: "meltemi", protocol: "thrift", conns: 8, res: result(33000, 500*time.Microsecond), cpuPerReq: 15 * time.Microsecond},
		{path: "meltemi", protocol: "dubbo", conns: 8, pending: "no plugin .so"},
	}
	got := markdown(&config{payload: 1024, duration: time.Second, proxyCPU: "0"}, rows)
	for _, want := range []string{
		// Latencies are histogram buckets, within 1/32: only the exact columns are compared.
		"| meltemi | thrift | 8 | 33000 | ",
		" | 15.0 | 1.10x | 0.82x | 0.75x | 0.00 | 0.00 |",
		" | 20.0 | — | 0.75x | — |",
		"| direct | thrift | 8 | 40000 | ",
		"| meltemi | dubbo | 8 | pending (no plugin .so) |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("table lacks %q:\n%s", want, got)
		}
	}
}

func TestMedianRun(t *testing.T) {
	rs := []row{{res: result(3, 0)}, {res: result(1, 0)}, {res: result(2, 0)}}
	if got := medianRun(rs).res.Requests; got != 2 {
		t.Errorf("median run has %d requests, want 2", got)
	}
}
