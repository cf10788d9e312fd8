package translate

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meltemi-mesh/meltemi/codecs"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/plugin/engine"
	"github.com/meltemi-mesh/meltemi/plugin/engine/lb"
)

func lbEndpoint(ip string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
	}}}
}

func meltemiMD(fields map[string]any) *corev3.Metadata {
	s, err := structpb.NewStruct(fields)
	if err != nil {
		panic(err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{apiv1alpha1.MetadataNamespace: s}}
}

func cla(name string, eps ...*endpointv3.LbEndpoint) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

func edsCluster(name, service string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: service},
	}
}

// xdsInput is a route configuration and resources exercising every mapped field: cluster
// "a" (EDS, every setting), "b" (STATIC), "m" (mirror only, EDS with its own service name).
type xdsInput struct {
	rc        *apiv1alpha1.RouteConfiguration
	clusters  map[string]*clusterv3.Cluster
	endpoints map[string]*endpointv3.ClusterLoadAssignment
}

func newXDSInput(t *testing.T) *xdsInput {
	t.Helper()
	rc := parseRC(t, `{"name": "outbound|20880||echo",
	  "local_rate_limit": {"token_bucket": {"max_tokens": 10, "fill_interval": "1s"}},
	  "global_rate_limit": {"domain": "d", "rate_limit_service": "rls", "descriptors": [{"property": "method", "descriptor_key": "m"}]},
	  "routes": [
	    {"name": "r1", "match": {"attributes": [{"name": "method", "exact": "Echo"}]},
	     "route": {"cluster": "a", "timeout": "2s",
	       "retry_policy": {"num_retries": 2, "retry_on": ["reset"]},
	       "request_mirror_policies": [{"cluster": "m", "runtime_fraction_percent": 10}]}},
	    {"name": "r2", "route": {"weighted_clusters": {"clusters": [{"name": "a", "weight": 1}, {"name": "b", "weight": 3}]},
	       "request_mirror_policies": [{"cluster": "m"}]}}]}`)
	a := edsCluster("a", "")
	a.LbPolicy = clusterv3.Cluster_RING_HASH
	a.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(2048)}}
	a.ConnectTimeout = durationpb.New(250 * time.Millisecond)
	a.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
		{Priority: corev3.RoutingPriority_HIGH, MaxRequests: wrapperspb.UInt32(1)},
		{MaxPendingRequests: wrapperspb.UInt32(7), MaxRequests: wrapperspb.UInt32(70), MaxConnections: wrapperspb.UInt32(3), MaxRetries: wrapperspb.UInt32(2)},
	}}
	a.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(5)}
	a.Metadata = meltemiMD(map[string]any{
		apiv1alpha1.ClusterMetadataHashKeys:               []any{"x-user", "method"},
		apiv1alpha1.ClusterMetadataConnectionsPerEndpoint: 4,
		apiv1alpha1.ClusterMetadataMaxConnectAttempts:     2,
		"future_setting": true, // unknown keys are ignored
	})
	e1 := lbEndpoint("10.0.0.1", 20880)
	e1.HealthStatus = corev3.HealthStatus_HEALTHY
	e1.LoadBalancingWeight = wrapperspb.UInt32(5)
	e1.Metadata = meltemiMD(map[string]any{apiv1alpha1.EndpointMetadataLabels: map[string]any{"version": "v1", "zone": "z1"}})
	e2 := lbEndpoint("fd00::2", 20880)
	unhealthy := lbEndpoint("10.0.0.3", 20880)
	unhealthy.HealthStatus = corev3.HealthStatus_UNHEALTHY
	draining := lbEndpoint("10.0.0.4", 20880)
	draining.HealthStatus = corev3.HealthStatus_DRAINING
	aCLA := cla("a", e1, unhealthy)
	aCLA.Endpoints = append(aCLA.Endpoints, &endpointv3.LocalityLbEndpoints{
		Locality: &corev3.Locality{Zone: "z2"}, LbEndpoints: []*endpointv3.LbEndpoint{e2, draining}})

	b := &clusterv3.Cluster{Name: "b", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LbPolicy: clusterv3.Cluster_LEAST_REQUEST, LoadAssignment: cla("b", lbEndpoint("10.0.1.1", 9090))}
	m := edsCluster("m", "mirror-service")
	m.LbPolicy = clusterv3.Cluster_MAGLEV
	m.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(251)}}
	m.Metadata = meltemiMD(map[string]any{apiv1alpha1.ClusterMetadataHashKeys: []any{"method"}})
	return &xdsInput{
		rc:       rc,
		clusters: map[string]*clusterv3.Cluster{"a": a, "b": b, "m": m, "unused": edsCluster("unused", "")},
		endpoints: map[string]*endpointv3.ClusterLoadAssignment{
			"a": aCLA, "mirror-service": cla("mirror-service", lbEndpoint("10.0.2.1", 1)),
		},
	}
}

