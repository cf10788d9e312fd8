package engine

import (
	"fmt"
	"math"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/plugin/engine/lb"
)

// decodeOne decodes a single frame with a fresh conn of c.
func decodeOne(t *testing.T, c codecs.Codec, b []byte) codecs.Frame {
	t.Helper()
	f, n, err := c.NewConn().Decode(b)
	if err != nil || f == nil || n != len(b) {
		t.Fatalf("decode: %v (n=%d of %d)", err, n, len(b))
	}
	return f
}

func TestMatchers(t *testing.T) {
	c := thriftCodec(t)
	frame := decodeOne(t, c, call("UserService:GetUser", 1))
	plain := decodeOne(t, c, call("GetUser", 1))
	cases := []struct {
		m           AttributeMatch
		onMux, onPl bool
	}{
		{AttributeMatch{Name: "method", Kind: MatchExact, Value: "GetUser"}, true, true},
		{AttributeMatch{Name: "method", Kind: MatchExact, Value: "Get"}, false, false},
		{AttributeMatch{Name: "method", Kind: MatchExact, Value: "GetUser", Invert: true}, false, false},
		{AttributeMatch{Name: "method", Kind: MatchPrefix, Value: "Get"}, true, true},
		{AttributeMatch{Name: "method", Kind: MatchPrefix, Value: "Set"}, false, false},
		{AttributeMatch{Name: "method", Kind: MatchPrefix, Value: "Set", Invert: true}, true, true},
		{AttributeMatch{Name: "service", Kind: MatchRegex, Value: "User.*"}, true, false},
		{AttributeMatch{Name: "service", Kind: MatchRegex, Value: "Service"}, false, false}, // anchored
		{AttributeMatch{Name: "method", Kind: MatchRegex, Value: "(Get|Set)User", Invert: true}, false, false},
		{AttributeMatch{Name: "service", Kind: MatchPresent}, true, false},
		{AttributeMatch{Name: "service", Kind: MatchPresent, Invert: true}, false, true},
		// An absent attribute matches nothing, so its inversion matches.
		{AttributeMatch{Name: "x-absent", Kind: MatchExact, Value: "", Invert: true}, true, true},
		{AttributeMatch{Name: "x-absent", Kind: MatchPrefix, Value: ""}, false, false},
	}
	clusters := map[string]*cluster{"c": {}}
	for _, tc := range cases {
		r, err := compileRoute(&Route{Cluster: "c", Match: []AttributeMatch{tc.m}}, clusters)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.matches(frame); got != tc.onMux {
			t.Errorf("%+v on a multiplexed call: %v, want %v", tc.m, got, tc.onMux)
		}
		if got := r.matches(plain); got != tc.onPl {
			t.Errorf("%+v on a plain call: %v, want %v", tc.m, got, tc.onPl)
		}
	}
}

func TestFirstMatchWinsAndAllConditionsHold(t *testing.T) {
	c := thriftCodec(t)
	eps := func(a string) []Endpoint { return []Endpoint{{Address: a}} }
	cfg := Config{Codec: c,
		Routes: []Route{
			{Name: "both", Cluster: "a", Match: []AttributeMatch{
				{Name: "service", Kind: MatchExact, Value: "Svc"}, {Name: "method", Kind: MatchExact, Value: "Get"}}},
			{Name: "svc", Cluster: "b", Match: []AttributeMatch{{Name: "service", Kind: MatchExact, Value: "Svc"}}},
			{Name: "get", Cluster: "a", Match: []AttributeMatch{{Name: "method", Kind: MatchPrefix, Value: "G"}}},
			{Name: "default", Cluster: "b"},
		},
		Clusters: []Cluster{{Name: "a", Endpoints: eps("10.0.0.1:1")}, {Name: "b", Endpoints: eps("10.0.0.2:1")}},
	}
	e, d := newEngine(t, cfg)
	for name, want := range map[string]string{
		"Svc:Get": "both", "Svc:Put": "svc", "Get": "get", "Other:Get": "get", "Put": "default",
	} {
		if r := e.table.Load().match(decodeOne(t, c, call(name, 1))); r == nil || r.name != want {
			t.Errorf("%s routed to %v, want %s", name, r, want)
		}
	}
	// And end to end: the request reaches the endpoint of the matched route's cluster.
	cl := newClient(t, e)
	cl.send(call("Svc:Put", 1))
	if d.count() != 1 || d.get(t, 0).addr != "10.0.0.2:1" {
		t.Fatalf("Svc:Put dialled %+v, want 10.0.0.2:1", d.dials)
	}
}

func TestWeightedClusters(t *testing.T) {
	c := thriftCodec(t)
	cfg := Config{Codec: c,
		Routes: []Route{{WeightedClusters: []WeightedCluster{{"a", 20}, {"b", 80}, {"z", 0}}}},
		Clusters: []Cluster{
			{Name: "a", Endpoints: []Endpoint{{Address: "10.0.0.1:1"}}},
			{Name: "b", Endpoints: []Endpoint{{Address: "10.0.0.2:1"}}},
			{Name: "z", Endpoints: []Endpoint{{Address: "10.0.0.3:1"}}},
		}}
	e, _ := newEngine(t, cfg)
	r := e.table.Load().routes[0]
	counts := map[string]int{}
	const n = 20000
	for range n {
		counts[r.pickCluster().name]++
	}
	if counts["z"] != 0 {
		t.Fatalf("zero-weight cluster got %d requests", counts["z"])
	}
	if share := float64(counts["a"]) / n; math.Abs(share-0.2) > 0.02 {
		t.Fatalf("cluster a got %.3f of the traffic, want 0.20 ± 0.02", share)
	}
}

