package translate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// Problem reasons set by translation: the model's, so that a status shows one vocabulary.
// The condition is the status condition set False.
const (
	// ReasonInvalid (Accepted): the router's routes did not form a valid route
	// configuration, and the host gets its default route instead; or a DestinationRule
	// policy the plugin would reject was dropped.
	ReasonInvalid = model.ReasonInvalid
	// ReasonConflicted (Accepted): another router, first in model order, already routes the
	// same host. (Build leaves such routers out of the model.)
	ReasonConflicted = model.ReasonConflicted
	// ReasonHostNotFound (ResolvedRefs): the router's host is not a Meltemi service.
	ReasonHostNotFound = model.ReasonHostNotFound
	// ReasonBackendNotFound (ResolvedRefs): a destination host is not a Meltemi service.
	ReasonBackendNotFound = model.ReasonBackendNotFound
	// ReasonPortNotFound (ResolvedRefs): a destination's port cannot be resolved.
	ReasonPortNotFound = model.ReasonPortNotFound
	// ReasonSubsetNotFound (ResolvedRefs): a destination's subset is not defined for its host.
	ReasonSubsetNotFound = model.ReasonSubsetNotFound
	// ReasonUnsupportedAddress (Accepted): an endpoint address is not a literal ip:port.
	ReasonUnsupportedAddress = model.ReasonUnsupportedAddress
)

// DefaultRouteName is the name of the single route of a service port no router routes.
const DefaultRouteName = "default"

// Translate turns a model into xDS resources. It does not modify the model. Resources
// share sub-messages (an endpoint is in its cluster and its subsets' clusters) and origin
// slices: callers must not modify them.
//
// Every route configuration it returns is valid (RouteConfiguration.Validate) against the
// clusters it returns: a router whose routes would not be is replaced by the default route
// and reported in Problems.
func Translate(m *model.Model) *Resources {
	t := &translator{
		services: make(map[string]*model.Service, len(m.Services)),
		res: &Resources{
			Routes:    make(map[string]*apiv1alpha1.RouteConfiguration),
			Clusters:  make(map[string]*clusterv3.Cluster),
			Endpoints: make(map[string]*endpointv3.ClusterLoadAssignment),
			Origins:   make(map[string][]model.ObjectRef),
			Problems:  slices.Clone(m.Problems),
		},
		seenProblems: make(map[model.Problem]bool),
		modelReasons: make(map[reasonKey]bool),
	}
	for _, p := range m.Problems {
		t.seenProblems[p] = true
		t.modelReasons[reasonKey{p.Object, p.Condition, p.Reason}] = true
	}
	// A hostname belongs to one service; Build guarantees it, and a duplicate would give two
	// sets of clusters with the same names, so the first one wins.
	services := make([]*model.Service, 0, len(m.Services))
	for _, s := range m.Services {
		if s == nil || t.services[s.Hostname] != nil {
			continue
		}
		t.services[s.Hostname] = s
		services = append(services, s)
	}

	// Clusters first: routes are validated against them.
	for _, s := range services {
		t.serviceClusters(s)
	}
	t.clusterNames = make(map[string]bool, len(t.res.Clusters))
	for name := range t.res.Clusters {
		t.clusterNames[name] = true
	}

	routers := t.routersByHost(m.Routers)
	for _, s := range services {
		r := routers[s.Hostname]
		for _, p := range s.Ports {
			t.routeConfiguration(s, p, r)
		}
	}
	return t.res
}

type translator struct {
	res          *Resources
	services     map[string]*model.Service
	clusterNames map[string]bool
	seenProblems map[model.Problem]bool
	// modelReasons are the (object, condition, reason) of the model's problems.
	modelReasons map[reasonKey]bool
}

type reasonKey struct {
	obj               model.ObjectRef
	condition, reason string
}

// problemOnce records a problem unless the model already has one of the same reason for
// the same object: Build reports unresolved references in its own words, and a status
// need not say it twice. The translator still reports them for models Build did not make.
func (t *translator) problemOnce(obj model.ObjectRef, condition, reason, format string, args ...any) {
	if t.modelReasons[reasonKey{obj, condition, reason}] {
		return
	}
	t.problem(obj, condition, reason, format, args...)
}

// problem records a problem found by translation, once.
func (t *translator) problem(obj model.ObjectRef, condition, reason, format string, args ...any) {
	p := model.Problem{Object: obj, Condition: condition, Reason: reason, Message: fmt.Sprintf(format, args...)}
	if t.seenProblems[p] {
		return
	}
	t.seenProblems[p] = true
	t.res.Problems = append(t.res.Problems, p)
}

