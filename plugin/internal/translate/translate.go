// Package translate turns the plugin's configuration API (plugin/api/v1alpha1) into the
// engine's configuration (plugin/engine), so that the Envoy adapter stays a thin layer over
// Envoy's callbacks and the mapping can be tested on its own: EngineConfig for a filter
// configuration, FromXDS for the routes, clusters and endpoints received over xDS.
package translate

import (
	"fmt"
	"maps"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/plugin/engine"
	"github.com/meltemi-mesh/meltemi/plugin/engine/lb"
)

// Codec builds the codec that cfg names, from reg, with cfg's frame limit and parameters.
func Codec(reg *codecs.Registry, cfg *apiv1alpha1.FilterConfig) (codecs.Codec, error) {
	c, err := reg.New(cfg.GetProtocol(), codecs.Options{
		MaxFrameSize: cfg.EffectiveMaxFrameSize(),
		Params:       maps.Clone(cfg.GetCodecParams()),
	})
	if err != nil {
		return nil, fmt.Errorf("protocol: %w", err)
	}
	return c, nil
}

// EngineConfig returns the engine configuration of cfg, a validated FilterConfig, with codec
// (from Codec) as its protocol. Defaults documented by the API are applied here, so that the
// engine's own defaults never decide what a configuration means.
//
// A configuration whose routes come from RDS gets no routes here: they arrive over xDS,
// FromXDS translates them and engine.Update applies them (the engine is built with
// engine.Options.WaitForUpdate so that the first requests wait for them).
func EngineConfig(cfg *apiv1alpha1.FilterConfig, codec codecs.Codec) (engine.Config, error) {
	out := engine.Config{
		Codec:       codec,
		IdleTimeout: cfg.EffectiveIdleTimeout(),
	}
	routeTimeout := cfg.EffectiveRouteTimeout()
	for i, r := range cfg.GetRouteConfig().GetRoutes() {
		er, err := route(r, routeTimeout)
		if err != nil {
			return engine.Config{}, fmt.Errorf("route_config.routes[%d]: %w", i, err)
		}
		out.Routes = append(out.Routes, er)
	}
	for i, c := range cfg.GetClusters() {
		ec, err := cluster(c)
		if err != nil {
			return engine.Config{}, fmt.Errorf("clusters[%d]: %w", i, err)
		}
		out.Clusters = append(out.Clusters, ec)
	}
	return out, nil
}

func route(r *apiv1alpha1.Route, defaultTimeout time.Duration) (engine.Route, error) {
	a := r.GetRoute()
	out := engine.Route{
		Name:            r.GetName(),
		Cluster:         a.GetCluster(),
		Timeout:         a.EffectiveTimeout(defaultTimeout),
		RequestHeaders:  mutation(a.GetRequestMutation()),
		ResponseHeaders: mutation(a.GetResponseMutation()),
		OnewayMethods:   a.GetOnewayMethods(),
	}
	for _, w := range a.GetWeightedClusters().GetClusters() {
		out.WeightedClusters = append(out.WeightedClusters,
			engine.WeightedCluster{Cluster: w.GetName(), Weight: w.GetWeight()})
	}
	for _, m := range a.GetRequestMirrorPolicies() {
		out.Mirrors = append(out.Mirrors, engine.Mirror{Cluster: m.GetCluster(), Percent: m.EffectivePercent()})
	}
	for i, m := range r.GetMatch().GetAttributes() {
		em, err := match(m)
		if err != nil {
			return engine.Route{}, fmt.Errorf("match.attributes[%d]: %w", i, err)
		}
		out.Match = append(out.Match, em)
	}
	return out, nil
}

func match(m *apiv1alpha1.AttributeMatcher) (engine.AttributeMatch, error) {
	out := engine.AttributeMatch{Name: m.GetName(), Invert: m.GetInvert()}
	switch s := m.GetMatchSpecifier().(type) {
	case *apiv1alpha1.AttributeMatcher_Exact:
		out.Kind, out.Value = engine.MatchExact, s.Exact
	case *apiv1alpha1.AttributeMatcher_Prefix:
		out.Kind, out.Value = engine.MatchPrefix, s.Prefix
	case *apiv1alpha1.AttributeMatcher_Regex:
		out.Kind, out.Value = engine.MatchRegex, s.Regex
	case *apiv1alpha1.AttributeMatcher_Present:
		// present: false means "absent": the inverse of present.
		out.Kind = engine.MatchPresent
		out.Invert = out.Invert != !s.Present
	default:
		return engine.AttributeMatch{}, fmt.Errorf("attribute %q: no match specifier", m.GetName())
	}
	return out, nil
}

func mutation(m *apiv1alpha1.HeaderMutation) engine.HeaderMutation {
	var out engine.HeaderMutation
	for _, h := range m.GetSet() {
		out.Set = append(out.Set, engine.Header{Name: h.GetKey(), Value: h.GetValue()})
	}
	if r := m.GetRemove(); len(r) > 0 {
		out.Remove = append([]string(nil), r...)
	}
	return out
}

var policies = map[apiv1alpha1.Cluster_LbPolicy]lb.Policy{
	apiv1alpha1.Cluster_ROUND_ROBIN:   lb.RoundRobin,
	apiv1alpha1.Cluster_LEAST_REQUEST: lb.LeastRequest,
	apiv1alpha1.Cluster_RANDOM:        lb.Random,
	apiv1alpha1.Cluster_RING_HASH:     lb.RingHash,
	apiv1alpha1.Cluster_MAGLEV:        lb.Maglev,
}

func cluster(c *apiv1alpha1.Cluster) (engine.Cluster, error) {
	p, ok := policies[c.GetLbPolicy()]
	if !ok {
		return engine.Cluster{}, fmt.Errorf("cluster %q: unknown lb_policy %v", c.GetName(), c.GetLbPolicy())
	}
	out := engine.Cluster{
		Name:                   c.GetName(),
		LB:                     p,
		ConnectionsPerEndpoint: c.EffectiveConnectionsPerEndpoint(),
		MaxPendingRequests:     c.EffectiveMaxPendingRequests(),
		MaxRequests:            c.EffectiveMaxRequests(),
		ConnectTimeout:         c.EffectiveConnectTimeout(),
		MaxConnectAttempts:     c.EffectiveMaxConnectAttempts(),
	}
	if k := c.GetHashKeys(); len(k) > 0 {
		out.HashAttributes = append([]string(nil), k...)
	}
	for _, e := range c.GetEndpoints() {
		out.Endpoints = append(out.Endpoints, engine.Endpoint{
			Address: e.GetAddress(),
			Weight:  uint32(e.EffectiveWeight()),
			Labels:  maps.Clone(e.GetLabels()),
		})
	}
	return out, nil
}