func (in *xdsInput) run() ([]engine.Route, []engine.Cluster, error) {
	return FromXDS(in.rc, in.clusters, in.endpoints, 3*time.Second)
}

// parseRC reads a route configuration as protojson, the way the YAML and the tests of the
// API write it.
func parseRC(t *testing.T, js string) *apiv1alpha1.RouteConfiguration {
	t.Helper()
	rc := &apiv1alpha1.RouteConfiguration{}
	if err := protojson.Unmarshal([]byte(js), rc); err != nil {
		t.Fatal(err)
	}
	return rc
}

func TestFromXDSMapsEveryField(t *testing.T) {
	in := newXDSInput(t)
	routes, clusters, err := in.run()
	if err != nil {
		t.Fatal(err)
	}
	wantRoutes := []engine.Route{
		{Name: "r1", Cluster: "a", Timeout: 2 * time.Second,
			Match:   []engine.AttributeMatch{{Name: "method", Kind: engine.MatchExact, Value: "Echo"}},
			Mirrors: []engine.Mirror{{Cluster: "m", Percent: 10}}},
		{Name: "r2", Timeout: 3 * time.Second,
			WeightedClusters: []engine.WeightedCluster{{Cluster: "a", Weight: 1}, {Cluster: "b", Weight: 3}},
			Mirrors:          []engine.Mirror{{Cluster: "m", Percent: 100}}}, // unset: 100
	}
	if !reflect.DeepEqual(routes, wantRoutes) {
		t.Errorf("routes\n got %+v\nwant %+v", routes, wantRoutes)
	}
	wantClusters := []engine.Cluster{
		{Name: "a", LB: lb.RingHash, HashAttributes: []string{"x-user", "method"}, RingSize: 2048,
			ConnectionsPerEndpoint: 4, MaxPendingRequests: 7, MaxRequests: 70, ConnectTimeout: 250 * time.Millisecond,
			MaxConnectAttempts: 2, Endpoints: []engine.Endpoint{
				{Address: "10.0.0.1:20880", Weight: 5, Labels: map[string]string{"version": "v1", "zone": "z1"}},
				{Address: "[fd00::2]:20880", Weight: 1},
			}},
		{Name: "b", LB: lb.LeastRequest, ConnectionsPerEndpoint: 1, MaxPendingRequests: 1024, MaxRequests: 1024,
			ConnectTimeout: 5 * time.Second, MaxConnectAttempts: 3,
			Endpoints: []engine.Endpoint{{Address: "10.0.1.1:9090", Weight: 1}}},
		{Name: "m", LB: lb.Maglev, HashAttributes: []string{"method"}, MaglevTableSize: 251,
			ConnectionsPerEndpoint: 1, MaxPendingRequests: 1024, MaxRequests: 1024,
			ConnectTimeout: 5 * time.Second, MaxConnectAttempts: 3,
			Endpoints: []engine.Endpoint{{Address: "10.0.2.1:1", Weight: 1}}},
	}
	if !reflect.DeepEqual(clusters, wantClusters) {
		t.Errorf("clusters\n got %+v\nwant %+v", clusters, wantClusters)
	}
	if got := ClusterNames(in.rc); strings.Join(got, ",") != "a,b,m" {
		t.Errorf("ClusterNames = %v", got)
	}
	// The engine accepts the result.
	e, err := engine.New(engine.Config{Codec: dubboCodec(t), Routes: routes, Clusters: clusters}, engine.Options{Dialer: nopDialer{}})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	e.Close()
}