// routersByHost picks the router of each host: the first, in model order, whose first host
// (the only one used, as in Aeraki) it is.
func (t *translator) routersByHost(routers []*model.Router) map[string]*model.Router {
	byHost := make(map[string]*model.Router, len(routers))
	for _, r := range routers {
		if r == nil || len(r.Spec.Hosts) == 0 {
			continue
		}
		host := r.Spec.Hosts[0]
		if first := byHost[host]; first != nil {
			t.problemOnce(r.Source, v1alpha1.ConditionAccepted, ReasonConflicted,
				"host %q is already routed by %s", host, first.Source)
			continue
		}
		byHost[host] = r
		if t.services[host] == nil {
			t.problemOnce(r.Source, v1alpha1.ConditionResolvedRefs, ReasonHostNotFound,
				"host %q is not a service with a Meltemi port", host)
		}
	}
	return byHost
}

// routeConfiguration adds the route configuration of one service port: the router's routes,
// or the default route when there is no router or its routes are invalid.
func (t *translator) routeConfiguration(s *model.Service, p *model.Port, r *model.Router) {
	name := apiv1alpha1.ResourceName(apiv1alpha1.Outbound, p.Number, "", s.Hostname)
	origins := []model.ObjectRef{s.Source}
	var rc *apiv1alpha1.RouteConfiguration
	if r != nil {
		origins = append(origins, r.Source)
		rc = t.routerConfiguration(name, p, r)
	}
	if rc == nil {
		rc = &apiv1alpha1.RouteConfiguration{
			Name: name,
			Routes: []*apiv1alpha1.Route{{
				Name:  DefaultRouteName,
				Route: &apiv1alpha1.RouteAction{ClusterSpecifier: &apiv1alpha1.RouteAction_Cluster{Cluster: name}},
			}},
		}
	}
	t.res.Routes[name] = rc
	t.res.Origins[OriginKey(apiv1alpha1.RouteConfigurationTypeURL, name)] = sortedOrigins(origins)
}

// routerConfiguration translates a router for the service port named name, or returns nil
// (and records why) when the result would be invalid.
func (t *translator) routerConfiguration(name string, p *model.Port, r *model.Router) *apiv1alpha1.RouteConfiguration {
	var errs []string
	invalid := func(path, format string, args ...any) {
		errs = append(errs, path+": "+fmt.Sprintf(format, args...))
	}
	spec := &r.Spec
	rc := &apiv1alpha1.RouteConfiguration{Name: name, Routes: make([]*apiv1alpha1.Route, 0, len(spec.Routes))}
	for i := range spec.Routes {
		mr := &spec.Routes[i]
		rp := "routes[" + strconv.Itoa(i) + "]"
		action := &apiv1alpha1.RouteAction{
			Timeout:          duration(mr.Timeout),
			RequestMutation:  mutation(mr.RequestMutation),
			ResponseMutation: mutation(mr.ResponseMutation),
		}
		route := &apiv1alpha1.Route{
			Name:  mr.Name,
			Match: t.match(mr.Match, rp+".match", invalid),
			Route: action,
		}

		// Destinations that cannot be resolved are left out; a route left with none is then
		// invalid and the whole router falls back to the default route.
		weighted := make([]*apiv1alpha1.ClusterWeight, 0, len(mr.Route))
		for j := range mr.Route {
			d := &mr.Route[j]
			cluster, ok := t.destination(r, name, destPath{route: i, dest: j}, &d.Destination, p)
			if !ok {
				continue
			}
			weight := d.Weight
			if weight < 0 {
				invalid(fmt.Sprintf("%s.route[%d].weight", rp, j), "negative weight %d", weight)
				weight = 0
			}
			weighted = append(weighted, &apiv1alpha1.ClusterWeight{Name: cluster, Weight: uint32(weight)})
		}
		switch {
		case len(mr.Route) == 1 && len(weighted) == 1:
			action.ClusterSpecifier = &apiv1alpha1.RouteAction_Cluster{Cluster: weighted[0].Name}
		case len(weighted) > 0:
			action.ClusterSpecifier = &apiv1alpha1.RouteAction_WeightedClusters{
				WeightedClusters: &apiv1alpha1.WeightedClusters{Clusters: weighted},
			}
		}

		if rt := mr.Retries; rt != nil && rt.Attempts != 0 {
			if rt.Attempts < 0 {
				invalid(rp+".retries.attempts", "negative attempts %d", rt.Attempts)
			}
			policy := &apiv1alpha1.RetryPolicy{
				NumRetries:    uint32(max(rt.Attempts, 0)),
				PerTryTimeout: duration(rt.PerTryTimeout),
			}
			// The CRD's default is connect-failure only (safe for any request); the plugin's
			// is all conditions, so an empty list is spelled out.
			if len(rt.RetryOn) == 0 {
				policy.RetryOn = []string{string(v1alpha1.RetryOnConnectFailure)}
			}
			for _, c := range rt.RetryOn {
				policy.RetryOn = append(policy.RetryOn, string(c))
			}
			action.RetryPolicy = policy
		}

		if mr.Mirror != nil {
			if cluster, ok := t.destination(r, name, destPath{route: i, dest: -1}, mr.Mirror, p); ok {
				mirror := &apiv1alpha1.RequestMirrorPolicy{Cluster: cluster}
				if pct := mr.MirrorPercentage; pct != nil {
					mirror.RuntimeFractionPercent = doubleValue(pct.Value)
				}
				action.RequestMirrorPolicies = []*apiv1alpha1.RequestMirrorPolicy{mirror}
			}
		}
		rc.Routes = append(rc.Routes, route)
	}

	if l := spec.LocalRateLimit; l != nil {
		rc.LocalRateLimit = &apiv1alpha1.LocalRateLimit{
			TokenBucket: tokenBucket(l.TokenBucket, "localRateLimit.tokenBucket", invalid),
		}
		for i := range l.Conditions {
			c := &l.Conditions[i]
			cp := fmt.Sprintf("localRateLimit.conditions[%d]", i)
			rc.LocalRateLimit.Conditions = append(rc.LocalRateLimit.Conditions, &apiv1alpha1.LocalRateLimitCondition{
				Match:       t.match(&c.Match, cp+".match", invalid),
				TokenBucket: tokenBucket(&c.TokenBucket, cp+".tokenBucket", invalid),
			})
		}
	}
	if g := spec.GlobalRateLimit; g != nil {
		grl := &apiv1alpha1.GlobalRateLimit{
			Match:          t.match(g.Match, "globalRateLimit.match", invalid),
			Domain:         g.Domain,
			RequestTimeout: duration(g.RequestTimeout),
			DenyOnFail:     g.DenyOnFail,
			// The cluster of a gRPC service, not a Meltemi one: the model does not know it,
			// so the name is passed on as written ("outbound|port||host", as in Aeraki).
			RateLimitService: g.RateLimitService,
		}
		for _, d := range g.Descriptors {
			grl.Descriptors = append(grl.Descriptors, &apiv1alpha1.RateLimitDescriptor{
				Property: d.Property, DescriptorKey: d.DescriptorKey,
			})
		}
		rc.GlobalRateLimit = grl
	}

	// Validate checks the rest (required fields, durations, regexes, weights, cluster
	// references), with the plugin's field names in its paths.
	if err := rc.Validate(t.clusterNames); err != nil {
		errs = append(errs, strings.Split(err.Error(), "\n")...)
	}
	if len(errs) > 0 {
		t.problem(r.Source, v1alpha1.ConditionAccepted, ReasonInvalid,
			"route configuration %q falls back to the default route: %s", name, strings.Join(errs, "; "))
		return nil
	}
	return rc
}

