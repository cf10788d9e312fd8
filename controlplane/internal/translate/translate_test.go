package translate

import (
	"bytes"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

const echo = "echo.demo.svc.cluster.local"

func name(port uint32, subset, host string) string {
	return apiv1alpha1.ResourceName(apiv1alpha1.Outbound, port, subset, host)
}

func translateCase(t *testing.T, c string) *Resources {
	t.Helper()
	res := Translate(loadModel(t, c))
	checkConsistent(t, res)
	return res
}

func TestEmptyModel(t *testing.T) {
	res := Translate(&model.Model{})
	if res.Routes == nil || res.Clusters == nil || res.Endpoints == nil || res.Origins == nil {
		t.Fatalf("nil maps in %+v", res)
	}
	if n := len(res.Routes) + len(res.Clusters) + len(res.Endpoints) + len(res.Problems); n != 0 {
		t.Errorf("empty model gave %d resources/problems", n)
	}
}

// TestDeterministic translates every case several times: map iteration order (attributes,
// labels, resources) must not show in the result.
func TestDeterministic(t *testing.T) {
	models := map[string]*model.Model{"scale-small": scaleModel(20, 10, 5)}
	for _, c := range goldenCases(t) {
		models[c] = loadModel(t, c)
	}
	opts := proto.MarshalOptions{Deterministic: true}
	for c, m := range models {
		first := Translate(m)
		for range 3 {
			again := Translate(m)
			if !reflect.DeepEqual(first.Origins, again.Origins) || !reflect.DeepEqual(first.Problems, again.Problems) {
				t.Errorf("%s: origins or problems differ between runs", c)
			}
			for _, pair := range []struct {
				a, b map[string]proto.Message
			}{
				{messages(first.Routes), messages(again.Routes)},
				{messages(first.Clusters), messages(again.Clusters)},
				{messages(first.Endpoints), messages(again.Endpoints)},
			} {
				if len(pair.a) != len(pair.b) {
					t.Fatalf("%s: %d resources, then %d", c, len(pair.a), len(pair.b))
				}
				for n, a := range pair.a {
					b := pair.b[n]
					if !proto.Equal(a, b) {
						t.Errorf("%s: %s differs between runs", c, n)
					}
					ab, err := opts.Marshal(a)
					if err != nil {
						t.Fatal(err)
					}
					bb, err := opts.Marshal(b)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(ab, bb) {
						t.Errorf("%s: %s serializes differently between runs", c, n)
					}
				}
			}
		}
	}
}

func messages[M proto.Message](m map[string]M) map[string]proto.Message {
	out := make(map[string]proto.Message, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestDoesNotModifyModel(t *testing.T) {
	for _, c := range goldenCases(t) {
		m := loadModel(t, c)
		Translate(m)
		if !reflect.DeepEqual(m, loadModel(t, c)) {
			t.Errorf("%s: Translate modified the model", c)
		}
	}
}

func TestDefaultRoute(t *testing.T) {
	res := translateCase(t, "default-route")
	for _, port := range []uint32{20880, 9090} {
		n := name(port, "", echo)
		rc := res.Routes[n]
		if len(rc.GetRoutes()) != 1 {
			t.Fatalf("%s: %v", n, rc)
		}
		r := rc.GetRoutes()[0]
		if r.GetName() != DefaultRouteName || r.GetMatch() != nil || r.GetRoute().GetCluster() != n {
			t.Errorf("%s: default route %v", n, r)
		}
		if got := res.Origins[OriginKey(apiv1alpha1.RouteConfigurationTypeURL, n)]; len(got) != 1 || got[0].Kind != "Service" {
			t.Errorf("%s: origins %v, want the Service only", n, got)
		}
	}
	if len(res.Clusters) != 2 || len(res.Routes) != 2 {
		t.Errorf("%d clusters, %d routes: want 2 each (no DestinationRule, two ports)", len(res.Clusters), len(res.Routes))
	}
}

func TestMatchesSortedByName(t *testing.T) {
	res := translateCase(t, "match-invert")
	attrs := res.Routes[name(20880, "", echo)].GetRoutes()[0].GetMatch().GetAttributes()
	var names []string
	for _, a := range attrs {
		names = append(names, a.GetName())
	}
	if !slices.Equal(names, []string{"method", "x-a", "x-b"}) {
		t.Fatalf("attribute order %v", names)
	}
	if !attrs[0].GetInvert() || attrs[0].GetExact() != "sayHello" || attrs[1].GetInvert() || attrs[1].GetRegex() != ".+" ||
		!attrs[2].GetInvert() || attrs[2].GetPrefix() != "a" {
		t.Errorf("matchers %v", attrs)
	}

	present := translateCase(t, "match-present").Routes[name(20880, "", echo)].GetRoutes()[0].GetMatch().GetAttributes()
	if len(present) != 2 || present[0].GetMatchSpecifier() == nil || !present[0].GetPresent() ||
		present[1].GetMatchSpecifier() == nil || present[1].GetPresent() {
		t.Errorf("present matchers %v: want x-canary present, x-debug absent", present)
	}
}

func TestWeightedSplit(t *testing.T) {
	res := translateCase(t, "weighted-split")
	rc := res.Routes[name(20880, "", echo)]
	if rc.GetRoutes()[0].GetName() != "split" {
		t.Fatalf("route %v", rc.GetRoutes()[0])
	}
	var got []string
	for _, w := range rc.GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters() {
		got = append(got, w.GetName()+"="+itoa(w.GetWeight()))
	}
	want := []string{name(20880, "v1", echo) + "=80", name(20880, "v2", echo) + "=20", name(20880, "v3", echo) + "=0"}
	if !slices.Equal(got, want) {
		t.Errorf("split %v, want %v", got, want)
	}
	single := translateCase(t, "subset-destination").Routes[name(20880, "", echo)].GetRoutes()[0].GetRoute()
	if single.GetCluster() != name(20880, "v2", echo) || single.GetWeightedClusters() != nil {
		t.Errorf("single destination %v: want cluster %s", single, name(20880, "v2", echo))
	}
}

func itoa(v uint32) string { return strconv.FormatUint(uint64(v), 10) }

func TestDestinationPorts(t *testing.T) {
	res := translateCase(t, "explicit-destination-port")
	for port, want := range map[uint32][]string{
		20880: {name(20881, "", echo), name(7777, "", "other.demo.svc.cluster.local"), name(20880, "", echo)},
		20881: {name(20881, "", echo), name(7777, "", "other.demo.svc.cluster.local"), name(20881, "", echo)},
	} {
		var got []string
		for _, r := range res.Routes[name(port, "", echo)].GetRoutes() {
			got = append(got, r.GetRoute().GetCluster())
		}
		if !slices.Equal(got, want) {
			t.Errorf("port %d: clusters %v, want %v", port, got, want)
		}
	}
}

func TestRetriesAndTimeout(t *testing.T) {
	routes := translateCase(t, "retries").Routes[name(20880, "", echo)].GetRoutes()
	if p := routes[0].GetRoute().GetRetryPolicy(); p.GetNumRetries() != 2 || !slices.Equal(p.GetRetryOn(), []string{"connect-failure"}) || p.GetPerTryTimeout() != nil {
		t.Errorf("retries without retryOn: %v, want 2 retries on connect-failure only", p)
	}
	if p := routes[1].GetRoute().GetRetryPolicy(); p.GetNumRetries() != 3 || len(p.GetRetryOn()) != 3 ||
		p.GetPerTryTimeout().AsDuration() != 100*time.Millisecond {
		t.Errorf("retries: %v", p)
	}
	if p := routes[2].GetRoute().GetRetryPolicy(); p != nil {
		t.Errorf("attempts 0: retry policy %v, want none", p)
	}
	timeout := translateCase(t, "timeout").Routes[name(20880, "", echo)].GetRoutes()[0].GetRoute().GetTimeout()
	if timeout.AsDuration() != 2500*time.Millisecond {
		t.Errorf("timeout %v, want 2.5s", timeout)
	}
}

func TestMirrorAndMutation(t *testing.T) {
	routes := translateCase(t, "mirror").Routes[name(20880, "", echo)].GetRoutes()
	half := routes[0].GetRoute().GetRequestMirrorPolicies()
	if len(half) != 1 || half[0].GetCluster() != name(20880, "v2", echo) || half[0].GetRuntimeFractionPercent().GetValue() != 50 {
		t.Errorf("50%% mirror: %v", half)
	}
	all := routes[1].GetRoute().GetRequestMirrorPolicies()
	if len(all) != 1 || all[0].GetCluster() != name(20880, "", "shadow.demo.svc.cluster.local") || all[0].GetRuntimeFractionPercent() != nil {
		t.Errorf("full mirror: %v (percent unset means 100)", all)
	}

	a := translateCase(t, "header-mutation").Routes[name(20880, "", echo)].GetRoutes()[0].GetRoute()
	set := a.GetRequestMutation().GetSet()
	if len(set) != 2 || set[0].GetKey() != "x-env" || set[0].GetValue() != "prod" || set[1].GetKey() != "x-empty" || set[1].GetValue() != "" {
		t.Errorf("request mutation %v", set)
	}
	if rs := a.GetResponseMutation().GetSet(); len(rs) != 1 || rs[0].GetKey() != "x-served-by" {
		t.Errorf("response mutation %v", rs)
	}
}

func TestRateLimits(t *testing.T) {
	l := translateCase(t, "local-rate-limit").Routes[name(20880, "", echo)].GetLocalRateLimit()
	if l.GetTokenBucket().GetMaxTokens() != 100 || l.GetTokenBucket().GetTokensPerFill() != 10 || l.GetTokenBucket().GetFillInterval().AsDuration() != time.Second {
		t.Errorf("default bucket %v", l.GetTokenBucket())
	}
	if c := l.GetConditions(); len(c) != 2 || c[0].GetMatch().GetAttributes()[0].GetExact() != "sayHello" ||
		c[0].GetTokenBucket().GetMaxTokens() != 5 || len(c[1].GetMatch().GetAttributes()) != 2 {
		t.Errorf("conditions %v", c)
	}
	g := translateCase(t, "global-rate-limit").Routes[name(20880, "", echo)].GetGlobalRateLimit()
	if g.GetDomain() != "production" || !g.GetDenyOnFail() || g.GetRequestTimeout().AsDuration() != 50*time.Millisecond ||
		g.GetRateLimitService() != "outbound|8081||rate-limit-server.demo.svc.cluster.local" || len(g.GetDescriptors()) != 2 ||
		g.GetDescriptors()[1].GetProperty() != "x-user" || g.GetDescriptors()[1].GetDescriptorKey() != "user" {
		t.Errorf("global rate limit %v", g)
	}
}

func TestAerakiRouter(t *testing.T) {
	res := translateCase(t, "aeraki-router")
	n := name(20880, "", echo)
	if routes := res.Routes[n].GetRoutes(); len(routes) != 2 || routes[1].GetRoute().GetWeightedClusters() == nil {
		t.Fatalf("routes %v", routes)
	}
	origins := res.Origins[OriginKey(apiv1alpha1.RouteConfigurationTypeURL, n)]
	if !slices.ContainsFunc(origins, func(r model.ObjectRef) bool { return r.Group == "metaprotocol.aeraki.io" && r.Name == "echo" }) {
		t.Errorf("origins %v: want the Aeraki MetaRouter", origins)
	}
}

func TestLoadBalancers(t *testing.T) {
	for c, want := range map[string]clusterv3.Cluster_LbPolicy{
		"lb-round-robin":            clusterv3.Cluster_ROUND_ROBIN,
		"lb-least-request":          clusterv3.Cluster_LEAST_REQUEST,
		"lb-random":                 clusterv3.Cluster_RANDOM,
		"lb-ring-hash":              clusterv3.Cluster_RING_HASH,
		"lb-maglev":                 clusterv3.Cluster_MAGLEV,
		"consistent-hash-attribute": clusterv3.Cluster_RING_HASH,
	} {
		res := translateCase(t, c)
		for _, subset := range []string{"", "v1", "v2"} {
			cl := res.Clusters[name(20880, subset, echo)]
			if cl.GetLbPolicy() != want {
				t.Errorf("%s %q: policy %v, want %v", c, subset, cl.GetLbPolicy(), want)
			}
			keys := cl.GetMetadata().GetFilterMetadata()[apiv1alpha1.MetadataNamespace].GetFields()[apiv1alpha1.ClusterMetadataHashKeys]
			hashing := want == clusterv3.Cluster_RING_HASH || want == clusterv3.Cluster_MAGLEV
			if hashing != (keys != nil) {
				t.Errorf("%s: hash keys %v with %v", c, keys, want)
			}
		}
	}
	ring := translateCase(t, "lb-ring-hash").Clusters[name(20880, "", echo)]
	keys := ring.GetMetadata().GetFilterMetadata()["meltemi"].GetFields()["hash_keys"].GetListValue().AsSlice()
	if !reflect.DeepEqual(keys, []any{"service", "method"}) || ring.GetRingHashLbConfig().GetMinimumRingSize().GetValue() != 2048 {
		t.Errorf("ring hash: keys %v, config %v", keys, ring.GetRingHashLbConfig())
	}
	attr := translateCase(t, "consistent-hash-attribute").Clusters[name(20880, "", echo)]
	if k := attr.GetMetadata().GetFilterMetadata()["meltemi"].GetFields()["hash_keys"].GetListValue().AsSlice(); !reflect.DeepEqual(k, []any{"x-user-id"}) {
		t.Errorf("consistent hash keys %v", k)
	}
	if m := translateCase(t, "lb-maglev").Clusters[name(20880, "", echo)]; m.GetMaglevLbConfig().GetTableSize().GetValue() != 65537 {
		t.Errorf("maglev %v", m.GetMaglevLbConfig())
	}
	if c := translateCase(t, "lb-round-robin").Clusters[name(20880, "", echo)]; c.GetLbConfig() != nil || c.GetMetadata() != nil {
		t.Errorf("round robin sets %v / %v", c.GetLbConfig(), c.GetMetadata())
	}
}

func TestConnectionPoolAndOutlierDetection(t *testing.T) {
	c := translateCase(t, "connection-pool").Clusters[name(20880, "v1", echo)]
	th := c.GetCircuitBreakers().GetThresholds()
	if c.GetConnectTimeout().AsDuration() != 250*time.Millisecond || len(th) != 1 ||
		th[0].GetMaxConnections().GetValue() != 100 || th[0].GetMaxPendingRequests().GetValue() != 10 ||
		th[0].GetMaxRequests().GetValue() != 1000 || th[0].GetMaxRetries().GetValue() != 3 {
		t.Errorf("connection pool: timeout %v, thresholds %v", c.GetConnectTimeout(), th)
	}
	p := translateCase(t, "connection-pool-partial").Clusters[name(20880, "", echo)]
	if th := p.GetCircuitBreakers().GetThresholds(); len(th) != 1 || th[0].GetMaxRequests().GetValue() != 64 ||
		th[0].GetMaxConnections() != nil || p.GetConnectTimeout() != nil {
		t.Errorf("partial pool: %v, timeout %v", th, p.GetConnectTimeout())
	}
	if n := translateCase(t, "lb-random").Clusters[name(20880, "", echo)]; n.GetCircuitBreakers() != nil || n.GetOutlierDetection() != nil || n.GetConnectTimeout() != nil {
		t.Errorf("no limits set, got %v", n)
	}

	od := translateCase(t, "outlier-detection").Clusters[name(20880, "", echo)]
	o := od.GetOutlierDetection()
	if o.GetConsecutive_5Xx().GetValue() != 5 || o.GetEnforcingConsecutive_5Xx().GetValue() != 100 ||
		o.GetConsecutiveGatewayFailure().GetValue() != 3 || o.GetInterval().AsDuration() != 10*time.Second ||
		o.GetBaseEjectionTime().AsDuration() != 30*time.Second || o.GetMaxEjectionPercent().GetValue() != 50 ||
		!o.GetSplitExternalLocalOriginErrors() || o.GetConsecutiveLocalOriginFailure().GetValue() != 2 ||
		od.GetCommonLbConfig().GetHealthyPanicThreshold().GetValue() != 25 {
		t.Errorf("outlier detection %v, common %v", o, od.GetCommonLbConfig())
	}
}

func TestSubsetPolicyOverride(t *testing.T) {
	res := translateCase(t, "subset-policy-override")
	all, v1, v2, v3 := res.Clusters[name(20880, "", echo)], res.Clusters[name(20880, "v1", echo)],
		res.Clusters[name(20880, "v2", echo)], res.Clusters[name(20880, "v3", echo)]
	if !proto.Equal(withName(all, ""), withName(v1, "")) {
		t.Errorf("v1 has no policy and must inherit everything:\n%v\n%v", all, v1)
	}
	// v2 replaces the load balancer, inherits the pool and outlier detection.
	if v2.GetLbPolicy() != clusterv3.Cluster_MAGLEV || v2.GetCircuitBreakers().GetThresholds()[0].GetMaxConnections().GetValue() != 10 ||
		v2.GetConnectTimeout().AsDuration() != time.Second || v2.GetOutlierDetection().GetConsecutive_5Xx().GetValue() != 7 {
		t.Errorf("v2 %v", v2)
	}
	// v3 replaces the whole connection pool: no connect timeout, no max connections.
	th := v3.GetCircuitBreakers().GetThresholds()
	if v3.GetLbPolicy() != clusterv3.Cluster_LEAST_REQUEST || v3.GetConnectTimeout() != nil || len(th) != 1 ||
		th[0].GetMaxConnections() != nil || th[0].GetMaxRequests().GetValue() != 5 || v3.GetOutlierDetection() == nil {
		t.Errorf("v3 %v", v3)
	}
	// Port-level policies: the port's own for the whole port, the subset's port policy for
	// that subset on that port.
	if p := res.Clusters[name(20881, "", echo)]; p.GetLbPolicy() != clusterv3.Cluster_RANDOM || p.GetCircuitBreakers() != nil {
		t.Errorf("port 20881: %v", p)
	}
	if p := res.Clusters[name(20881, "v2", echo)]; p.GetLbPolicy() != clusterv3.Cluster_RING_HASH {
		t.Errorf("port 20881 subset v2: %v", p)
	}
	if p := res.Clusters[name(20881, "v1", echo)]; p.GetLbPolicy() != clusterv3.Cluster_RANDOM {
		t.Errorf("port 20881 subset v1 inherits the port's policy: %v", p)
	}
}

func withName(c *clusterv3.Cluster, n string) *clusterv3.Cluster {
	c = proto.Clone(c).(*clusterv3.Cluster)
	c.Name = n
	c.EdsClusterConfig.ServiceName = n
	return c
}

func TestEndpoints(t *testing.T) {
	res := translateCase(t, "endpoint-weights-labels")
	type ep struct {
		addr   string
		weight uint32
		labels map[string]any
	}
	get := func(subset string) []ep {
		var out []ep
		for _, l := range res.Endpoints[name(20880, subset, echo)].GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				sa := e.GetEndpoint().GetAddress().GetSocketAddress()
				labels := e.GetMetadata().GetFilterMetadata()["meltemi"].GetFields()["labels"].GetStructValue().AsMap()
				out = append(out, ep{sa.GetAddress() + ":" + itoa(sa.GetPortValue()), e.GetLoadBalancingWeight().GetValue(), labels})
			}
		}
		return out
	}
	if got := get("v1-a"); len(got) != 1 || got[0].addr != "10.0.0.1:20880" || got[0].weight != 3 ||
		!reflect.DeepEqual(got[0].labels, map[string]any{"version": "v1", "zone": "a"}) {
		t.Errorf("v1-a (all labels must match): %v", got)
	}
	if got := get("v1"); len(got) != 2 || got[1].addr != "10.0.0.2:20880" || got[1].weight != 0 {
		t.Errorf("v1: %v (weight 0 must stay unset)", got)
	}
	if got := get(""); len(got) != 3 {
		t.Errorf("all endpoints: %v", got)
	}
	if got := get("none"); len(got) != 0 {
		t.Errorf("subset matching nothing: %v", got)
	}

	cla := translateCase(t, "locality-grouping").Endpoints[name(20880, "", echo)]
	var groups []string
	for _, l := range cla.GetEndpoints() {
		g := l.GetLocality().GetRegion() + "/" + l.GetLocality().GetZone() + "/" + l.GetLocality().GetSubZone() + ":"
		for _, e := range l.GetLbEndpoints() {
			g += " " + e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
		}
		groups = append(groups, g)
	}
	want := []string{"//: 10.0.0.1", "eu-west-1/eu-west-1a/rack1: 10.0.0.9 10.0.0.10", "eu-west-1/eu-west-1b/: 10.0.0.3", "us-east-1//: 10.0.0.2"}
	if !slices.Equal(groups, want) {
		t.Errorf("localities\n%q\nwant\n%q", groups, want)
	}

	v6 := translateCase(t, "ipv6-endpoint").Endpoints[name(20880, "", echo)].GetEndpoints()[0].GetLbEndpoints()
	if sa := v6[1].GetEndpoint().GetAddress().GetSocketAddress(); len(v6) != 2 || sa.GetAddress() != "fd00::7" || sa.GetPortValue() != 20880 {
		t.Errorf("IPv6 endpoint %v", v6)
	}
}

func TestOrigins(t *testing.T) {
	res := translateCase(t, "subset-destination")
	rc := res.Origins[OriginKey(apiv1alpha1.RouteConfigurationTypeURL, name(20880, "", echo))]
	if len(rc) != 2 || rc[0].Kind != "Service" || rc[1].Kind != "MetaRouter" {
		t.Errorf("route configuration origins %v: want the Service and the MetaRouter", rc)
	}
	for _, typeURL := range []string{apiv1alpha1.ClusterTypeURL, apiv1alpha1.EndpointTypeURL} {
		o := res.Origins[OriginKey(typeURL, name(20880, "v2", echo))]
		if len(o) != 2 || o[0].Kind != "Service" || o[1].Kind != "DestinationRule" {
			t.Errorf("%s origins %v: want the Service and the DestinationRule", typeURL, o)
		}
	}
}

func hasProblem(ps []model.Problem, kind, condition, reason, text string) bool {
	return slices.ContainsFunc(ps, func(p model.Problem) bool {
		return p.Object.Kind == kind && p.Condition == condition && p.Reason == reason && strings.Contains(p.Message, text)
	})
}

func TestUnresolvableDestinations(t *testing.T) {
	res := translateCase(t, "unresolvable-destination")
	if res.Problems[0].Reason != "FromModel" {
		t.Errorf("the model's problems must come first: %v", res.Problems[0])
	}
	for _, want := range []struct{ condition, reason, text string }{
		{v1alpha1.ConditionResolvedRefs, ReasonBackendNotFound, "routes[0].route[1]"},
		{v1alpha1.ConditionResolvedRefs, ReasonBackendNotFound, "routes[0].mirror"},
		{v1alpha1.ConditionResolvedRefs, ReasonSubsetNotFound, `no subset "v9"`},
		{v1alpha1.ConditionResolvedRefs, ReasonPortNotFound, "no Meltemi port 1234"},
		{v1alpha1.ConditionResolvedRefs, ReasonPortNotFound, "no Meltemi port 20881 and several others"},
		{v1alpha1.ConditionAccepted, ReasonInvalid, name(20881, "", echo)},
	} {
		if !hasProblem(res.Problems, "MetaRouter", want.condition, want.reason, want.text) {
			t.Errorf("no %s/%s problem mentioning %q in %v", want.condition, want.reason, want.text, res.Problems)
		}
	}
	// Port 20880 keeps the router's routes minus the unresolved destinations.
	routes := res.Routes[name(20880, "", echo)].GetRoutes()
	if len(routes) != 3 || len(routes[0].GetRoute().GetWeightedClusters().GetClusters()) != 1 ||
		routes[0].GetRoute().GetRequestMirrorPolicies() != nil || routes[2].GetRoute().GetCluster() != name(20880, "", "multi.demo.svc.cluster.local") {
		t.Errorf("port 20880 routes %v", routes)
	}
	if r := res.Routes[name(20881, "", echo)].GetRoutes(); len(r) != 1 || r[0].GetName() != DefaultRouteName {
		t.Errorf("port 20881 must fall back to the default route: %v", r)
	}
}

func TestInvalidRouterFallsBack(t *testing.T) {
	res := translateCase(t, "invalid-router")
	if r := res.Routes[name(20880, "", echo)].GetRoutes(); len(r) != 1 || r[0].GetName() != DefaultRouteName {
		t.Errorf("routes %v: want the default route", r)
	}
	for _, text := range []string{"regex", `duplicate route "r"`, "global_rate_limit.domain: required"} {
		if !hasProblem(res.Problems, "MetaRouter", v1alpha1.ConditionAccepted, ReasonInvalid, text) {
			t.Errorf("no Invalid problem mentioning %q: %v", text, res.Problems)
		}
	}
	// The origins still name the router: it is why the host has its default route.
	if o := res.Origins[OriginKey(apiv1alpha1.RouteConfigurationTypeURL, name(20880, "", echo))]; len(o) != 2 {
		t.Errorf("origins %v", o)
	}

	conflicts := translateCase(t, "router-conflicts")
	if r := conflicts.Routes[name(20880, "", echo)].GetRoutes(); len(r) != 1 || r[0].GetName() != "first" {
		t.Errorf("routes %v: the first router wins", r)
	}
	if !hasProblem(conflicts.Problems, "MetaRouter", v1alpha1.ConditionAccepted, ReasonConflicted, "demo/a") ||
		!hasProblem(conflicts.Problems, "MetaRouter", v1alpha1.ConditionResolvedRefs, ReasonHostNotFound, "nowhere") {
		t.Errorf("problems %v", conflicts.Problems)
	}

	policy := translateCase(t, "invalid-traffic-policy")
	if c := policy.Clusters[name(20880, "", echo)]; c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN || c.GetMetadata() != nil {
		t.Errorf("RING_HASH without keys must fall back to the default: %v", c)
	}
	if !hasProblem(policy.Problems, "DestinationRule", v1alpha1.ConditionAccepted, ReasonInvalid, "needs hash keys") ||
		!hasProblem(policy.Problems, "DestinationRule", v1alpha1.ConditionAccepted, ReasonInvalid, "FASTEST") ||
		!hasProblem(policy.Problems, "Service", v1alpha1.ConditionAccepted, ReasonUnsupportedAddress, "nonsense") {
		t.Errorf("problems %v", policy.Problems)
	}
	if n := len(policy.Endpoints[name(20880, "", echo)].GetEndpoints()[0].GetLbEndpoints()); n != 3 {
		t.Errorf("%d endpoints, want the 3 valid ones only", n)
	}
	for subset, text := range map[string]string{
		"big-ring":    "minimum ring size 8388609",
		"not-prime":   "Maglev table size 65536 is not a prime",
		"small-table": "Maglev table size 2 is not larger than its 2 endpoints",
	} {
		c := policy.Clusters[name(20880, subset, echo)]
		if c.GetLbConfig() != nil || c.GetLbPolicy() == clusterv3.Cluster_ROUND_ROBIN {
			t.Errorf("%s: %v: want the hashing policy without its size", subset, c)
		}
		if !hasProblem(policy.Problems, "DestinationRule", v1alpha1.ConditionAccepted, ReasonInvalid, text) {
			t.Errorf("no problem %q in %v", text, policy.Problems)
		}
	}
}

// TestMalformedModel feeds what Build should never produce but a bug might: the translator
// must still emit consistent resources and say what it dropped.
func TestMalformedModel(t *testing.T) {
	dr := &model.ObjectRef{Group: "networking.istio.io", Kind: "DestinationRule", Namespace: "demo", Name: "echo"}
	svc := func(source string) *model.Service {
		return &model.Service{
			Hostname:        echo,
			Source:          model.ObjectRef{Kind: "Service", Namespace: "demo", Name: source},
			DestinationRule: dr,
			Ports: []*model.Port{{Number: 20880, Endpoints: []model.Endpoint{
				{Address: "10.0.0.1:20880", Labels: map[string]string{"version": "v1"}},
				{Address: "10.0.0.1:20880"}, // the same server twice
				{Address: "0.0.0.0:20880"},
				{Address: "10.0.0.2:0"},
			}}},
			Subsets: []model.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}, {Name: ""}, {Name: "v1"}},
		}
	}
	modelProblem := model.Problem{Object: *dr, Condition: v1alpha1.ConditionAccepted, Reason: ReasonInvalid,
		Message: `host "echo.demo.svc.cluster.local": subset 1 has no name`}
	m := &model.Model{
		Services: []*model.Service{nil, svc("first"), svc("second")},
		Routers:  []*model.Router{nil, {Source: model.ObjectRef{Kind: "MetaRouter", Name: "no-hosts"}}},
		Problems: []model.Problem{modelProblem},
	}
	res := Translate(m)
	checkConsistent(t, res)
	if len(res.Clusters) != 2 { // all endpoints and v1; the unnamed and repeated subsets dropped
		t.Errorf("clusters %v", slices.Sorted(maps.Keys(res.Clusters)))
	}
	if o := res.Origins[OriginKey(apiv1alpha1.ClusterTypeURL, name(20880, "", echo))]; len(o) != 2 || o[0].Name != "first" {
		t.Errorf("origins %v: the first service with the hostname wins", o)
	}
	if lbs := res.Endpoints[name(20880, "", echo)].GetEndpoints()[0].GetLbEndpoints(); len(lbs) != 1 {
		t.Errorf("endpoints %v: want 10.0.0.1:20880 once", lbs)
	}
	if !hasProblem(res.Problems, "DestinationRule", v1alpha1.ConditionAccepted, ReasonInvalid, `subset "v1" is defined twice`) ||
		!hasProblem(res.Problems, "Service", v1alpha1.ConditionAccepted, ReasonUnsupportedAddress, "0.0.0.0:20880") ||
		!hasProblem(res.Problems, "Service", v1alpha1.ConditionAccepted, ReasonUnsupportedAddress, "10.0.0.2:0") {
		t.Errorf("problems %v", res.Problems)
	}
	// A problem the model already has is not repeated.
	n := 0
	for _, p := range res.Problems {
		if p == modelProblem {
			n++
		}
	}
	if n != 1 || res.Problems[0] != modelProblem {
		t.Errorf("model problem reported %d times (want once, first): %v", n, res.Problems)
	}
}

