package lb

import (
	"fmt"
	"math"
	"sync/atomic"
	"testing"
)

func endpoints(weights ...uint32) []Endpoint {
	eps := make([]Endpoint, len(weights))
	for i, w := range weights {
		eps[i] = Endpoint{Key: fmt.Sprintf("10.0.0.%d:20880", i+1), Weight: w}
	}
	return eps
}

func mustNew(t *testing.T, p Policy, eps []Endpoint, opts Options) Balancer {
	t.Helper()
	b, err := New(p, eps, opts)
	if err != nil {
		t.Fatalf("New(%v): %v", p, err)
	}
	return b
}

// within fails unless every endpoint got its weight's share of n picks, to tol (relative).
func within(t *testing.T, counts []int, weights []uint32, n int, tol float64) {
	t.Helper()
	var total float64
	for _, w := range weights {
		total += float64(w)
	}
	for i, c := range counts {
		want := float64(n) * float64(weights[i]) / total
		if math.Abs(float64(c)-want) > tol*want {
			t.Errorf("endpoint %d: %d picks, want %.0f ±%.0f%% (all: %v)", i, c, want, tol*100, counts)
		}
	}
}

func TestRoundRobinExactShares(t *testing.T) {
	weights := []uint32{1, 2, 3}
	b := mustNew(t, RoundRobin, endpoints(weights...), Options{})
	counts := make([]int, 3)
	for range 600 {
		counts[b.Pick(0, false)]++
	}
	if counts[0] != 100 || counts[1] != 200 || counts[2] != 300 {
		t.Fatalf("round robin over 600 picks: %v, want [100 200 300]", counts)
	}
}

func TestRoundRobinSmooth(t *testing.T) {
	// Weight 1:1 must alternate rather than send bursts.
	b := mustNew(t, RoundRobin, endpoints(5, 5), Options{})
	prev := b.Pick(0, false)
	for range 20 {
		cur := b.Pick(0, false)
		if cur == prev {
			t.Fatalf("equal weights picked %d twice in a row", cur)
		}
		prev = cur
	}
}

func TestRandomShares(t *testing.T) {
	weights := []uint32{1, 3}
	b := mustNew(t, Random, endpoints(weights...), Options{})
	counts := make([]int, 2)
	const n = 40000
	for range n {
		counts[b.Pick(0, false)]++
	}
	within(t, counts, weights, n, 0.05)
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	var load [3]atomic.Int64
	load[0].Store(100)
	load[1].Store(100)
	b := mustNew(t, LeastRequest, endpoints(1, 1, 1), Options{Load: func(i int) int64 { return load[i].Load() }})
	counts := make([]int, 3)
	for range 3000 {
		counts[b.Pick(0, false)]++
	}
	// Endpoint 2 wins every comparison it takes part in: 1 - (2/3)^2 = 5/9 of picks.
	if counts[2] < 1500 {
		t.Fatalf("idle endpoint got %d of 3000 picks: %v", counts[2], counts)
	}
	if _, err := New(LeastRequest, endpoints(1), Options{}); err == nil {
		t.Fatal("least_request without a load function accepted")
	}
}

func TestConsistentHashStable(t *testing.T) {
	for _, p := range []Policy{RingHash, Maglev} {
		t.Run(p.String(), func(t *testing.T) {
			eps := endpoints(1, 1, 1, 1)
			a := mustNew(t, p, eps, Options{})
			b := mustNew(t, p, eps, Options{}) // another process builds the same table
			for k := range 200 {
				h := HashString(Seed, fmt.Sprintf("user-%d", k))
				first := a.Pick(h, true)
				for range 3 {
					if got := a.Pick(h, true); got != first {
						t.Fatalf("key %d: picked %d then %d", k, first, got)
					}
				}
				if got := b.Pick(h, true); got != first {
					t.Fatalf("key %d: %d in one balancer, %d in another built alike", k, first, got)
				}
			}
		})
	}
}

func TestConsistentHashSpread(t *testing.T) {
	for _, p := range []Policy{RingHash, Maglev} {
		t.Run(p.String(), func(t *testing.T) {
			weights := []uint32{1, 1, 2, 4}
			b := mustNew(t, p, endpoints(weights...), Options{})
			counts := make([]int, len(weights))
			const n = 40000
			for k := range n {
				counts[b.Pick(HashString(Seed, fmt.Sprintf("key-%d", k)), true)]++
			}
			tol := 0.15
			if p == RingHash {
				tol = 0.25 // a 1024-node ring is coarser than a 65537-slot table
			}
			within(t, counts, weights, n, tol)
		})
	}
}

func TestConsistentHashMinimalDisruption(t *testing.T) {
	// Removing one endpoint of five moves only keys that were on it (ring), or few others
	// (Maglev).
	for _, p := range []Policy{RingHash, Maglev} {
		t.Run(p.String(), func(t *testing.T) {
			all := endpoints(1, 1, 1, 1, 1)
			before := mustNew(t, p, all, Options{})
			after := mustNew(t, p, all[:4], Options{})
			moved := 0
			const n = 10000
			for k := range n {
				h := HashString(Seed, fmt.Sprintf("key-%d", k))
				a := before.Pick(h, true)
				if a != 4 && after.Pick(h, true) != a {
					moved++
				}
			}
			if moved > n/20 {
				t.Fatalf("%d of %d keys not on the removed endpoint moved", moved, n)
			}
		})
	}
}

func TestHashingWithoutHashFallsBackToRandom(t *testing.T) {
	b := mustNew(t, Maglev, endpoints(1, 1), Options{})
	seen := map[int]bool{}
	for range 200 {
		seen[b.Pick(0, false)] = true
	}
	if len(seen) != 2 {
		t.Fatalf("unhashed picks reached %d endpoints, want 2", len(seen))
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(RoundRobin, nil, Options{}); err == nil {
		t.Error("no endpoints accepted")
	}
	if _, err := New(Maglev, endpoints(1), Options{MaglevSize: 100}); err == nil {
		t.Error("non-prime maglev size accepted")
	}
	if _, err := New(RingHash, endpoints(1), Options{RingSize: -1}); err == nil {
		t.Error("negative ring size accepted")
	}
	if _, err := New(Policy(99), endpoints(1), Options{}); err == nil {
		t.Error("unknown policy accepted")
	}
}

func BenchmarkPick(b *testing.B) {
	for _, p := range []Policy{RoundRobin, Random, RingHash, Maglev} {
		bal, err := New(p, endpoints(1, 2, 3, 4, 5, 6, 7, 8), Options{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(p.String(), func(b *testing.B) {
			b.ReportAllocs()
			h := HashString(Seed, "user-42")
			for b.Loop() {
				bal.Pick(h, true)
			}
		})
	}
}