// destination resolves a destination of the router to the name of a cluster this
// translation emits, or records why it cannot and returns false. port is the port of the
// route configuration rcName, which a destination without a port keeps when its host has
// it. Only that case names rcName in its problem: the others are the same for every port,
// and reported once.
func (t *translator) destination(r *model.Router, rcName string, path destPath, d *v1alpha1.Destination, from *model.Port) (string, bool) {
	port := from.Number
	s := t.services[d.Host]
	if s == nil {
		t.problemOnce(r.Source, v1alpha1.ConditionResolvedRefs, ReasonBackendNotFound,
			"%s: host %q is not a service with a Meltemi port", path, d.Host)
		return "", false
	}
	var dp *model.Port
	switch {
	case d.Port != nil:
		dp = findPort(s, uint32(d.Port.Number))
		if dp == nil {
			t.problemOnce(r.Source, v1alpha1.ConditionResolvedRefs, ReasonPortNotFound,
				"%s: host %q has no Meltemi port %d", path, d.Host, d.Port.Number)
			return "", false
		}
	default:
		dp = findPort(s, port)
		if dp == nil && len(s.Ports) == 1 {
			dp = s.Ports[0]
		}
		if dp == nil {
			t.problem(r.Source, v1alpha1.ConditionResolvedRefs, ReasonPortNotFound,
				"%s: host %q has no Meltemi port %d and several others: set destination.port.number (route configuration %q)",
				path, d.Host, port, rcName)
			return "", false
		}
	}
	// The plugin of the route configuration's port decodes requests with its codec and
	// sends them as they are: the destination must speak the same.
	if dp.Codec != from.Codec {
		t.problem(r.Source, v1alpha1.ConditionResolvedRefs, ReasonPortNotFound,
			"%s: port %d of host %q speaks %s (codec %q), not %s (codec %q) as the route configuration %q",
			path, dp.Number, d.Host, dp.Protocol, dp.Codec, from.Protocol, from.Codec, rcName)
		return "", false
	}
	if d.Subset != "" && !slices.ContainsFunc(s.Subsets, func(ss model.Subset) bool { return ss.Name == d.Subset }) {
		t.problemOnce(r.Source, v1alpha1.ConditionResolvedRefs, ReasonSubsetNotFound,
			"%s: host %q has no subset %q", path, d.Host, d.Subset)
		return "", false
	}
	name := apiv1alpha1.ResourceName(apiv1alpha1.Outbound, dp.Number, d.Subset, s.Hostname)
	if !t.clusterNames[name] {
		// A subset skipped as invalid (reported on its DestinationRule).
		t.problem(r.Source, v1alpha1.ConditionResolvedRefs, ReasonSubsetNotFound,
			"%s: no cluster %q", path, name)
		return "", false
	}
	return name, true
}

