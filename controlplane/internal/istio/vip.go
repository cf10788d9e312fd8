package istio

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/big"
	"net/netip"
	"slices"
)

// DefaultVIPRange is the range VIPs are allocated from: class E (240.0.0.0/4) is reserved, so
// a VIP is never a real destination. Istio's own address auto-allocation uses the same range;
// it skips ServiceEntries that have spec.addresses, which every one the controller allocated
// to has, and --vip-range moves ours elsewhere if both are in use.
const DefaultVIPRange = "240.240.0.0/16"

// VIPEntry is one ServiceEntry as the allocator sees it.
type VIPEntry struct {
	Namespace, Name string
	// Current is the address of the meltemi.io/vip annotation; invalid if none.
	Current netip.Addr
	// Wants is true for a ServiceEntry that needs a VIP: it has a Meltemi port and no
	// spec.addresses besides the VIP the controller wrote.
	Wants bool
	// Reserved are addresses the ServiceEntry's spec.addresses set by someone else: never
	// handed out.
	Reserved []netip.Addr
}

func (e *VIPEntry) key() string { return e.Namespace + "/" + e.Name }

// AllocateVIPs returns the VIP of every entry that Wants one, by "namespace/name".
//
// Allocation is deterministic and stable: an entry keeps the address of its annotation
// (wherever it is, as long as no other entry holds it: of two entries annotated with the
// same address the first by namespace/name keeps it). A new entry gets the address at the
// position of the FNV hash of "namespace/name" in the range, probing linearly upwards (and
// wrapping) past addresses in use, so that its VIP does not depend on the order in which
// entries appear. The first and last addresses of an IPv4 range of more than two addresses
// (network and broadcast) are never handed out. An entry that finds the range full gets no
// address; the error says how many.
func AllocateVIPs(prefix netip.Prefix, entries []VIPEntry) (map[string]netip.Addr, error) {
	prefix = prefix.Masked()
	es := slices.Clone(entries)
	slices.SortFunc(es, func(a, b VIPEntry) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	used := make(map[netip.Addr]bool)
	for _, e := range es {
		for _, a := range e.Reserved {
			used[a] = true
		}
	}
	out := make(map[string]netip.Addr)
	var fresh []*VIPEntry
	for i := range es {
		e := &es[i]
		if !e.Wants {
			continue
		}
		if e.Current.IsValid() && !used[e.Current] {
			used[e.Current] = true
			out[e.key()] = e.Current
			continue
		}
		fresh = append(fresh, e)
	}
	// Annotations of entries that no longer want a VIP (their owner set spec.addresses, or
	// removed the Meltemi port) still hold their address: it comes back if they do.
	for _, e := range es {
		if !e.Wants && e.Current.IsValid() {
			used[e.Current] = true
		}
	}
	r := newVIPRange(prefix)
	full := 0
	for _, e := range fresh {
		a, ok := r.probe(e.key(), used)
		if !ok {
			full++
			continue
		}
		used[a] = true
		out[e.key()] = a
	}
	if full > 0 {
		return out, fmt.Errorf("VIP range %s is full: %d ServiceEntries got no address", prefix, full)
	}
	return out, nil
}

// vipRange is the usable part of a prefix: size addresses from first.
type vipRange struct {
	first netip.Addr
	size  uint64 // capped at 2^32: probing further is pointless
}

func newVIPRange(p netip.Prefix) vipRange {
	bits := p.Addr().BitLen() - p.Bits()
	size := uint64(1) << min(bits, 32)
	first := p.Addr()
	if p.Addr().Is4() && size > 2 {
		first = first.Next()
		size -= 2
	}
	return vipRange{first: first, size: size}
}

// at returns the i-th address of the range.
func (r vipRange) at(i uint64) netip.Addr {
	b := r.first.AsSlice()
	n := new(big.Int).SetBytes(b)
	n.Add(n, new(big.Int).SetUint64(i))
	nb := n.FillBytes(make([]byte, len(b)))
	a, _ := netip.AddrFromSlice(nb)
	return a
}

func (r vipRange) probe(key string, used map[netip.Addr]bool) (netip.Addr, bool) {
	h := fnv.New64a()
	h.Write([]byte(key))
	start := binary.BigEndian.Uint64(h.Sum(nil)) % r.size
	// At most len(used)+1 probes: more addresses than are in use cannot all be.
	for i := range min(r.size, uint64(len(used))+1) {
		a := r.at((start + i) % r.size)
		if !used[a] {
			return a, true
		}
	}
	return netip.Addr{}, false
}
