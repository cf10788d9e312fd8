package translate

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// endpoint is a model endpoint parsed once per port and shared by the port's clusters.
type endpoint struct {
	addr     netip.AddrPort
	locality string
	labels   map[string]string
	// lb is built once; the clusters of the port (all endpoints, subsets) share it.
	lb *endpointv3.LbEndpoint
}

// serviceClusters adds a cluster and its endpoints for each port of the service: one with
// every endpoint and one per subset.
func (t *translator) serviceClusters(s *model.Service) {
	drRef := s.Source
	if s.DestinationRule != nil {
		drRef = *s.DestinationRule
	}
	origins := []model.ObjectRef{s.Source}
	if s.DestinationRule != nil {
		origins = append(origins, *s.DestinationRule)
	}
	origins = sortedOrigins(origins)

	// Subsets that cannot have a cluster of their own are reported once, not per port.
	subsets := make([]*model.Subset, 0, len(s.Subsets))
	seen := make(map[string]bool, len(s.Subsets))
	for i := range s.Subsets {
		ss := &s.Subsets[i]
		switch {
		case ss.Name == "":
			t.problem(drRef, v1alpha1.ConditionAccepted, ReasonInvalid,
				"host %q: subset %d has no name", s.Hostname, i)
		case seen[ss.Name]:
			t.problem(drRef, v1alpha1.ConditionAccepted, ReasonInvalid,
				"host %q: subset %q is defined twice", s.Hostname, ss.Name)
		default:
			seen[ss.Name] = true
			subsets = append(subsets, ss)
		}
	}
	for _, p := range s.Ports {
		eps := t.portEndpoints(s, p)
		// model.Service.Policy has merged the DestinationRule's levels (service, port,
		// subset, subset port) the way Istio does; a problem that repeats per port is
		// reported once.
		t.addCluster(s.Hostname, p.Number, "", t.checkPolicy(s.Policy(p.Number, ""), drRef, s.Hostname, ""),
			eps, origins, drRef)
		for _, ss := range subsets {
			var selected []*endpoint
			for _, e := range eps {
				if hasLabels(e.labels, ss.Labels) {
					selected = append(selected, e)
				}
			}
			tp := t.checkPolicy(s.Policy(p.Number, ss.Name), drRef, s.Hostname, ss.Name)
			t.addCluster(s.Hostname, p.Number, ss.Name, tp, selected, origins, drRef)
		}
	}
}

// portEndpoints parses the port's endpoints, drops (and reports) those that are not literal
// ip:port or repeat an address, and sorts them by locality then address.
func (t *translator) portEndpoints(s *model.Service, p *model.Port) []*endpoint {
	eps := make([]*endpoint, 0, len(p.Endpoints))
	seen := make(map[netip.AddrPort]bool, len(p.Endpoints))
	// The messages of all the port's endpoints are allocated together: at scale, endpoints
	// are most of the resources and most of the translation time is spent allocating them.
	alloc := newEndpointAlloc(len(p.Endpoints))
	for i := range p.Endpoints {
		e := &p.Endpoints[i]
		ap, err := netip.ParseAddrPort(e.Address)
		switch {
		case err != nil:
			t.problemOnce(s.Source, v1alpha1.ConditionAccepted, ReasonUnsupportedAddress,
				"host %q port %d: endpoint %q: want ip:port: %v", s.Hostname, p.Number, e.Address, err)
			continue
		case ap.Port() == 0 || ap.Addr().IsUnspecified():
			t.problemOnce(s.Source, v1alpha1.ConditionAccepted, ReasonUnsupportedAddress,
				"host %q port %d: endpoint %q: unspecified address or port 0", s.Hostname, p.Number, e.Address)
			continue
		case seen[ap]:
			continue // the same server listed twice (two slices, two workload entries)
		}
		seen[ap] = true
		eps = append(eps, &endpoint{addr: ap, locality: e.Locality, labels: e.Labels, lb: alloc.lbEndpoint(ap, e)})
	}
	slices.SortFunc(eps, func(a, b *endpoint) int {
		return cmp.Or(cmp.Compare(a.locality, b.locality), a.addr.Compare(b.addr))
	})
	return eps
}

// endpointAlloc hands out the messages of an LbEndpoint from slices allocated once.
type endpointAlloc struct {
	lbs      []endpointv3.LbEndpoint
	hostIDs  []endpointv3.LbEndpoint_Endpoint
	eps      []endpointv3.Endpoint
	addrs    []corev3.Address
	sockets  []corev3.Address_SocketAddress
	sockAddr []corev3.SocketAddress
	ports    []corev3.SocketAddress_PortValue
}

func newEndpointAlloc(n int) *endpointAlloc {
	return &endpointAlloc{
		lbs:      make([]endpointv3.LbEndpoint, n),
		hostIDs:  make([]endpointv3.LbEndpoint_Endpoint, n),
		eps:      make([]endpointv3.Endpoint, n),
		addrs:    make([]corev3.Address, n),
		sockets:  make([]corev3.Address_SocketAddress, n),
		sockAddr: make([]corev3.SocketAddress, n),
		ports:    make([]corev3.SocketAddress_PortValue, n),
	}
}

