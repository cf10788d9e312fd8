package loadgen

import (
	"math/bits"
	"time"
)

// subBits is the number of mantissa bits kept below each power of two: 32 buckets per
// octave, so a recorded value is off by at most 1/32 (about 3%).
const subBits = 5

// Histogram counts latencies in log-linear buckets, HDR-style: recording is an index
// computation and an increment, with no allocation. The zero value is ready to use.
type Histogram struct {
	counts [(65 - subBits) << subBits]uint64
	total  uint64
	max    uint64
}

func bucket(v uint64) int {
	if v < 1<<(subBits+1) {
		return int(v)
	}
	n := bits.Len64(v)
	m := v >> (n - subBits - 1) // in [2^subBits, 2^(subBits+1))
	return (n-subBits)<<subBits + int(m) - 1<<subBits
}

// bucketValue is the midpoint of the values that fall into bucket i.
func bucketValue(i int) uint64 {
	if i < 1<<(subBits+1) {
		return uint64(i)
	}
	q, r := i>>subBits, uint64(i&(1<<subBits-1))
	shift := q - 1
	low := (1<<subBits + r) << shift
	return low + (1<<shift)/2
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucket(v)]++
	h.total++
	if v > h.max {
		h.max = v
	}
}

// Merge adds the counts of o.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the largest recorded value, exactly.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the value at quantile q (0 < q <= 1), within the bucket precision,
// never above Max; 0 when the histogram is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q*float64(h.total) + 0.5)
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(bucketValue(i), h.max))
		}
	}
	return time.Duration(h.max)
}
