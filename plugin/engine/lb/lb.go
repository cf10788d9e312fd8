// Package lb picks an endpoint of a cluster for each request: round robin, least request,
// random, and consistent hashing (ring hash or Maglev) on a hash the caller computes from
// request attributes. Balancers are built once per cluster configuration, are immutable, and
// are safe for concurrent use; Pick never allocates or takes a lock.
package lb

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync/atomic"
)

// Policy is a load-balancing algorithm.
type Policy uint8

// Policies.
const (
	RoundRobin   Policy = iota // weighted round robin (the default)
	LeastRequest               // power of two choices on active requests per unit of weight
	Random                     // weighted random
	RingHash                   // consistent hashing on a ring of virtual nodes (Ketama-like)
	Maglev                     // consistent hashing with a Maglev lookup table
)

var policyNames = [...]string{RoundRobin: "round_robin", LeastRequest: "least_request",
	Random: "random", RingHash: "ring_hash", Maglev: "maglev"}

func (p Policy) String() string {
	if int(p) < len(policyNames) {
		return policyNames[p]
	}
	return fmt.Sprintf("policy(%d)", uint8(p))
}

// Hashing reports whether the policy uses the request hash.
func (p Policy) Hashing() bool { return p == RingHash || p == Maglev }

// Defaults and bounds of the consistent-hash tables.
const (
	DefaultRingSize = 1024
	MaxRingSize     = 1 << 23
	// DefaultMaglevSize is the Maglev table size; it must be prime (Envoy uses the same).
	DefaultMaglevSize = 65537
	// maxSchedule bounds the expanded round-robin schedule.
	maxSchedule = 1 << 16
)

// Endpoint is what a balancer needs to know about one endpoint.
type Endpoint struct {
	// Key identifies the endpoint for consistent hashing (its address): an endpoint keeps
	// its place on the ring or table whatever the others do.
	Key string
	// Weight is the relative share of traffic; 0 counts as 1.
	Weight uint32
}

// Options tune a balancer.
type Options struct {
	// Load returns the active requests of endpoint i, for LeastRequest. Required for it.
	Load func(i int) int64
	// RingSize is the minimum number of virtual nodes of a RingHash ring; 0 means
	// DefaultRingSize.
	RingSize int
	// MaglevSize is the Maglev table size, a prime larger than the endpoint count; 0 means
	// DefaultMaglevSize.
	MaglevSize int
}

// Balancer picks endpoints.
type Balancer interface {
	// Pick returns the index of the chosen endpoint. hash is used by the hashing policies
	// when hashed is true; without a hash they pick at random.
	Pick(hash uint64, hashed bool) int
}

// New builds a balancer over eps, which must not be empty.
func New(p Policy, eps []Endpoint, opts Options) (Balancer, error) {
	if len(eps) == 0 {
		return nil, errors.New("lb: no endpoints")
	}
	w := make([]uint64, len(eps))
	for i, e := range eps {
		w[i] = uint64(max(e.Weight, 1))
	}
	switch p {
	case RoundRobin:
		return newRoundRobin(w), nil
	case Random:
		return newRandom(w), nil
	case LeastRequest:
		if opts.Load == nil {
			return nil, errors.New("lb: least_request needs a load function")
		}
		return &leastRequest{w: w, load: opts.Load, rnd: newRandom(w)}, nil
	case RingHash:
		size := opts.RingSize
		if size == 0 {
			size = DefaultRingSize
		}
		if size < 0 || size > MaxRingSize {
			return nil, fmt.Errorf("lb: ring size %d out of range 1..%d", size, MaxRingSize)
		}
		var total uint64
		for _, x := range w {
			total += x
		}
		if total > MaxRingSize {
			return nil, fmt.Errorf("lb: ring hash weights sum to %d, limit %d", total, MaxRingSize)
		}
		return newRing(eps, w, size), nil
	case Maglev:
		size := opts.MaglevSize
		if size == 0 {
			size = DefaultMaglevSize
		}
		if !isPrime(size) || size <= len(eps) {
			return nil, fmt.Errorf("lb: maglev table size %d must be a prime larger than the %d endpoints", size, len(eps))
		}
		return newMaglev(eps, w, size), nil
	}
	return nil, fmt.Errorf("lb: unknown policy %v", p)
}

// roundRobin walks a precomputed smooth weighted schedule with one atomic counter.
type roundRobin struct {
	next     atomic.Uint64
	schedule []int32
}

func newRoundRobin(w []uint64) *roundRobin {
	w = slices.Clone(w)
	g := w[0]
	var total uint64
	for _, x := range w {
		g = gcd(g, x)
	}
	for i := range w {
		w[i] /= g
		total += w[i]
	}
	if total > maxSchedule {
		// Scale down; every endpoint keeps at least one slot.
		var t uint64
		for i := range w {
			w[i] = max(w[i]*maxSchedule/total, 1)
			t += w[i]
		}
		total = t
	}
	// Smooth weighted round robin (as nginx does): spreads each endpoint's turns evenly
	// instead of sending its whole weight in a burst.
	cur := make([]int64, len(w))
	s := make([]int32, 0, total)
	for range total {
		best := 0
		for i := range w {
			cur[i] += int64(w[i])
			if cur[i] > cur[best] {
				best = i
			}
		}
		cur[best] -= int64(total)
		s = append(s, int32(best))
	}
	rr := &roundRobin{schedule: s}
	// Start at a random place so that many processes do not all hit endpoint 0 first.
	rr.next.Store(rand.Uint64N(total))
	return rr
}

