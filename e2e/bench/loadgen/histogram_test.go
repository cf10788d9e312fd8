package loadgen

import (
	"testing"
	"time"
)

func TestBucketRoundTrip(t *testing.T) {
	// Every value falls in a bucket whose representative is within 1/32 of it, and bucket
	// indexes grow with the value.
	prev := -1
	for _, v := range []uint64{0, 1, 31, 63, 64, 65, 100, 1000, 4095, 4096, 123456, 1e9, 1 << 40, 1<<63 + 12345} {
		i := bucket(v)
		if i < prev {
			t.Errorf("bucket(%d) = %d, below the previous value's %d", v, i, prev)
		}
		prev = i
		if i >= len(Histogram{}.counts) {
			t.Fatalf("bucket(%d) = %d, out of range", v, i)
		}
		got := bucketValue(i)
		if diff := float64(got) - float64(v); diff > float64(v)/32+1 || -diff > float64(v)/32+1 {
			t.Errorf("bucketValue(bucket(%d)) = %d, off by more than 1/32", v, got)
		}
	}
}

func TestQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	var o Histogram
	o.Record(time.Second)
	h.Merge(&o)
	if h.Count() != 1001 {
		t.Errorf("Count = %d, want 1001", h.Count())
	}
	if h.Max() != time.Second {
		t.Errorf("Max = %v, want 1s", h.Max())
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, time.Second}} {
		got := h.Quantile(c.q)
		if d := got - c.want; d > c.want/32 || -d > c.want/32 {
			t.Errorf("Quantile(%v) = %v, want %v within 1/32", c.q, got, c.want)
		}
	}
	if got := (&Histogram{}).Quantile(0.5); got != 0 {
		t.Errorf("empty Quantile = %v, want 0", got)
	}
}

func TestRecordDoesNotAllocate(t *testing.T) {
	var h Histogram
	if n := testing.AllocsPerRun(100, func() { h.Record(123 * time.Microsecond) }); n != 0 {
		t.Errorf("Record allocates %v times", n)
	}
}
