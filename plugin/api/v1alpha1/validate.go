package apiv1alpha1

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strconv"

	"google.golang.org/protobuf/types/known/durationpb"
)

// FieldError is one problem with one field of a configuration. Path names the field the way
// the YAML does, e.g. "route_config.routes[2].match.attributes[0].regex".
type FieldError struct {
	Path string
	Err  error
}

func (e *FieldError) Error() string { return e.Path + ": " + e.Err.Error() }

func (e *FieldError) Unwrap() error { return e.Err }

// CompileRegex compiles the regex of an AttributeMatcher so that it must match the whole
// value, as Envoy's safe_regex does. Validate and the engine both use it, so a regex that
// passes validation behaves the way the engine matches it.
func CompileRegex(expr string) (*regexp.Regexp, error) {
	// Compiled alone first so that an error quotes the expression as the user wrote it.
	if _, err := regexp.Compile(expr); err != nil {
		return nil, err
	}
	return regexp.Compile("^(?:" + expr + ")$")
}

// Validate checks what protojson cannot: required fields, references between routes and
// clusters, addresses, regexes, weights and durations. It returns every problem found, each
// a *FieldError, joined with errors.Join. Whether a codec named protocol exists is checked
// by the engine, which knows the codecs; this package does not depend on them.
func (c *FilterConfig) Validate() error {
	if c == nil {
		return errors.New("no FilterConfig")
	}
	var v validator
	if c.GetProtocol() == "" {
		v.add("protocol", "required (a codec name such as dubbo or thrift)")
	}
	for k := range c.GetCodecParams() {
		if k == "" {
			v.add("codec_params", "empty key")
		}
	}
	v.duration("idle_timeout", c.GetIdleTimeout(), false)
	v.duration("route_timeout", c.GetRouteTimeout(), false)

	clusters := make(map[string]bool, len(c.GetClusters()))
	for i, cl := range c.GetClusters() {
		p := fmt.Sprintf("clusters[%d]", i)
		v.cluster(p, cl)
		if name := cl.GetName(); name != "" {
			if clusters[name] {
				v.addf(p+".name", "duplicate cluster %q", name)
			}
			clusters[name] = true
		}
	}

	switch rs := c.GetRouteSpecifier().(type) {
	case *FilterConfig_RouteConfig:
		v.routeConfig("route_config", rs.RouteConfig, clusters)
	case *FilterConfig_Rds:
		v.rds("rds", rs.Rds)
	default:
		v.add("route_specifier", "one of route_config or rds is required")
	}
	return errors.Join(v.errs...)
}

// Validate checks a route configuration on its own, as the xDS client receives it over
// RDS. clusters holds the names of the clusters its routes may use; when it is nil, cluster
// names are only checked to be present.
func (rc *RouteConfiguration) Validate(clusters map[string]bool) error {
	var v validator
	v.routeConfig("", rc, clusters)
	return errors.Join(v.errs...)
}

type validator struct {
	errs []error
}

func (v *validator) add(path, msg string) {
	v.errs = append(v.errs, &FieldError{Path: path, Err: errors.New(msg)})
}

func (v *validator) addf(path, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Path: path, Err: fmt.Errorf(format, args...)})
}

func (v *validator) addErr(path string, err error) {
	v.errs = append(v.errs, &FieldError{Path: path, Err: err})
}

// duration checks an optional duration: valid, not negative, and positive if it must be.
func (v *validator) duration(path string, d *durationpb.Duration, positive bool) {
	if d == nil {
		return
	}
	if err := d.CheckValid(); err != nil {
		v.addErr(path, err)
		return
	}
	switch dur := d.AsDuration(); {
	case dur < 0:
		v.addf(path, "negative duration %v", dur)
	case dur == 0 && positive:
		v.add(path, "must be positive")
	}
}

func (v *validator) rds(p string, r *Rds) {
	if r.GetRouteConfigName() == "" {
		v.add(p+".route_config_name", "required")
	}
	if src := r.GetConfigSource(); src != "" {
		if err := checkHostPort(src); err != nil {
			v.addErr(p+".config_source", err)
		}
	}
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("want host:port: %w", err)
	}
	if host == "" {
		return fmt.Errorf("%q: empty host", s)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q: bad port %q", s, port)
	}
	return nil
}

