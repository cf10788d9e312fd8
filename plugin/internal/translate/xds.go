package translate

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/plugin/engine"
	"github.com/meltemi-mesh/meltemi/plugin/engine/lb"
)

// ErrMissing marks FromXDS errors about a resource the route configuration needs and the
// caller did not pass: a cluster a route names, or the ClusterLoadAssignment of an EDS
// cluster. The xDS client can tell them (errors.Is) from invalid resources: the resource
// may simply not have arrived yet, which calls for waiting rather than a NACK.
var ErrMissing = errors.New("not received")

// Bounds of the Meltemi cluster metadata values.
const (
	maxConnectionsPerEndpoint = 1024
	maxConnectAttempts        = 64
)

// ClusterNames returns the names of the clusters rc refers to, sorted and without
// duplicates: route destinations, traffic splits and mirrors. They are the clusters FromXDS
// needs, and those the xDS client subscribes to (with their ClusterLoadAssignments).
func ClusterNames(rc *apiv1alpha1.RouteConfiguration) []string {
	var names []string
	for _, r := range rc.GetRoutes() {
		a := r.GetRoute()
		if c := a.GetCluster(); c != "" {
			names = append(names, c)
		}
		for _, w := range a.GetWeightedClusters().GetClusters() {
			if w.GetName() != "" {
				names = append(names, w.GetName())
			}
		}
		for _, m := range a.GetRequestMirrorPolicies() {
			if m.GetCluster() != "" {
				names = append(names, m.GetCluster())
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// FromXDS returns the engine routes and clusters of rc, a route configuration received
// over RDS, with the clusters (CDS) and ClusterLoadAssignments (EDS, keyed by service
// name) it needs; routeTimeout is the timeout of routes that set none. Clusters and
// assignments rc does not need are ignored. The result is in ClusterNames order and is
// deterministic.
//
// rc is checked with RouteConfiguration.Validate. Routes are translated as in EngineConfig,
// request_mirror_policies included (their clusters must be present and valid, as route
// destinations must). The routes' retry_policy and the configuration's local_rate_limit and
// global_rate_limit are validated but not enforced yet.
//
// From each Envoy Cluster it reads: the discovery type, EDS (endpoints from the
// ClusterLoadAssignment named by eds_cluster_config.service_name, or by the cluster's name
// when that is empty) or STATIC (load_assignment inline); lb_policy ROUND_ROBIN,
// LEAST_REQUEST, RANDOM, RING_HASH (ring_hash_lb_config.minimum_ring_size) or MAGLEV
// (maglev_lb_config.table_size); connect_timeout; the DEFAULT-priority circuit breaker
// thresholds max_pending_requests and max_requests; and, in filter_metadata["meltemi"],
// hash_keys, connections_per_endpoint and max_connect_attempts (see apiv1alpha1's
// ClusterMetadata* constants). Outlier detection, the max_connections and max_retries
// thresholds, HIGH-priority thresholds and the other fields are accepted but not enforced
// yet. From each LbEndpoint: its socket address (an IP literal and a port_value: the plugin
// dials addresses, it resolves no names), load_balancing_weight and the labels in
// filter_metadata["meltemi"].labels. Only HEALTHY and UNKNOWN endpoints are kept. Locality
// weights and priorities are not used yet: the endpoints of every locality are balanced as
// one set.
//
// Every error names the resource and the field at fault; the xDS client NACKs with it.
func FromXDS(rc *apiv1alpha1.RouteConfiguration, clusters map[string]*clusterv3.Cluster,
	endpoints map[string]*endpointv3.ClusterLoadAssignment, routeTimeout time.Duration) ([]engine.Route, []engine.Cluster, error) {
	if rc == nil {
		return nil, nil, errors.New("no route configuration")
	}
	where := fmt.Sprintf("route configuration %q", rc.GetName())
	if err := rc.Validate(nil); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	var routes []engine.Route
	for i, r := range rc.GetRoutes() {
		er, err := route(r, routeTimeout)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: routes[%d]: %w", where, i, err)
		}
		routes = append(routes, er)
	}
	var out []engine.Cluster
	for _, name := range ClusterNames(rc) {
		c, ok := clusters[name]
		if !ok || c == nil {
			return nil, nil, fmt.Errorf("%s: cluster %q: %w", where, name, ErrMissing)
		}
		if c.GetName() != name {
			return nil, nil, fmt.Errorf("cluster %q: name %q differs from its resource name", name, c.GetName())
		}
		ec, err := fromCluster(c, endpoints)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster %q: %w", name, err)
		}
		out = append(out, ec)
	}
	return routes, out, nil
}

var xdsPolicies = map[clusterv3.Cluster_LbPolicy]lb.Policy{
	clusterv3.Cluster_ROUND_ROBIN:   lb.RoundRobin,
	clusterv3.Cluster_LEAST_REQUEST: lb.LeastRequest,
	clusterv3.Cluster_RANDOM:        lb.Random,
	clusterv3.Cluster_RING_HASH:     lb.RingHash,
	clusterv3.Cluster_MAGLEV:        lb.Maglev,
}

func fromCluster(c *clusterv3.Cluster, endpoints map[string]*endpointv3.ClusterLoadAssignment) (engine.Cluster, error) {
	out := engine.Cluster{
		Name:                   c.GetName(),
		ConnectionsPerEndpoint: apiv1alpha1.DefaultConnectionsPerEndpoint,
		MaxPendingRequests:     apiv1alpha1.DefaultMaxPendingRequests,
		MaxRequests:            apiv1alpha1.DefaultMaxRequests,
		ConnectTimeout:         apiv1alpha1.DefaultConnectTimeout,
		MaxConnectAttempts:     apiv1alpha1.DefaultMaxConnectAttempts,
	}
	cla, err := assignment(c, endpoints)
	if err != nil {
		return engine.Cluster{}, err
	}
	if err := lbPolicy(c, &out); err != nil {
		return engine.Cluster{}, err
	}
	if err := clusterMetadata(c, &out); err != nil {
		return engine.Cluster{}, err
	}
	if d := c.GetConnectTimeout(); d != nil {
		if err := d.CheckValid(); err != nil {
			return engine.Cluster{}, fmt.Errorf("connect_timeout: %w", err)
		}
		if d.AsDuration() <= 0 {
			return engine.Cluster{}, fmt.Errorf("connect_timeout: %v: must be positive", d.AsDuration())
		}
		out.ConnectTimeout = d.AsDuration()
	}
	if err := circuitBreakers(c.GetCircuitBreakers(), &out); err != nil {
		return engine.Cluster{}, err
	}
	eps, err := lbEndpoints(cla)
	if err != nil {
		return engine.Cluster{}, err
	}
	out.Endpoints = eps
	if out.LB == lb.Maglev && out.MaglevTableSize > 0 && out.MaglevTableSize <= len(eps) {
		return engine.Cluster{}, fmt.Errorf("maglev_lb_config.table_size: %d is not larger than the %d endpoints", out.MaglevTableSize, len(eps))
	}
	return out, nil
}

// assignment returns the endpoints of c: those of EDS, or load_assignment for STATIC.
func assignment(c *clusterv3.Cluster, endpoints map[string]*endpointv3.ClusterLoadAssignment) (*endpointv3.ClusterLoadAssignment, error) {
	if ct, ok := c.GetClusterDiscoveryType().(*clusterv3.Cluster_ClusterType); ok {
		return nil, fmt.Errorf("cluster_type %q: custom cluster types are not supported (use type EDS or STATIC)", ct.ClusterType.GetName())
	}
	switch t := c.GetType(); t {
	case clusterv3.Cluster_EDS:
		svc := c.GetEdsClusterConfig().GetServiceName()
		if svc == "" {
			svc = c.GetName()
		}
		cla, ok := endpoints[svc]
		if !ok || cla == nil {
			return nil, fmt.Errorf("ClusterLoadAssignment %q (eds_cluster_config.service_name): %w", svc, ErrMissing)
		}
		return cla, nil
	case clusterv3.Cluster_STATIC:
		if c.GetLoadAssignment() == nil {
			return nil, errors.New("load_assignment: required with type STATIC")
		}
		return c.GetLoadAssignment(), nil
	default:
		return nil, fmt.Errorf("type %v is not supported (EDS or STATIC: the plugin dials IP addresses, it resolves no names)", t)
	}
}

func lbPolicy(c *clusterv3.Cluster, out *engine.Cluster) error {
	if c.GetLoadBalancingPolicy() != nil {
		return errors.New("load_balancing_policy is not supported (use lb_policy)")
	}
	p, ok := xdsPolicies[c.GetLbPolicy()]
	if !ok {
		return fmt.Errorf("lb_policy %v is not supported (ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH or MAGLEV)", c.GetLbPolicy())
	}
	out.LB = p
	switch cfg := c.GetLbConfig().(type) {
	case nil:
	case *clusterv3.Cluster_RingHashLbConfig_:
		if p != lb.RingHash {
			return fmt.Errorf("ring_hash_lb_config: set with lb_policy %v", c.GetLbPolicy())
		}
		if m := cfg.RingHashLbConfig.GetMinimumRingSize(); m != nil {
			if m.GetValue() == 0 || m.GetValue() > apiv1alpha1.MaxRingSize {
				return fmt.Errorf("ring_hash_lb_config.minimum_ring_size: %d out of range 1..%d", m.GetValue(), apiv1alpha1.MaxRingSize)
			}
			out.RingSize = int(m.GetValue())
		}
	case *clusterv3.Cluster_MaglevLbConfig_:
		if p != lb.Maglev {
			return fmt.Errorf("maglev_lb_config: set with lb_policy %v", c.GetLbPolicy())
		}
		if s := cfg.MaglevLbConfig.GetTableSize(); s != nil {
			if v := s.GetValue(); !apiv1alpha1.ValidMaglevTableSize(v) {
				return fmt.Errorf("maglev_lb_config.table_size: %d: want a prime up to %d", v, apiv1alpha1.MaxMaglevTableSize)
			}
			out.MaglevTableSize = int(s.GetValue())
		}
	default:
		return fmt.Errorf("lb_config %T is not supported", cfg)
	}
	return nil
}

// clusterMetadata reads Meltemi's settings from filter_metadata["meltemi"].
func clusterMetadata(c *clusterv3.Cluster, out *engine.Cluster) error {
	md := c.GetMetadata().GetFilterMetadata()[apiv1alpha1.MetadataNamespace]
	path := "metadata.filter_metadata." + apiv1alpha1.MetadataNamespace + "."
	hashing := out.LB.Hashing()
	if v, ok := md.GetFields()[apiv1alpha1.ClusterMetadataHashKeys]; ok {
		p := path + apiv1alpha1.ClusterMetadataHashKeys
		list, ok := v.GetKind().(*structpb.Value_ListValue)
		if !ok {
			return fmt.Errorf("%s: want a list of strings", p)
		}
		for i, k := range list.ListValue.GetValues() {
			s, ok := k.GetKind().(*structpb.Value_StringValue)
			if !ok || s.StringValue == "" {
				return fmt.Errorf("%s[%d]: want a non-empty string (an attribute name)", p, i)
			}
			out.HashAttributes = append(out.HashAttributes, s.StringValue)
		}
		if !hashing && len(out.HashAttributes) > 0 {
			return fmt.Errorf("%s: only used by RING_HASH and MAGLEV, not %v", p, c.GetLbPolicy())
		}
	}
	if hashing && len(out.HashAttributes) == 0 {
		return fmt.Errorf("%s%s: required with %v", path, apiv1alpha1.ClusterMetadataHashKeys, c.GetLbPolicy())
	}
	var err error
	if out.ConnectionsPerEndpoint, err = metadataInt(md, path, apiv1alpha1.ClusterMetadataConnectionsPerEndpoint,
		maxConnectionsPerEndpoint, out.ConnectionsPerEndpoint); err != nil {
		return err
	}
	if out.MaxConnectAttempts, err = metadataInt(md, path, apiv1alpha1.ClusterMetadataMaxConnectAttempts,
		maxConnectAttempts, out.MaxConnectAttempts); err != nil {
		return err
	}
	return nil
}

// metadataInt reads an optional integer in 1..limit from md[key].
func metadataInt(md *structpb.Struct, path, key string, limit, def int) (int, error) {
	v, ok := md.GetFields()[key]
	if !ok {
		return def, nil
	}
	n, ok := v.GetKind().(*structpb.Value_NumberValue)
	if !ok || n.NumberValue != math.Trunc(n.NumberValue) || n.NumberValue < 1 || n.NumberValue > float64(limit) {
		return 0, fmt.Errorf("%s%s: %v: want an integer from 1 to %d", path, key, v.AsInterface(), limit)
	}
	return int(n.NumberValue), nil
}

func circuitBreakers(cb *clusterv3.CircuitBreakers, out *engine.Cluster) error {
	seen := false
	for i, th := range cb.GetThresholds() {
		if th.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue // the plugin has one priority
		}
		p := fmt.Sprintf("circuit_breakers.thresholds[%d]", i)
		if seen {
			return fmt.Errorf("%s: a second DEFAULT-priority threshold", p)
		}
		seen = true
		if v := th.GetMaxPendingRequests(); v != nil {
			if v.GetValue() == 0 {
				return fmt.Errorf("%s.max_pending_requests: 0 would refuse every request", p)
			}
			out.MaxPendingRequests = int(v.GetValue())
		}
		if v := th.GetMaxRequests(); v != nil {
			if v.GetValue() == 0 {
				return fmt.Errorf("%s.max_requests: 0 would refuse every request", p)
			}
			out.MaxRequests = int(v.GetValue())
		}
	}
	return nil
}

// lbEndpoints returns the HEALTHY and UNKNOWN endpoints of cla.
func lbEndpoints(cla *endpointv3.ClusterLoadAssignment) ([]engine.Endpoint, error) {
	var out []engine.Endpoint
	where := make(map[netip.AddrPort]string)
	for i, lle := range cla.GetEndpoints() {
		for j, lbe := range lle.GetLbEndpoints() {
			p := fmt.Sprintf("ClusterLoadAssignment %q: endpoints[%d].lb_endpoints[%d]", cla.GetClusterName(), i, j)
			switch lbe.GetHealthStatus() {
			case corev3.HealthStatus_HEALTHY, corev3.HealthStatus_UNKNOWN:
			default:
				continue
			}
			ap, err := socketAddress(lbe)
			if err != nil {
				return nil, fmt.Errorf("%s.%w", p, err) // err starts with the field's path
			}
			if first, dup := where[ap]; dup {
				return nil, fmt.Errorf("%s: address %s already listed at %s", p, ap, first)
			}
			where[ap] = p
			ep := engine.Endpoint{Address: ap.String(), Weight: apiv1alpha1.DefaultEndpointWeight}
			if w := lbe.GetLoadBalancingWeight(); w != nil {
				if w.GetValue() == 0 {
					return nil, fmt.Errorf("%s.load_balancing_weight: must be at least 1", p)
				}
				ep.Weight = w.GetValue()
			}
			if ep.Labels, err = endpointLabels(lbe); err != nil {
				return nil, fmt.Errorf("%s.%w", p, err)
			}
			out = append(out, ep)
		}
	}
	return out, nil
}

func socketAddress(lbe *endpointv3.LbEndpoint) (netip.AddrPort, error) {
	ep := lbe.GetEndpoint()
	if ep == nil {
		return netip.AddrPort{}, errors.New("endpoint: required (named endpoints are not supported)")
	}
	sa := ep.GetAddress().GetSocketAddress()
	if sa == nil {
		return netip.AddrPort{}, errors.New("endpoint.address.socket_address: required (pipes and internal addresses are not supported)")
	}
	const p = "endpoint.address.socket_address"
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return netip.AddrPort{}, fmt.Errorf("%s.protocol: %v: want TCP", p, sa.GetProtocol())
	}
	if sa.GetResolverName() != "" {
		return netip.AddrPort{}, fmt.Errorf("%s.resolver_name: %q: custom resolvers are not supported", p, sa.GetResolverName())
	}
	addr, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%s.address: %q: want an IP address (the plugin resolves no host names)", p, sa.GetAddress())
	}
	if addr.IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("%s.address: %q: unspecified address", p, sa.GetAddress())
	}
	port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%s.port_value: required (named ports are not supported)", p)
	}
	if port.PortValue == 0 || port.PortValue > 65535 {
		return netip.AddrPort{}, fmt.Errorf("%s.port_value: %d: want 1-65535", p, port.PortValue)
	}
	return netip.AddrPortFrom(addr, uint16(port.PortValue)), nil
}

// endpointLabels reads filter_metadata["meltemi"].labels, a struct of strings.
func endpointLabels(lbe *endpointv3.LbEndpoint) (map[string]string, error) {
	v, ok := lbe.GetMetadata().GetFilterMetadata()[apiv1alpha1.MetadataNamespace].GetFields()[apiv1alpha1.EndpointMetadataLabels]
	if !ok {
		return nil, nil
	}
	p := "metadata.filter_metadata." + apiv1alpha1.MetadataNamespace + "." + apiv1alpha1.EndpointMetadataLabels
	s, ok := v.GetKind().(*structpb.Value_StructValue)
	if !ok {
		return nil, fmt.Errorf("%s: want a struct of strings", p)
	}
	out := make(map[string]string, len(s.StructValue.GetFields()))
	for k, lv := range s.StructValue.GetFields() {
		str, ok := lv.GetKind().(*structpb.Value_StringValue)
		if k == "" || !ok {
			return nil, fmt.Errorf("%s[%q]: want a non-empty key with a string value", p, k)
		}
		out[k] = str.StringValue
	}
	return out, nil
}