func (a *endpointAlloc) lbEndpoint(ap netip.AddrPort, e *model.Endpoint) *endpointv3.LbEndpoint {
	lb, hostID, ep, addr, socket, sockAddr, port := &a.lbs[0], &a.hostIDs[0], &a.eps[0], &a.addrs[0], &a.sockets[0], &a.sockAddr[0], &a.ports[0]
	a.lbs, a.hostIDs, a.eps, a.addrs, a.sockets, a.sockAddr, a.ports = a.lbs[1:], a.hostIDs[1:], a.eps[1:], a.addrs[1:], a.sockets[1:], a.sockAddr[1:], a.ports[1:]

	port.PortValue = uint32(ap.Port())
	sockAddr.Address = ap.Addr().String()
	sockAddr.PortSpecifier = port
	socket.SocketAddress = sockAddr
	addr.Address = socket
	ep.Address = addr
	hostID.Endpoint = ep
	lb.HostIdentifier = hostID
	if e.Weight > 0 {
		lb.LoadBalancingWeight = wrapperspb.UInt32(e.Weight)
	}
	if len(e.Labels) > 0 {
		labels := &structpb.Struct{Fields: make(map[string]*structpb.Value, len(e.Labels))}
		for k, v := range e.Labels {
			labels.Fields[k] = structpb.NewStringValue(v)
		}
		lb.Metadata = meltemiMetadata(apiv1alpha1.EndpointMetadataLabels, structpb.NewStructValue(labels))
	}
	return lb
}

func meltemiMetadata(key string, v *structpb.Value) *corev3.Metadata {
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		apiv1alpha1.MetadataNamespace: {Fields: map[string]*structpb.Value{key: v}},
	}}
}

// hasLabels reports whether labels has every one of selector's.
func hasLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// addCluster adds the cluster named after port, subset and host, and its endpoints.
// eps are sorted by locality then address.
func (t *translator) addCluster(host string, port uint32, subset string, tp *model.TrafficPolicy, eps []*endpoint, origins []model.ObjectRef, drRef model.ObjectRef) {
	name := apiv1alpha1.ResourceName(apiv1alpha1.Outbound, port, subset, host)
	if tp != nil && tp.LB == model.LBMaglev && tp.MaglevTableSize != 0 && tp.MaglevTableSize <= uint64(len(eps)) {
		// The table must be larger than the endpoints; it is for this cluster only.
		t.problem(drRef, v1alpha1.ConditionAccepted, ReasonInvalid,
			"cluster %q: Maglev table size %d is not larger than its %d endpoints: using the default", name, tp.MaglevTableSize, len(eps))
		small := *tp
		small.MaglevTableSize = 0
		tp = &small
	}
	t.res.Clusters[name] = cluster(name, tp)
	t.res.Origins[OriginKey(apiv1alpha1.ClusterTypeURL, name)] = origins

	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	for i := 0; i < len(eps); {
		j := i + 1
		for j < len(eps) && eps[j].locality == eps[i].locality {
			j++
		}
		group := &endpointv3.LocalityLbEndpoints{
			Locality:    locality(eps[i].locality),
			LbEndpoints: make([]*endpointv3.LbEndpoint, j-i),
		}
		for k := i; k < j; k++ {
			group.LbEndpoints[k-i] = eps[k].lb
		}
		cla.Endpoints = append(cla.Endpoints, group)
		i = j
	}
	t.res.Endpoints[name] = cla
	t.res.Origins[OriginKey(apiv1alpha1.EndpointTypeURL, name)] = origins
}

// locality parses "region/zone/subzone"; nil for "".
func locality(s string) *corev3.Locality {
	if s == "" {
		return nil
	}
	parts := strings.SplitN(s, "/", 3)
	parts = append(parts, "", "")
	return &corev3.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
}

// checkPolicy returns the policy, with what the plugin would reject dropped and reported on
// the DestinationRule: an unknown policy, a hashing policy without hash keys, a negative
// connect timeout. Those fields fall back to the plugin's defaults.
func (t *translator) checkPolicy(tp *model.TrafficPolicy, dr model.ObjectRef, host, subset string) *model.TrafficPolicy {
	if tp == nil {
		return nil
	}
	where := "host " + host
	if subset != "" {
		where += " subset " + subset
	}
	out := *tp
	switch tp.LB {
	case "", model.LBRoundRobin, model.LBLeastRequest, model.LBRandom:
	case model.LBRingHash, model.LBMaglev:
		if len(tp.HashKeys) == 0 || slices.Contains(tp.HashKeys, "") {
			t.problem(dr, v1alpha1.ConditionAccepted, ReasonInvalid,
				"%s: %s needs hash keys (consistentHash.httpHeaderName): using the default load balancer", where, tp.LB)
			out.LB = ""
		}
	default:
		t.problem(dr, v1alpha1.ConditionAccepted, ReasonInvalid,
			"%s: unknown load balancer %q: using the default", where, tp.LB)
		out.LB = ""
	}
	// The plugin's limits (plugin/engine/lb, plugin/internal/translate): beyond them it
	// rejects the cluster, and with it every update until the cluster changes.
	if tp.RingMinSize > apiv1alpha1.MaxRingSize {
		t.problem(dr, v1alpha1.ConditionAccepted, ReasonInvalid,
			"%s: minimum ring size %d is more than %d: using the default", where, tp.RingMinSize, apiv1alpha1.MaxRingSize)
		out.RingMinSize = 0
	}
	if v := tp.MaglevTableSize; v != 0 && !apiv1alpha1.ValidMaglevTableSize(v) {
		t.problem(dr, v1alpha1.ConditionAccepted, ReasonInvalid,
			"%s: Maglev table size %d is not a prime up to %d: using the default", where, v, apiv1alpha1.MaxMaglevTableSize)
		out.MaglevTableSize = 0
	}
	if tp.ConnectTimeout < 0 {
		t.problem(dr, v1alpha1.ConditionAccepted, ReasonInvalid,
			"%s: negative connect timeout %v: using the default", where, tp.ConnectTimeout)
		out.ConnectTimeout = 0
	}
	return &out
}