func (r *roundRobin) Pick(uint64, bool) int {
	n := r.next.Add(1)
	return int(r.schedule[n%uint64(len(r.schedule))])
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// random picks by weight with a binary search over cumulative weights.
type random struct{ cum []uint64 }

func newRandom(w []uint64) *random {
	cum := make([]uint64, len(w))
	var t uint64
	for i, x := range w {
		t += x
		cum[i] = t
	}
	return &random{cum: cum}
}

func (r *random) Pick(uint64, bool) int {
	if len(r.cum) == 1 {
		return 0
	}
	x := rand.Uint64N(r.cum[len(r.cum)-1])
	return sort.Search(len(r.cum), func(i int) bool { return r.cum[i] > x })
}

// leastRequest samples two endpoints by weight and keeps the one with fewer active requests
// per unit of weight.
type leastRequest struct {
	w    []uint64
	load func(int) int64
	rnd  *random
}

func (l *leastRequest) Pick(uint64, bool) int {
	if len(l.w) == 1 {
		return 0
	}
	a, b := l.rnd.Pick(0, false), l.rnd.Pick(0, false)
	// Compare load_a/w_a with load_b/w_b without division.
	if (l.load(b)+1)*int64(l.w[a]) < (l.load(a)+1)*int64(l.w[b]) {
		return b
	}
	return a
}

// ring is a sorted ring of virtual-node hashes; a request goes to the first node at or after
// its hash.
type ring struct {
	hashes []uint64
	owners []int32
	rnd    *random
}

func newRing(eps []Endpoint, w []uint64, minSize int) *ring {
	var total uint64
	for _, x := range w {
		total += x
	}
	// Every endpoint gets perWeight nodes per unit of weight, at least minSize in all.
	// perWeight is rounded up to a power of two so that adding or removing an endpoint
	// usually leaves the others' nodes where they were.
	perWeight := uint64(1)
	for perWeight*total < uint64(minSize) {
		perWeight <<= 1
	}
	type node struct {
		h     uint64
		owner int32
	}
	var nodes []node
	for i, e := range eps {
		for j := range w[i] * perWeight {
			h := HashString(HashUint64(Seed, j), e.Key)
			nodes = append(nodes, node{Mix(h), int32(i)})
		}
	}
	slices.SortFunc(nodes, func(a, b node) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return int(a.owner - b.owner)
	})
	r := &ring{hashes: make([]uint64, len(nodes)), owners: make([]int32, len(nodes)), rnd: newRandom(w)}
	for i, n := range nodes {
		r.hashes[i], r.owners[i] = n.h, n.owner
	}
	return r
}

func (r *ring) Pick(hash uint64, hashed bool) int {
	if !hashed {
		return r.rnd.Pick(0, false)
	}
	h := Mix(hash)
	i := sort.Search(len(r.hashes), func(i int) bool { return r.hashes[i] >= h })
	if i == len(r.hashes) {
		i = 0
	}
	return int(r.owners[i])
}

// maglev is a lookup table filled from each endpoint's permutation of the slots (Eisenbud
// et al., 2016), weighted by letting an endpoint take a turn each time its accumulated
// weight reaches the largest weight.
type maglev struct {
	table []int32
	rnd   *random
}

func newMaglev(eps []Endpoint, w []uint64, m int) *maglev {
	n := len(eps)
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	credit := make([]uint64, n)
	maxW := uint64(0)
	for i, e := range eps {
		offset[i] = Mix(HashString(Seed, e.Key)) % uint64(m)
		skip[i] = Mix(HashString(HashUint64(Seed, 1), e.Key))%uint64(m-1) + 1
		maxW = max(maxW, w[i])
	}
	table := make([]int32, m)
	for i := range table {
		table[i] = -1
	}
	filled := 0
	for filled < m {
		for i := 0; i < n && filled < m; i++ {
			credit[i] += w[i]
			if credit[i] < maxW {
				continue
			}
			credit[i] -= maxW
			for {
				c := (offset[i] + next[i]*skip[i]) % uint64(m)
				next[i]++
				if table[c] < 0 {
					table[c] = int32(i)
					filled++
					break
				}
			}
		}
	}
	return &maglev{table: table, rnd: newRandom(w)}
}

func (g *maglev) Pick(hash uint64, hashed bool) int {
	if !hashed {
		return g.rnd.Pick(0, false)
	}
	return int(g.table[Mix(hash)%uint64(len(g.table))])
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// Seed starts a request hash. The hash is fixed (not seeded per process) so that every proxy
// of a mesh sends the same key to the same endpoint.
const Seed uint64 = 14695981039346656037

// HashString folds s into h (FNV-1a, 64 bits).
func HashString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// HashUint64 folds v into h.
func HashUint64(h, v uint64) uint64 {
	for range 8 {
		h ^= v & 0xff
		h *= 1099511628211
		v >>= 8
	}
	return h
}

// Mix is a finaliser (splitmix64) that spreads FNV's weak low bits over the whole word.
func Mix(h uint64) uint64 {
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}