// destPath names a destination in problems: routes[i].route[j], or routes[i].mirror when
// dest is -1. It is formatted only when there is a problem to report.
type destPath struct{ route, dest int }

func (p destPath) String() string {
	if p.dest < 0 {
		return fmt.Sprintf("routes[%d].mirror", p.route)
	}
	return fmt.Sprintf("routes[%d].route[%d]", p.route, p.dest)
}

func findPort(s *model.Service, number uint32) *model.Port {
	for _, p := range s.Ports {
		if p.Number == number {
			return p
		}
	}
	return nil
}

// match translates a MetaRouter match. Attributes are a map in the CRD; they are sorted by
// name so that the same router always gives the same bytes.
func (t *translator) match(m *v1alpha1.MetaRouteMatch, path string, invalid func(path, format string, args ...any)) *apiv1alpha1.RouteMatch {
	if m == nil || len(m.Attributes) == 0 {
		return nil
	}
	names := make([]string, 0, len(m.Attributes))
	for name := range m.Attributes {
		names = append(names, name)
	}
	slices.Sort(names)
	out := &apiv1alpha1.RouteMatch{Attributes: make([]*apiv1alpha1.AttributeMatcher, 0, len(names))}
	for _, name := range names {
		sm := m.Attributes[name]
		am := &apiv1alpha1.AttributeMatcher{Name: name, Invert: sm.Invert}
		set := 0
		if sm.Exact != nil {
			am.MatchSpecifier = &apiv1alpha1.AttributeMatcher_Exact{Exact: *sm.Exact}
			set++
		}
		if sm.Prefix != nil {
			am.MatchSpecifier = &apiv1alpha1.AttributeMatcher_Prefix{Prefix: *sm.Prefix}
			set++
		}
		if sm.Regex != nil {
			am.MatchSpecifier = &apiv1alpha1.AttributeMatcher_Regex{Regex: *sm.Regex}
			set++
		}
		if sm.Present != nil {
			am.MatchSpecifier = &apiv1alpha1.AttributeMatcher_Present{Present: *sm.Present}
			set++
		}
		if set != 1 {
			// CEL rejects this in a cluster; the file source has no CEL.
			invalid(fmt.Sprintf("%s.attributes[%q]", path, name), "exactly one of exact, prefix, regex and present must be set, not %d", set)
		}
		out.Attributes = append(out.Attributes, am)
	}
	return out
}

func tokenBucket(b *v1alpha1.TokenBucket, path string, invalid func(path, format string, args ...any)) *apiv1alpha1.TokenBucket {
	if b == nil {
		return nil
	}
	// A negative count would wrap around in the uint32 fields; 0 is reported by Validate.
	if b.MaxTokens < 0 {
		invalid(path+".maxTokens", "must be positive")
	}
	if b.TokensPerFill < 0 {
		invalid(path+".tokensPerFill", "must not be negative")
	}
	return &apiv1alpha1.TokenBucket{
		MaxTokens:     uint32(max(b.MaxTokens, 0)),
		TokensPerFill: uint32(max(b.TokensPerFill, 0)),
		FillInterval:  duration(&b.FillInterval),
	}
}

func mutation(kvs []v1alpha1.KeyValue) *apiv1alpha1.HeaderMutation {
	if len(kvs) == 0 {
		return nil
	}
	m := &apiv1alpha1.HeaderMutation{Set: make([]*apiv1alpha1.HeaderValue, len(kvs))}
	for i, kv := range kvs {
		m.Set[i] = &apiv1alpha1.HeaderValue{Key: kv.Key, Value: kv.Value}
	}
	return m
}

// sortedOrigins sorts refs and drops duplicates.
func sortedOrigins(refs []model.ObjectRef) []model.ObjectRef {
	slices.SortFunc(refs, model.CompareRefs)
	return slices.Compact(refs)
}