// Each policy works through the engine; consistent hashing keeps a key on one endpoint.
func TestLoadBalancingPolicies(t *testing.T) {
	c := dubboCodec(t)
	eps := []Endpoint{{Address: "10.0.0.1:1"}, {Address: "10.0.0.2:1"}, {Address: "10.0.0.3:1"}}
	for _, p := range []lb.Policy{lb.RoundRobin, lb.LeastRequest, lb.Random, lb.RingHash, lb.Maglev} {
		t.Run(p.String(), func(t *testing.T) {
			cl := Cluster{Name: "c", Endpoints: eps, LB: p}
			if p.Hashing() {
				cl.HashAttributes = []string{"x-user"}
			}
			e, _ := newEngine(t, oneCluster(c, Route{}, cl))
			cc := e.testCluster("c")
			seen := map[string]int{}
			for i := range 300 {
				user := fmt.Sprint("u", i%30)
				f := decodeOne(t, c, dubboRequest(t, 1, "S", "", "m", map[string]string{"x-user": user}))
				ep, _ := cc.pick(f, 0)
				seen[ep.addr]++
				if p.Hashing() {
					for range 3 {
						if again, _ := cc.pick(f, 0); again != ep {
							t.Fatalf("user %s went to %s then %s", user, ep.addr, again.addr)
						}
					}
				}
			}
			if len(seen) != 3 {
				t.Fatalf("endpoints used: %v, want all 3", seen)
			}
			// A request without the hash attribute is still balanced.
			if p.Hashing() {
				f := decodeOne(t, c, dubboRequest(t, 1, "S", "", "m", nil))
				if ep, _ := cc.pick(f, 0); ep == nil {
					t.Fatal("no endpoint without a hash key")
				}
			}
		})
	}
}

func TestLeastRequestAvoidsBusyEndpoint(t *testing.T) {
	c := thriftCodec(t)
	eps := []Endpoint{{Address: "10.0.0.1:1"}, {Address: "10.0.0.2:1"}}
	e, _ := newEngine(t, oneCluster(c, Route{}, Cluster{Endpoints: eps, LB: lb.LeastRequest}))
	cl := newClient(t, e)
	for i := range 40 {
		cl.send(call("m", uint32(i)))
	}
	// With two endpoints, P2C picks the less loaded one whenever the sample differs, so the
	// in-flight counts stay close.
	cc := e.testCluster("c")
	a, b := cc.cfg.Load().eps[0].active.Load(), cc.cfg.Load().eps[1].active.Load()
	if a+b != 40 || a < 15 || b < 15 {
		t.Fatalf("in flight %d and %d, want a near-even split of 40", a, b)
	}
}

// Dubbo requests route on interface, version, method and attachments, end to end.
func TestDubboRouting(t *testing.T) {
	c := dubboCodec(t)
	ep := func(a string) []Endpoint { return []Endpoint{{Address: a}} }
	const svc = "org.apache.dubbo.sample.EchoService"
	cfg := Config{Codec: c,
		Routes: []Route{
			{Name: "canary", Cluster: "v2", Match: []AttributeMatch{{Name: "x-canary", Kind: MatchPresent}}},
			{Name: "v2", Cluster: "v2", Match: []AttributeMatch{
				{Name: "interface", Kind: MatchExact, Value: svc}, {Name: "version", Kind: MatchExact, Value: "2.0.0"}}},
			{Name: "echo", Cluster: "v1", Match: []AttributeMatch{{Name: "method", Kind: MatchRegex, Value: "[Ee]cho"}}},
		},
		Clusters: []Cluster{{Name: "v1", Endpoints: ep("10.0.0.1:20880")}, {Name: "v2", Endpoints: ep("10.0.0.2:20880")}},
	}
	e, _ := newEngine(t, cfg)
	for _, tc := range []struct {
		version, method string
		atts            map[string]string
		want            string
	}{
		{"", "Echo", nil, "echo"},
		{"2.0.0", "Echo", nil, "v2"},
		{"1.0.0", "echo", map[string]string{"x-canary": ""}, "canary"},
		{"1.0.0", "Other", nil, ""},
	} {
		f := decodeOne(t, c, dubboRequest(t, 1, svc, tc.version, tc.method, tc.atts))
		got := ""
		if r := e.table.Load().match(f); r != nil {
			got = r.name
		}
		if got != tc.want {
			t.Errorf("version %q method %q atts %v: route %q, want %q", tc.version, tc.method, tc.atts, got, tc.want)
		}
	}
	cl := newClient(t, e)
	cl.send(dubboRequest(t, 9, svc, "1.0.0", "Other", nil))
	cl.wantError(9, codecs.ReasonNoRoute)
}
