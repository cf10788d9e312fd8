package istio

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestAllocateVIPsKeepsAnnotationsAndIsOrderIndependent(t *testing.T) {
	p := netip.MustParsePrefix("240.240.0.0/16")
	entries := []VIPEntry{
		{Namespace: "a", Name: "kept", Current: addr("240.240.3.4"), Wants: true},
		{Namespace: "a", Name: "outside", Current: addr("10.0.0.9"), Wants: true}, // kept: annotations are never moved
		{Namespace: "b", Name: "new1", Wants: true},
		{Namespace: "b", Name: "new2", Wants: true},
		{Namespace: "c", Name: "nomeltemi"},
		{Namespace: "c", Name: "user", Reserved: []netip.Addr{addr("240.240.9.9")}},
	}
	got, err := AllocateVIPs(p, entries)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("%d VIPs %v; want 4 (the entries that want one)", len(got), got)
	}
	if got["a/kept"] != addr("240.240.3.4") || got["a/outside"] != addr("10.0.0.9") {
		t.Errorf("annotated entries moved: %v", got)
	}
	seen := map[netip.Addr]string{}
	for k, a := range got {
		if other, dup := seen[a]; dup {
			t.Errorf("%s and %s share %s", k, other, a)
		}
		seen[a] = k
		if strings.HasPrefix(k, "b/") && (!p.Contains(a) || a == addr("240.240.0.0") || a == addr("240.240.255.255")) {
			t.Errorf("%s got %s: not a usable address of %s", k, a, p)
		}
	}
	// Same answer in reverse order, and for a new entry whatever else exists.
	rev := make([]VIPEntry, len(entries))
	for i, e := range entries {
		rev[len(entries)-1-i] = e
	}
	again, err := AllocateVIPs(p, rev)
	if err != nil {
		t.Fatal(err)
	}
	for k, a := range got {
		if again[k] != a {
			t.Errorf("%s: %s, then %s in another order", k, a, again[k])
		}
	}
	alone, _ := AllocateVIPs(p, []VIPEntry{{Namespace: "b", Name: "new1", Wants: true}})
	if alone["b/new1"] != got["b/new1"] {
		t.Errorf("b/new1 gets %s alone, %s with others: the hash position should not depend on them", alone["b/new1"], got["b/new1"])
	}
}

// Two entries annotated with the same address (a copied manifest): the first by
// namespace/name keeps it, the other gets a new one. Reserved addresses are never handed out.
func TestAllocateVIPsDuplicateAndReserved(t *testing.T) {
	p := netip.MustParsePrefix("10.9.0.0/30") // usable: 10.9.0.1, 10.9.0.2
	got, err := AllocateVIPs(p, []VIPEntry{
		{Namespace: "ns", Name: "b", Current: addr("10.9.0.1"), Wants: true},
		{Namespace: "ns", Name: "a", Current: addr("10.9.0.1"), Wants: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got["ns/a"] != addr("10.9.0.1") || got["ns/b"] != addr("10.9.0.2") {
		t.Errorf("got %v; want ns/a keeping 10.9.0.1 and ns/b moved to 10.9.0.2", got)
	}
	got, err = AllocateVIPs(p, []VIPEntry{
		{Namespace: "ns", Name: "user", Reserved: []netip.Addr{addr("10.9.0.1")}},
		{Namespace: "ns", Name: "x", Wants: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got["ns/x"] != addr("10.9.0.2") {
		t.Errorf("got %v; want ns/x at 10.9.0.2, the only address not reserved", got)
	}
}

func TestAllocateVIPsFull(t *testing.T) {
	p := netip.MustParsePrefix("10.9.0.0/30")
	var entries []VIPEntry
	for i := range 3 {
		entries = append(entries, VIPEntry{Namespace: "ns", Name: fmt.Sprint(i), Wants: true})
	}
	got, err := AllocateVIPs(p, entries)
	if err == nil || !strings.Contains(err.Error(), "1 ServiceEntries got no address") {
		t.Errorf("err %v; want the range full for one entry", err)
	}
	if len(got) != 2 {
		t.Errorf("%d allocated; want 2", len(got))
	}
}

// A large range fills densely: 1,000 entries, all distinct, all inside, found quickly.
func TestAllocateVIPsMany(t *testing.T) {
	p := netip.MustParsePrefix("240.240.0.0/22") // 1,022 usable
	var entries []VIPEntry
	for i := range 1000 {
		entries = append(entries, VIPEntry{Namespace: "ns", Name: fmt.Sprintf("se-%d", i), Wants: true})
	}
	got, err := AllocateVIPs(p, entries)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, a := range got {
		if seen[a] || !p.Contains(a) {
			t.Fatalf("%s duplicate or outside %s", a, p)
		}
		seen[a] = true
	}
	if len(seen) != 1000 {
		t.Errorf("%d distinct addresses; want 1000", len(seen))
	}
}

func TestAllocateVIPsIPv6(t *testing.T) {
	p := netip.MustParsePrefix("fd00:240::/64")
	got, err := AllocateVIPs(p, []VIPEntry{{Namespace: "ns", Name: "x", Wants: true}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Contains(got["ns/x"]) {
		t.Errorf("%s outside %s", got["ns/x"], p)
	}
}
