//go:build !race

package controller

import (
	"runtime"
	"testing"
	"time"
)

// TestSyncScaleTarget asserts the scale target on the whole pipeline: 1,000 services
// x 10 endpoints x 5 routes built, translated and applied to the xDS caches in under 1 s,
// with the controller's live heap (its inputs, model, resources and caches) under 500 MiB.
// The race detector multiplies the time, so this runs in the non-race pass of `make test`
// (`make scale`).
func TestSyncScaleTarget(t *testing.T) {
	inputs := scaleInputs(1000, 10)
	c := New(Options{})
	best := time.Duration(1<<63 - 1)
	for i := range 3 {
		in := inputs
		if i%2 == 1 {
			in = scaleInputs(1000, 20) // every route configuration changes
		}
		start := time.Now()
		c.Sync(in)
		c.Server().Flush()
		best = min(best, time.Since(start))
		if best < time.Second {
			break
		}
	}
	r := c.Server().Resources()
	if len(r.Routes) != 1000 || len(r.Clusters) != 3000 || len(r.Endpoints) != 3000 || len(r.Problems) != 0 {
		t.Fatalf("%d routes, %d clusters, %d endpoints, %d problems", len(r.Routes), len(r.Clusters), len(r.Endpoints), len(r.Problems))
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	runtime.KeepAlive(inputs)
	heap := float64(ms.HeapAlloc) / (1 << 20)
	t.Logf("1,000 services x 10 endpoints x 5 routes: build + translate + apply %v (best of up to 3), live heap %.1f MiB", best, heap)
	if best >= time.Second {
		t.Errorf("full sync took %v, target < 1 s", best)
	}
	if heap >= 500 {
		t.Errorf("live heap %.1f MiB, target < 500 MiB", heap)
	}
}