func TestFromXDSRandomAndRoundRobin(t *testing.T) {
	in := newXDSInput(t)
	in.clusters["b"].LbPolicy = clusterv3.Cluster_RANDOM
	in.clusters["a"].LbPolicy, in.clusters["a"].LbConfig, in.clusters["a"].Metadata = clusterv3.Cluster_ROUND_ROBIN, nil, nil
	_, clusters, err := in.run()
	if err != nil {
		t.Fatal(err)
	}
	if clusters[0].LB != lb.RoundRobin || clusters[0].HashAttributes != nil || clusters[1].LB != lb.Random {
		t.Errorf("policies %v %v", clusters[0].LB, clusters[1].LB)
	}
}

func TestFromXDSEmptyAssignment(t *testing.T) {
	in := newXDSInput(t)
	in.endpoints["a"] = &endpointv3.ClusterLoadAssignment{ClusterName: "a"}
	_, clusters, err := in.run()
	if err != nil {
		t.Fatal(err)
	}
	if len(clusters[0].Endpoints) != 0 {
		t.Errorf("endpoints %v, want none", clusters[0].Endpoints)
	}
}

func TestFromXDSMissing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(in *xdsInput)
		want   string
	}{
		{"cluster", func(in *xdsInput) { delete(in.clusters, "b") }, `route configuration "outbound|20880||echo": cluster "b": not received`},
		{"mirror cluster", func(in *xdsInput) { delete(in.clusters, "m") }, `cluster "m": not received`},
		{"assignment", func(in *xdsInput) { delete(in.endpoints, "a") },
			`cluster "a": ClusterLoadAssignment "a" (eds_cluster_config.service_name): not received`},
		{"assignment by service name", func(in *xdsInput) { delete(in.endpoints, "mirror-service") },
			`cluster "m": ClusterLoadAssignment "mirror-service"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newXDSInput(t)
			tc.mutate(in)
			_, _, err := in.run()
			if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrMissing and %q", err, tc.want)
			}
		})
	}
}

func TestFromXDSErrors(t *testing.T) {
	ep := func(in *xdsInput) *endpointv3.LbEndpoint { return in.endpoints["a"].Endpoints[0].LbEndpoints[0] }
	sock := func(in *xdsInput) *corev3.SocketAddress { return ep(in).GetEndpoint().GetAddress().GetSocketAddress() }
	a := func(in *xdsInput) *clusterv3.Cluster { return in.clusters["a"] }
	const aEP = `cluster "a": ClusterLoadAssignment "a": endpoints[0].lb_endpoints[0].`
	for _, tc := range []struct {
		name   string
		mutate func(in *xdsInput)
		want   string
	}{
		{"nil route configuration", func(in *xdsInput) { in.rc = nil }, "no route configuration"},
		{"invalid route", func(in *xdsInput) { in.rc.Routes[0].Route.Timeout = durationpb.New(-time.Second) },
			`route configuration "outbound|20880||echo": routes[0].route.timeout: negative duration -1s`},
		{"invalid retry policy", func(in *xdsInput) { in.rc.Routes[0].Route.RetryPolicy.NumRetries = 0 },
			`routes[0].route.retry_policy.num_retries: must be positive`},
		{"invalid mirror", func(in *xdsInput) {
			in.rc.Routes[0].Route.RequestMirrorPolicies[0].RuntimeFractionPercent = wrapperspb.Double(101)
		}, `routes[0].route.request_mirror_policies[0].runtime_fraction_percent: 101: want 0 to 100`},
		{"invalid local rate limit", func(in *xdsInput) { in.rc.LocalRateLimit.TokenBucket.MaxTokens = 0 },
			`local_rate_limit.token_bucket.max_tokens: must be positive`},
		{"invalid global rate limit", func(in *xdsInput) { in.rc.GlobalRateLimit.Domain = "" },
			`global_rate_limit.domain: required`},
		{"cluster name mismatch", func(in *xdsInput) { in.clusters["b"].Name = "c" },
			`cluster "b": name "c" differs from its resource name`},

		{"STRICT_DNS", func(in *xdsInput) {
			a(in).ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		},
			`cluster "a": type STRICT_DNS is not supported`},
		{"ORIGINAL_DST", func(in *xdsInput) {
			a(in).ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		},
			`cluster "a": type ORIGINAL_DST is not supported`},
		{"custom cluster type", func(in *xdsInput) {
			a(in).ClusterDiscoveryType = &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{Name: "x"}}
		}, `cluster "a": cluster_type "x": custom cluster types are not supported`},
		{"STATIC without load_assignment", func(in *xdsInput) { in.clusters["b"].LoadAssignment = nil },
			`cluster "b": load_assignment: required with type STATIC`},

		{"CLUSTER_PROVIDED", func(in *xdsInput) { in.clusters["b"].LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED },
			`cluster "b": lb_policy CLUSTER_PROVIDED is not supported`},
		{"LOAD_BALANCING_POLICY_CONFIG", func(in *xdsInput) { in.clusters["b"].LbPolicy = clusterv3.Cluster_LOAD_BALANCING_POLICY_CONFIG },
			`cluster "b": lb_policy LOAD_BALANCING_POLICY_CONFIG is not supported`},
		{"load_balancing_policy", func(in *xdsInput) { in.clusters["b"].LoadBalancingPolicy = &clusterv3.LoadBalancingPolicy{} },
			`cluster "b": load_balancing_policy is not supported`},
		{"ring config with another policy", func(in *xdsInput) { a(in).LbPolicy = clusterv3.Cluster_MAGLEV },
			`cluster "a": ring_hash_lb_config: set with lb_policy MAGLEV`},
		{"maglev config with another policy", func(in *xdsInput) { in.clusters["m"].LbPolicy = clusterv3.Cluster_RING_HASH },
			`cluster "m": maglev_lb_config: set with lb_policy RING_HASH`},
		{"ring size 0", func(in *xdsInput) { a(in).GetRingHashLbConfig().MinimumRingSize = wrapperspb.UInt64(0) },
			`cluster "a": ring_hash_lb_config.minimum_ring_size: 0 out of range`},
		{"ring size too large", func(in *xdsInput) { a(in).GetRingHashLbConfig().MinimumRingSize = wrapperspb.UInt64(1 << 30) },
			`cluster "a": ring_hash_lb_config.minimum_ring_size: 1073741824 out of range`},
		{"maglev size not prime", func(in *xdsInput) { in.clusters["m"].GetMaglevLbConfig().TableSize = wrapperspb.UInt64(250) },
			`cluster "m": maglev_lb_config.table_size: 250: want a prime`},
		{"maglev size too small", func(in *xdsInput) {
			in.clusters["m"].GetMaglevLbConfig().TableSize = wrapperspb.UInt64(2)
			in.endpoints["mirror-service"] = cla("m", lbEndpoint("10.0.2.1", 1), lbEndpoint("10.0.2.2", 1))
		}, `cluster "m": maglev_lb_config.table_size: 2 is not larger than the 2 endpoints`},

		{"hash keys missing", func(in *xdsInput) { a(in).Metadata = nil },
			`cluster "a": metadata.filter_metadata.meltemi.hash_keys: required with RING_HASH`},
		{"hash keys not a list", func(in *xdsInput) {
			a(in).Metadata = meltemiMD(map[string]any{"hash_keys": "x-user"})
		}, `cluster "a": metadata.filter_metadata.meltemi.hash_keys: want a list of strings`},
		{"hash key not a string", func(in *xdsInput) {
			a(in).Metadata = meltemiMD(map[string]any{"hash_keys": []any{"x", 1}})
		}, `cluster "a": metadata.filter_metadata.meltemi.hash_keys[1]: want a non-empty string`},
		{"empty hash key", func(in *xdsInput) {
			a(in).Metadata = meltemiMD(map[string]any{"hash_keys": []any{""}})
		}, `cluster "a": metadata.filter_metadata.meltemi.hash_keys[0]: want a non-empty string`},
		{"hash keys without hashing", func(in *xdsInput) {
			in.clusters["b"].Metadata = meltemiMD(map[string]any{"hash_keys": []any{"x"}})
		}, `cluster "b": metadata.filter_metadata.meltemi.hash_keys: only used by RING_HASH and MAGLEV, not LEAST_REQUEST`},
		{"connections not a number", func(in *xdsInput) {
			in.clusters["b"].Metadata = meltemiMD(map[string]any{"connections_per_endpoint": "4"})
		}, `cluster "b": metadata.filter_metadata.meltemi.connections_per_endpoint: 4: want an integer from 1 to 1024`},
		{"connections fractional", func(in *xdsInput) {
			in.clusters["b"].Metadata = meltemiMD(map[string]any{"connections_per_endpoint": 1.5})
		}, `connections_per_endpoint: 1.5: want an integer`},
		{"connections 0", func(in *xdsInput) {
			in.clusters["b"].Metadata = meltemiMD(map[string]any{"connections_per_endpoint": 0})
		}, `connections_per_endpoint: 0: want an integer`},
		{"attempts too many", func(in *xdsInput) {
			in.clusters["b"].Metadata = meltemiMD(map[string]any{"max_connect_attempts": 65})
		}, `cluster "b": metadata.filter_metadata.meltemi.max_connect_attempts: 65: want an integer from 1 to 64`},

		{"zero connect timeout", func(in *xdsInput) { a(in).ConnectTimeout = durationpb.New(0) },
			`cluster "a": connect_timeout: 0s: must be positive`},
		{"invalid connect timeout", func(in *xdsInput) { a(in).ConnectTimeout = &durationpb.Duration{Seconds: 1, Nanos: -1} },
			`cluster "a": connect_timeout: proto:`},
		{"two DEFAULT thresholds", func(in *xdsInput) {
			a(in).CircuitBreakers.Thresholds = append(a(in).CircuitBreakers.Thresholds, &clusterv3.CircuitBreakers_Thresholds{})
		}, `cluster "a": circuit_breakers.thresholds[2]: a second DEFAULT-priority threshold`},
		{"max_requests 0", func(in *xdsInput) { a(in).CircuitBreakers.Thresholds[1].MaxRequests = wrapperspb.UInt32(0) },
			`cluster "a": circuit_breakers.thresholds[1].max_requests: 0 would refuse every request`},
		{"max_pending_requests 0", func(in *xdsInput) { a(in).CircuitBreakers.Thresholds[1].MaxPendingRequests = wrapperspb.UInt32(0) },
			`cluster "a": circuit_breakers.thresholds[1].max_pending_requests: 0 would refuse every request`},

		{"host name", func(in *xdsInput) { sock(in).Address = "echo.demo.svc" },
			aEP + `endpoint.address.socket_address.address: "echo.demo.svc": want an IP address`},
		{"unspecified address", func(in *xdsInput) { sock(in).Address = "0.0.0.0" },
			aEP + `endpoint.address.socket_address.address: "0.0.0.0": unspecified address`},
		{"named port", func(in *xdsInput) { sock(in).PortSpecifier = &corev3.SocketAddress_NamedPort{NamedPort: "dubbo"} },
			aEP + `endpoint.address.socket_address.port_value: required`},
		{"port 0", func(in *xdsInput) { sock(in).PortSpecifier = &corev3.SocketAddress_PortValue{} },
			aEP + `endpoint.address.socket_address.port_value: 0: want 1-65535`},
		{"port too large", func(in *xdsInput) { sock(in).PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 70000} },
			aEP + `endpoint.address.socket_address.port_value: 70000: want 1-65535`},
		{"UDP", func(in *xdsInput) { sock(in).Protocol = corev3.SocketAddress_UDP },
			aEP + `endpoint.address.socket_address.protocol: UDP: want TCP`},
		{"resolver", func(in *xdsInput) { sock(in).ResolverName = "dns" },
			aEP + `endpoint.address.socket_address.resolver_name: "dns"`},
		{"pipe", func(in *xdsInput) {
			ep(in).GetEndpoint().Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/s"}}}
		}, aEP + `endpoint.address.socket_address: required`},
		{"named endpoint", func(in *xdsInput) { ep(in).HostIdentifier = &endpointv3.LbEndpoint_EndpointName{EndpointName: "x"} },
			aEP + `endpoint: required`},
		{"weight 0", func(in *xdsInput) { ep(in).LoadBalancingWeight = wrapperspb.UInt32(0) },
			aEP + `load_balancing_weight: must be at least 1`},
		{"duplicate address", func(in *xdsInput) {
			in.endpoints["a"].Endpoints[1].LbEndpoints[0] = lbEndpoint("10.0.0.1", 20880)
		}, `cluster "a": ClusterLoadAssignment "a": endpoints[1].lb_endpoints[0]: address 10.0.0.1:20880 already listed at ClusterLoadAssignment "a": endpoints[0].lb_endpoints[0]`},
		{"labels not a struct", func(in *xdsInput) { ep(in).Metadata = meltemiMD(map[string]any{"labels": "v1"}) },
			aEP + `metadata.filter_metadata.meltemi.labels: want a struct of strings`},
		{"label not a string", func(in *xdsInput) {
			ep(in).Metadata = meltemiMD(map[string]any{"labels": map[string]any{"version": 2}})
		}, aEP + `metadata.filter_metadata.meltemi.labels["version"]: want a non-empty key with a string value`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newXDSInput(t)
			tc.mutate(in)
			_, _, err := in.run()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if errors.Is(err, ErrMissing) {
				t.Fatalf("error %v is marked missing", err)
			}
		})
	}
}

// Unhealthy endpoints that would be invalid are skipped, not rejected.
func TestFromXDSSkipsUnhealthyBeforeChecking(t *testing.T) {
	in := newXDSInput(t)
	bad := lbEndpoint("not-an-ip", 0)
	bad.HealthStatus = corev3.HealthStatus_DEGRADED
	in.endpoints["a"].Endpoints[0].LbEndpoints = append(in.endpoints["a"].Endpoints[0].LbEndpoints, bad)
	if _, _, err := in.run(); err != nil {
		t.Fatal(err)
	}
}

func dubboCodec(t *testing.T) codecs.Codec {
	t.Helper()
	c, err := Codec(registry(t), &apiv1alpha1.FilterConfig{Protocol: "dubbo"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The API states the ring size limit the controller checks; the engine's balancer enforces
// its own. They must agree, or the controller would send rings the engine refuses.
func TestAPIRingLimitIsTheEngines(t *testing.T) {
	if apiv1alpha1.MaxRingSize != lb.MaxRingSize {
		t.Fatalf("apiv1alpha1.MaxRingSize %d, lb.MaxRingSize %d", apiv1alpha1.MaxRingSize, lb.MaxRingSize)
	}
}