// cluster builds an EDS cluster; only what the policy sets is set, the rest is the
// plugin's defaults.
func cluster(name string, tp *model.TrafficPolicy) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			ServiceName: name,
			EdsConfig: &corev3.ConfigSource{
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
				ResourceApiVersion:    corev3.ApiVersion_V3,
			},
		},
	}
	if tp == nil {
		return c
	}
	switch tp.LB {
	case model.LBLeastRequest:
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	case model.LBRandom:
		c.LbPolicy = clusterv3.Cluster_RANDOM
	case model.LBRingHash:
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		if tp.RingMinSize > 0 {
			c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
				MinimumRingSize: wrapperspb.UInt64(tp.RingMinSize),
			}}
		}
	case model.LBMaglev:
		c.LbPolicy = clusterv3.Cluster_MAGLEV
		if tp.MaglevTableSize > 0 {
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{
				TableSize: wrapperspb.UInt64(tp.MaglevTableSize),
			}}
		}
	}
	if c.LbPolicy == clusterv3.Cluster_RING_HASH || c.LbPolicy == clusterv3.Cluster_MAGLEV {
		keys := make([]*structpb.Value, len(tp.HashKeys))
		for i, k := range tp.HashKeys {
			keys[i] = structpb.NewStringValue(k)
		}
		c.Metadata = meltemiMetadata(apiv1alpha1.ClusterMetadataHashKeys, structpb.NewListValue(&structpb.ListValue{Values: keys}))
	}
	if tp.ConnectTimeout > 0 {
		c.ConnectTimeout = durationpb.New(tp.ConnectTimeout)
	}
	if tp.MaxConnections > 0 || tp.MaxPendingRequests > 0 || tp.MaxRequests > 0 || tp.MaxRetries > 0 {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     uint32Value(tp.MaxConnections),
			MaxPendingRequests: uint32Value(tp.MaxPendingRequests),
			MaxRequests:        uint32Value(tp.MaxRequests),
			MaxRetries:         uint32Value(tp.MaxRetries),
		}}}
	}
	if od := tp.OutlierDetection; od != nil {
		c.OutlierDetection = outlierDetection(od)
		if od.MinHealthPercent > 0 {
			// As Istio: below this share of healthy endpoints, ejection stops (Envoy's
			// panic threshold).
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{
				HealthyPanicThreshold: &typev3.Percent{Value: float64(od.MinHealthPercent)},
			}
		}
	}
	return c
}

// outlierDetection maps DestinationRule outlier detection as Istio does: each consecutive
// error count that is set is enforced at 100%.
func outlierDetection(od *model.OutlierDetection) *clusterv3.OutlierDetection {
	out := &clusterv3.OutlierDetection{
		Interval:                       positiveDuration(od.Interval),
		BaseEjectionTime:               positiveDuration(od.BaseEjectionTime),
		MaxEjectionPercent:             uint32Value(od.MaxEjectionPercent),
		SplitExternalLocalOriginErrors: od.SplitExternalLocal,
	}
	if od.ConsecutiveErrors > 0 {
		out.Consecutive_5Xx = wrapperspb.UInt32(od.ConsecutiveErrors)
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(100)
	}
	if od.ConsecutiveGateway > 0 {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(od.ConsecutiveGateway)
		out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
	}
	if od.ConsecutiveLocalErr > 0 {
		out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(od.ConsecutiveLocalErr)
		out.EnforcingConsecutiveLocalOriginFailure = wrapperspb.UInt32(100)
	}
	return out
}

func uint32Value(v uint32) *wrapperspb.UInt32Value {
	if v == 0 {
		return nil
	}
	return wrapperspb.UInt32(v)
}

func positiveDuration(d time.Duration) *durationpb.Duration {
	if d <= 0 {
		return nil
	}
	return durationpb.New(d)
}

func duration(d *metav1.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	return durationpb.New(d.Duration)
}

func doubleValue(v float64) *wrapperspb.DoubleValue { return wrapperspb.Double(v) }