// TestBuildProblemsNotRepeated: what Build already reported about a router (in its own
// words) is not reported again by the translator; what only the translator can see is.
func TestBuildProblemsNotRepeated(t *testing.T) {
	m := loadModel(t, "unresolvable-destination")
	router := m.Routers[0].Source
	m.Problems = []model.Problem{
		{Object: router, Condition: v1alpha1.ConditionResolvedRefs, Reason: ReasonSubsetNotFound, Message: "Build: no subset v9"},
		{Object: router, Condition: v1alpha1.ConditionResolvedRefs, Reason: ReasonBackendNotFound, Message: "Build: no missing host"},
	}
	res := Translate(m)
	checkConsistent(t, res)
	count := func(reason string) int {
		n := 0
		for _, p := range res.Problems {
			if p.Reason == reason {
				n++
			}
		}
		return n
	}
	if count(ReasonSubsetNotFound) != 1 || count(ReasonBackendNotFound) != 1 {
		t.Errorf("Build's problems repeated: %v", res.Problems)
	}
	// The explicit port 1234 (not reported by this model) and the ambiguous port (which
	// only the translator can see) are reported.
	if count(ReasonPortNotFound) != 2 || count(ReasonInvalid) != 1 {
		t.Errorf("translator problems missing: %v", res.Problems)
	}
}

func TestProtocolMismatch(t *testing.T) {
	res := translateCase(t, "protocol-mismatch")
	if r := res.Routes[name(20880, "", echo)].GetRoutes(); len(r) != 1 || r[0].GetName() != DefaultRouteName {
		t.Errorf("routes %v: want the default route", r)
	}
	if !hasProblem(res.Problems, "MetaRouter", v1alpha1.ConditionResolvedRefs, ReasonPortNotFound, "speaks thrift") {
		t.Errorf("problems %v", res.Problems)
	}
}