func (v *validator) cluster(p string, c *Cluster) {
	if c.GetName() == "" {
		v.add(p+".name", "required")
	}
	addrs := make(map[netip.AddrPort]bool, len(c.GetEndpoints()))
	for i, e := range c.GetEndpoints() {
		ep := fmt.Sprintf("%s.endpoints[%d].address", p, i)
		ap, err := netip.ParseAddrPort(e.GetAddress())
		switch {
		case err != nil:
			// Envoy's golang filter connects to literal addresses only (no DNS).
			v.addf(ep, "want ip:port: %v", err)
		case ap.Port() == 0:
			v.addf(ep, "%q: port 0", e.GetAddress())
		case !ap.Addr().IsValid() || ap.Addr().IsUnspecified():
			v.addf(ep, "%q: unspecified address", e.GetAddress())
		case addrs[ap]:
			v.addf(ep, "duplicate endpoint %q", e.GetAddress())
		default:
			addrs[ap] = true
		}
		for k := range e.GetLabels() {
			if k == "" {
				v.add(fmt.Sprintf("%s.endpoints[%d].labels", p, i), "empty key")
			}
		}
	}

	policy := c.GetLbPolicy()
	if _, ok := Cluster_LbPolicy_name[int32(policy)]; !ok {
		v.addf(p+".lb_policy", "unknown policy %d", int32(policy))
	}
	hashing := policy == Cluster_RING_HASH || policy == Cluster_MAGLEV
	switch {
	case hashing && len(c.GetHashKeys()) == 0:
		v.addf(p+".hash_keys", "required with %s", policy)
	case !hashing && len(c.GetHashKeys()) > 0:
		v.addf(p+".hash_keys", "only used by RING_HASH and MAGLEV, not %s", policy)
	}
	for i, k := range c.GetHashKeys() {
		if k == "" {
			v.add(fmt.Sprintf("%s.hash_keys[%d]", p, i), "empty attribute name")
		}
	}
	v.duration(p+".connect_timeout", c.GetConnectTimeout(), true)
}

func (v *validator) routeConfig(p string, rc *RouteConfiguration, clusters map[string]bool) {
	prefix := p
	if prefix != "" {
		prefix += "."
	}
	names := make(map[string]bool, len(rc.GetRoutes()))
	for i, r := range rc.GetRoutes() {
		rp := fmt.Sprintf("%sroutes[%d]", prefix, i)
		if name := r.GetName(); name != "" {
			if names[name] {
				v.addf(rp+".name", "duplicate route %q", name)
			}
			names[name] = true
		}
		v.match(rp+".match", r.GetMatch())
		if r.GetRoute() == nil {
			v.add(rp+".route", "required")
			continue
		}
		v.action(rp+".route", r.GetRoute(), clusters)
	}
	if l := rc.GetLocalRateLimit(); l != nil {
		v.localRateLimit(prefix+"local_rate_limit", l)
	}
	if g := rc.GetGlobalRateLimit(); g != nil {
		v.globalRateLimit(prefix+"global_rate_limit", g)
	}
}

func (v *validator) localRateLimit(p string, l *LocalRateLimit) {
	if b := l.GetTokenBucket(); b != nil {
		v.tokenBucket(p+".token_bucket", b)
	}
	for i, c := range l.GetConditions() {
		cp := fmt.Sprintf("%s.conditions[%d]", p, i)
		if c.GetMatch() == nil {
			v.add(cp+".match", "required")
		}
		v.match(cp+".match", c.GetMatch())
		if c.GetTokenBucket() == nil {
			v.add(cp+".token_bucket", "required")
			continue
		}
		v.tokenBucket(cp+".token_bucket", c.GetTokenBucket())
	}
}

func (v *validator) tokenBucket(p string, b *TokenBucket) {
	if b.GetMaxTokens() == 0 {
		v.add(p+".max_tokens", "must be positive")
	}
	if b.GetFillInterval() == nil {
		v.add(p+".fill_interval", "required")
		return
	}
	v.duration(p+".fill_interval", b.GetFillInterval(), true)
}

func (v *validator) globalRateLimit(p string, g *GlobalRateLimit) {
	v.match(p+".match", g.GetMatch())
	if g.GetDomain() == "" {
		v.add(p+".domain", "required")
	}
	v.duration(p+".request_timeout", g.GetRequestTimeout(), true)
	if g.GetRateLimitService() == "" {
		v.add(p+".rate_limit_service", "required (the cluster of the rate limit service)")
	}
	if len(g.GetDescriptors()) == 0 {
		v.add(p+".descriptors", "at least one descriptor is required")
	}
	keys := make(map[string]bool, len(g.GetDescriptors()))
	for i, d := range g.GetDescriptors() {
		dp := fmt.Sprintf("%s.descriptors[%d]", p, i)
		if d.GetProperty() == "" {
			v.add(dp+".property", "required")
		}
		switch k := d.GetDescriptorKey(); {
		case k == "":
			v.add(dp+".descriptor_key", "required")
		case keys[k]:
			v.addf(dp+".descriptor_key", "descriptor key %q used twice", k)
		default:
			keys[k] = true
		}
	}
}

// match checks the matchers of an optional RouteMatch.
func (v *validator) match(p string, m *RouteMatch) {
	for j, am := range m.GetAttributes() {
		v.matcher(fmt.Sprintf("%s.attributes[%d]", p, j), am)
	}
}

// RetryOn values of RetryPolicy.retry_on.
const (
	RetryOnConnectFailure = "connect-failure"
	RetryOnReset          = "reset"
	RetryOnTimeout        = "timeout"
)

