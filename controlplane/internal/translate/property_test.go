package translate

import (
	"fmt"
	"math/rand/v2"
	"testing"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// randomModel builds a small mesh with every kind of mistake a router can make: hosts,
// ports and subsets that do not exist, weights that sum to 0, bad regexes, two matchers
// set at once, duplicate route names, protocols that do not match, bad rate limits.
func randomModel(rng *rand.Rand) *model.Model {
	pick := func(options ...string) string { return options[rng.IntN(len(options))] }
	hosts := []string{"a.ns.svc.cluster.local", "b.ns.svc.cluster.local", "c.ns.svc.cluster.local"}
	m := &model.Model{}
	for i, host := range hosts[:1+rng.IntN(len(hosts))] {
		s := &model.Service{Hostname: host, Source: model.ObjectRef{Kind: "Service", Name: host}}
		for p := range 1 + rng.IntN(2) {
			codec := pick("dubbo", "thrift")
			port := &model.Port{Number: uint32(20880 + p), Protocol: codec, Codec: codec}
			for e := range rng.IntN(4) {
				port.Endpoints = append(port.Endpoints, model.Endpoint{
					Address: fmt.Sprintf("10.0.%d.%d:%d", i, e, port.Number),
					Labels:  map[string]string{"version": pick("v1", "v2")},
					Weight:  uint32(rng.IntN(3)),
				})
			}
			s.Ports = append(s.Ports, port)
		}
		if rng.IntN(2) == 0 {
			s.DestinationRule = &model.ObjectRef{Kind: "DestinationRule", Name: host}
			s.Subsets = []model.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}
			s.TrafficPolicy = &model.TrafficPolicy{LB: model.LBPolicy(pick("", "RING_HASH", "MAGLEV", "RANDOM")),
				HashKeys: []string{pick("method", "")}, MaglevTableSize: uint64(rng.IntN(8))}
		}
		m.Services = append(m.Services, s)
	}
	for i := range 1 + rng.IntN(3) {
		spec := v1alpha1.MetaRouterSpec{Hosts: []string{pick(hosts...)}}
		for r := range 1 + rng.IntN(4) {
			mr := v1alpha1.MetaRoute{Name: pick("r", fmt.Sprint("r", r))}
			v := pick("x", "(", "")
			switch rng.IntN(4) {
			case 0:
				mr.Match = &v1alpha1.MetaRouteMatch{Attributes: map[string]v1alpha1.StringMatch{"method": {Regex: &v}}}
			case 1:
				mr.Match = &v1alpha1.MetaRouteMatch{Attributes: map[string]v1alpha1.StringMatch{"method": {Prefix: &v, Exact: &v}}}
			case 2:
				mr.Match = &v1alpha1.MetaRouteMatch{Attributes: map[string]v1alpha1.StringMatch{"": {Prefix: &v}}}
			}
			for range 1 + rng.IntN(3) {
				d := v1alpha1.MetaRouteDestination{
					Destination: v1alpha1.Destination{Host: pick(append(hosts, "missing")...), Subset: pick("", "v1", "v9")},
					Weight:      int32(rng.IntN(3)),
				}
				if rng.IntN(3) == 0 {
					d.Destination.Port = &v1alpha1.PortSelector{Number: int32(20880 + rng.IntN(3))}
				}
				mr.Route = append(mr.Route, d)
			}
			if rng.IntN(3) == 0 {
				mr.Mirror = &v1alpha1.Destination{Host: pick(hosts...), Subset: pick("", "v1")}
				mr.MirrorPercentage = &v1alpha1.Percent{Value: float64(rng.IntN(150))}
			}
			if rng.IntN(3) == 0 {
				mr.Retries = &v1alpha1.RetryPolicy{Attempts: int32(rng.IntN(3)), RetryOn: []v1alpha1.RetryCondition{v1alpha1.RetryCondition(pick("reset", "bogus"))}}
			}
			if rng.IntN(3) == 0 {
				mr.RequestMutation = []v1alpha1.KeyValue{{Key: pick("k", "")}, {Key: "k"}}
			}
			spec.Routes = append(spec.Routes, mr)
		}
		if rng.IntN(3) == 0 {
			spec.LocalRateLimit = &v1alpha1.LocalRateLimit{TokenBucket: &v1alpha1.TokenBucket{MaxTokens: int32(rng.IntN(3) - 1)}}
		}
		if rng.IntN(3) == 0 {
			spec.GlobalRateLimit = &v1alpha1.GlobalRateLimit{Domain: pick("", "d"), RateLimitService: "outbound|8081||rls"}
		}
		m.Routers = append(m.Routers, &model.Router{Source: model.ObjectRef{Kind: "MetaRouter", Name: fmt.Sprint("r", i)}, Spec: spec})
	}
	return m
}

// TestRandomModels: whatever the routers say, the resources are consistent (every route
// configuration valid against the clusters) and each router the translator did not apply
// as written has a problem.
func TestRandomModels(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	fallbacks := 0
	for i := range 2000 {
		m := randomModel(rng)
		res := Translate(m)
		checkConsistent(t, res)
		for _, r := range m.Routers {
			rc := res.Routes[name(20880, "", r.Spec.Hosts[0])]
			if rc == nil || len(rc.GetRoutes()) != 1 || rc.GetRoutes()[0].GetName() != DefaultRouteName {
				continue
			}
			fallbacks++
			if !hasProblem(res.Problems, "MetaRouter", v1alpha1.ConditionAccepted, ReasonInvalid, "") &&
				!hasProblem(res.Problems, "MetaRouter", v1alpha1.ConditionAccepted, ReasonConflicted, "") {
				t.Fatalf("model %d: router %s fell back to the default route without a problem: %v", i, r.Source, res.Problems)
			}
		}
		if t.Failed() {
			t.Fatalf("model %d failed", i)
		}
	}
	if fallbacks == 0 {
		t.Error("no router fell back: the generator makes no mistakes")
	}
}