func (v *validator) retryPolicy(p string, r *RetryPolicy) {
	if r.GetNumRetries() == 0 {
		v.add(p+".num_retries", "must be positive")
	}
	seen := make(map[string]bool, len(r.GetRetryOn()))
	for i, on := range r.GetRetryOn() {
		rp := fmt.Sprintf("%s.retry_on[%d]", p, i)
		switch {
		case on != RetryOnConnectFailure && on != RetryOnReset && on != RetryOnTimeout:
			v.addf(rp, "unknown condition %q (want %s, %s or %s)", on, RetryOnConnectFailure, RetryOnReset, RetryOnTimeout)
		case seen[on]:
			v.addf(rp, "%q listed twice", on)
		}
		seen[on] = true
	}
	v.duration(p+".per_try_timeout", r.GetPerTryTimeout(), true)
}

func (v *validator) mirror(p string, m *RequestMirrorPolicy, clusters map[string]bool) {
	v.clusterRef(p+".cluster", m.GetCluster(), clusters)
	if f := m.GetRuntimeFractionPercent(); f != nil {
		// NaN fails both comparisons.
		if x := f.GetValue(); !(x >= 0 && x <= 100) {
			v.addf(p+".runtime_fraction_percent", "%v: want 0 to 100", x)
		}
	}
}

func (v *validator) matcher(p string, m *AttributeMatcher) {
	if m.GetName() == "" {
		v.add(p+".name", "required")
	}
	switch ms := m.GetMatchSpecifier().(type) {
	case *AttributeMatcher_Exact, *AttributeMatcher_Present:
	case *AttributeMatcher_Prefix:
		if ms.Prefix == "" {
			v.add(p+".prefix", "empty (use present: true to match any value)")
		}
	case *AttributeMatcher_Regex:
		if _, err := CompileRegex(ms.Regex); err != nil {
			v.addErr(p+".regex", err)
		}
	default:
		v.add(p, "one of exact, prefix, regex or present is required")
	}
}

func (v *validator) action(p string, a *RouteAction, clusters map[string]bool) {
	switch cs := a.GetClusterSpecifier().(type) {
	case *RouteAction_Cluster:
		v.clusterRef(p+".cluster", cs.Cluster, clusters)
	case *RouteAction_WeightedClusters:
		wp := p + ".weighted_clusters"
		wcs := cs.WeightedClusters.GetClusters()
		if len(wcs) == 0 {
			v.add(wp+".clusters", "at least one cluster is required")
		}
		var total uint64
		seen := make(map[string]bool, len(wcs))
		for i, w := range wcs {
			cp := fmt.Sprintf("%s.clusters[%d]", wp, i)
			v.clusterRef(cp+".name", w.GetName(), clusters)
			if seen[w.GetName()] && w.GetName() != "" {
				v.addf(cp+".name", "cluster %q listed twice", w.GetName())
			}
			seen[w.GetName()] = true
			total += uint64(w.GetWeight())
		}
		switch {
		case len(wcs) > 0 && total == 0:
			v.add(wp+".clusters", "weights sum to 0")
		case total > 1<<32-1:
			v.addf(wp+".clusters", "weights sum to %d, more than 2^32-1", total)
		}
	default:
		v.add(p, "one of cluster or weighted_clusters is required")
	}
	v.duration(p+".timeout", a.GetTimeout(), false)
	v.mutation(p+".request_mutation", a.GetRequestMutation())
	v.mutation(p+".response_mutation", a.GetResponseMutation())
	for i, m := range a.GetOnewayMethods() {
		if m == "" {
			v.add(fmt.Sprintf("%s.oneway_methods[%d]", p, i), "empty method name")
		}
	}
	if r := a.GetRetryPolicy(); r != nil {
		v.retryPolicy(p+".retry_policy", r)
	}
	for i, m := range a.GetRequestMirrorPolicies() {
		v.mirror(fmt.Sprintf("%s.request_mirror_policies[%d]", p, i), m, clusters)
	}
}

// clusterRef checks a route's reference to a cluster. clusters is nil when the clusters
// are not known (a route configuration checked on its own).
func (v *validator) clusterRef(p, name string, clusters map[string]bool) {
	switch {
	case name == "":
		v.add(p, "required")
	case clusters != nil && !clusters[name]:
		v.addf(p, "unknown cluster %q (not in clusters)", name)
	}
}

func (v *validator) mutation(p string, m *HeaderMutation) {
	keys := make(map[string]bool, len(m.GetSet()))
	for i, h := range m.GetSet() {
		hp := fmt.Sprintf("%s.set[%d].key", p, i)
		switch {
		case h.GetKey() == "":
			v.add(hp, "required")
		case keys[h.GetKey()]:
			v.addf(hp, "header %q set twice", h.GetKey())
		}
		keys[h.GetKey()] = true
	}
	for i, k := range m.GetRemove() {
		if k == "" {
			v.add(fmt.Sprintf("%s.remove[%d]", p, i), "empty header name")
		}
	}
}
