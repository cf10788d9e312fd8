package translate

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/builtin"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/plugin/engine"
	"github.com/meltemi-mesh/meltemi/plugin/engine/lb"
)

func registry(t *testing.T) *codecs.Registry {
	t.Helper()
	r, err := builtin.Registry()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// parse goes through the public API path, as the adapter does, so that the test inputs are
// configurations the API accepts.
func parse(t *testing.T, js string) *apiv1alpha1.FilterConfig {
	t.Helper()
	cfg, err := apiv1alpha1.FilterConfigFromJSON([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestEveryFieldMaps(t *testing.T) {
	cfg := parse(t, `{
	  "protocol": "thrift",
	  "codec_params": {"transport": "framed", "protocol": "binary"},
	  "stat_prefix": "in",
	  "max_frame_size": 4096,
	  "idle_timeout": "30s",
	  "route_timeout": "2s",
	  "route_config": {"name": "rc", "routes": [
	    {"name": "r1",
	     "match": {"attributes": [
	       {"name": "method", "exact": "echo"},
	       {"name": "service", "prefix": "Echo", "invert": true},
	       {"name": "version", "regex": "v[0-9]+"},
	       {"name": "x-canary", "present": true},
	       {"name": "x-debug", "present": false},
	       {"name": "x-trace", "present": false, "invert": true}]},
	     "route": {"cluster": "a", "timeout": "1.5s",
	       "request_mutation": {"set": [{"key": "k1", "value": "v1"}], "remove": ["r1"]},
	       "response_mutation": {"set": [{"key": "k2", "value": "v2"}], "remove": ["r2", "r3"]},
	       "oneway_methods": ["fire"],
	       "request_mirror_policies": [{"cluster": "c"}, {"cluster": "d", "runtime_fraction_percent": 25},
	         {"cluster": "e", "runtime_fraction_percent": 0}]}},
	    {"name": "r2",
	     "route": {"weighted_clusters": {"clusters": [{"name": "a", "weight": 90}, {"name": "b", "weight": 10}]}}},
	    {"route": {"cluster": "b", "timeout": "0s"}}]},
	  "clusters": [
	    {"name": "a", "lb_policy": "RING_HASH", "hash_keys": ["method", "x-user"],
	     "connect_timeout": "0.250s", "connections_per_endpoint": 4, "max_pending_requests": 7,
	     "max_requests": 9, "max_connect_attempts": 2,
	     "endpoints": [{"address": "127.0.0.1:9001", "weight": 3, "labels": {"version": "v1"}},
	                   {"address": "[::1]:9002"}]},
	    {"name": "b", "lb_policy": "LEAST_REQUEST", "endpoints": [{"address": "10.0.0.1:9003"}]},
	    {"name": "c", "lb_policy": "MAGLEV", "hash_keys": ["method"]},
	    {"name": "d", "lb_policy": "RANDOM"},
	    {"name": "e"}]
	}`)
	codec, err := Codec(registry(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := EngineConfig(cfg, codec)
	if err != nil {
		t.Fatal(err)
	}
	defaults := engine.Cluster{
		ConnectionsPerEndpoint: 1, MaxPendingRequests: 1024, MaxRequests: 1024,
		ConnectTimeout: 5 * time.Second, MaxConnectAttempts: 3,
	}
	named := func(name string, p lb.Policy, hash ...string) engine.Cluster {
		c := defaults
		c.Name, c.LB, c.HashAttributes = name, p, hash
		return c
	}
	b := named("b", lb.LeastRequest)
	b.Endpoints = []engine.Endpoint{{Address: "10.0.0.1:9003", Weight: 1}}
	want := engine.Config{
		Codec:       codec,
		IdleTimeout: 30 * time.Second,
		Routes: []engine.Route{
			{
				Name: "r1",
				Match: []engine.AttributeMatch{
					{Name: "method", Kind: engine.MatchExact, Value: "echo"},
					{Name: "service", Kind: engine.MatchPrefix, Value: "Echo", Invert: true},
					{Name: "version", Kind: engine.MatchRegex, Value: "v[0-9]+"},
					{Name: "x-canary", Kind: engine.MatchPresent},
					{Name: "x-debug", Kind: engine.MatchPresent, Invert: true},
					{Name: "x-trace", Kind: engine.MatchPresent},
				},
				Cluster: "a",
				Timeout: 1500 * time.Millisecond,
				RequestHeaders: engine.HeaderMutation{
					Set: []engine.Header{{Name: "k1", Value: "v1"}}, Remove: []string{"r1"}},
				ResponseHeaders: engine.HeaderMutation{
					Set: []engine.Header{{Name: "k2", Value: "v2"}}, Remove: []string{"r2", "r3"}},
				OnewayMethods: []string{"fire"},
				// Unset percent: 100 (the API's default); 0 stays 0 (none).
				Mirrors: []engine.Mirror{{Cluster: "c", Percent: 100}, {Cluster: "d", Percent: 25}, {Cluster: "e", Percent: 0}},
			},
			{
				Name:             "r2",
				WeightedClusters: []engine.WeightedCluster{{Cluster: "a", Weight: 90}, {Cluster: "b", Weight: 10}},
				Timeout:          2 * time.Second,
			},
			{Cluster: "b", Timeout: 0},
		},
		Clusters: []engine.Cluster{
			{
				Name: "a",
				Endpoints: []engine.Endpoint{
					{Address: "127.0.0.1:9001", Weight: 3, Labels: map[string]string{"version": "v1"}},
					{Address: "[::1]:9002", Weight: 1},
				},
				LB:                     lb.RingHash,
				HashAttributes:         []string{"method", "x-user"},
				ConnectionsPerEndpoint: 4,
				MaxPendingRequests:     7,
				MaxRequests:            9,
				ConnectTimeout:         250 * time.Millisecond,
				MaxConnectAttempts:     2,
			},
			b,
			named("c", lb.Maglev, "method"),
			named("d", lb.Random),
			named("e", lb.RoundRobin),
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EngineConfig:\n got %+v\nwant %+v", got, want)
	}
	// The engine must accept what the translation produces.
	e, err := engine.New(got, engine.Options{Dialer: nopDialer{}})
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	e.Close()
}

func TestDefaults(t *testing.T) {
	cfg := parse(t, `{"protocol": "dubbo",
	  "route_config": {"routes": [{"route": {"cluster": "a"}}]},
	  "clusters": [{"name": "a", "endpoints": [{"address": "127.0.0.1:20880"}]}]}`)
	codec, err := Codec(registry(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := EngineConfig(cfg, codec)
	if err != nil {
		t.Fatal(err)
	}
	if got.IdleTimeout != apiv1alpha1.DefaultIdleTimeout {
		t.Errorf("idle timeout %v, want %v", got.IdleTimeout, apiv1alpha1.DefaultIdleTimeout)
	}
	if r := got.Routes[0]; r.Timeout != apiv1alpha1.DefaultRouteTimeout {
		t.Errorf("route timeout %v, want %v", r.Timeout, apiv1alpha1.DefaultRouteTimeout)
	}
	want := engine.Cluster{
		Name:                   "a",
		Endpoints:              []engine.Endpoint{{Address: "127.0.0.1:20880", Weight: apiv1alpha1.DefaultEndpointWeight}},
		LB:                     lb.RoundRobin,
		ConnectionsPerEndpoint: apiv1alpha1.DefaultConnectionsPerEndpoint,
		MaxPendingRequests:     apiv1alpha1.DefaultMaxPendingRequests,
		MaxRequests:            apiv1alpha1.DefaultMaxRequests,
		ConnectTimeout:         apiv1alpha1.DefaultConnectTimeout,
		MaxConnectAttempts:     apiv1alpha1.DefaultMaxConnectAttempts,
	}
	if !reflect.DeepEqual(got.Clusters, []engine.Cluster{want}) {
		t.Errorf("clusters:\n got %+v\nwant %+v", got.Clusters, want)
	}
}

func TestZeroTimeoutsDisable(t *testing.T) {
	cfg := parse(t, `{"protocol": "dubbo", "idle_timeout": "0s", "route_timeout": "0s",
	  "route_config": {"routes": [{"route": {"cluster": "a"}}]}, "clusters": [{"name": "a"}]}`)
	got, err := EngineConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.IdleTimeout != 0 || got.Routes[0].Timeout != 0 {
		t.Errorf("idle %v, route %v: want both 0 (disabled)", got.IdleTimeout, got.Routes[0].Timeout)
	}
}

func TestRDSHasNoRoutes(t *testing.T) {
	cfg := parse(t, `{"protocol": "thrift", "rds": {"route_config_name": "thrift-routes"},
	  "clusters": [{"name": "a", "endpoints": [{"address": "127.0.0.1:9090"}]}]}`)
	got, err := EngineConfig(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Routes) != 0 || len(got.Clusters) != 1 {
		t.Errorf("routes %d clusters %d: want 0 routes and the 1 cluster", len(got.Routes), len(got.Clusters))
	}
}

func TestCodecOptions(t *testing.T) {
	reg := registry(t)
	ok := parse(t, `{"protocol": "thrift", "max_frame_size": 64, "codec_params": {"transport": "framed"},
	  "route_config": {}}`)
	c, err := Codec(reg, ok)
	if err != nil {
		t.Fatal(err)
	}
	// The frame limit reaches the codec: a framed message declaring 65 bytes is refused.
	head := []byte{0, 0, 0, 61, 0x80, 1, 0, 1} // 65 bytes with the frame header
	if _, _, err := c.NewConn().Decode(head); !errors.Is(err, codecs.ErrFrameTooLarge) {
		t.Errorf("a 65-byte frame with max_frame_size 64: err %v, want ErrFrameTooLarge", err)
	}
	ok.MaxFrameSize = 65
	if c, err = Codec(reg, ok); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.NewConn().Decode(head); err != nil {
		t.Errorf("a 65-byte frame with max_frame_size 65: %v", err)
	}
	bad := parse(t, `{"protocol": "thrift", "codec_params": {"transport": "carrier-pigeon"}, "route_config": {}}`)
	if _, err := Codec(reg, bad); err == nil {
		t.Error("an unknown transport was accepted")
	}
	unknown := parse(t, `{"protocol": "dubbo", "route_config": {}}`)
	unknown.Protocol = "smtp"
	if _, err := Codec(reg, unknown); err == nil || !strings.Contains(err.Error(), "smtp") {
		t.Errorf("unknown protocol: err %v, want one naming it", err)
	}
}

func TestInvalidEnumsAreErrors(t *testing.T) {
	cfg := &apiv1alpha1.FilterConfig{
		Protocol: "dubbo",
		Clusters: []*apiv1alpha1.Cluster{{Name: "a", LbPolicy: 42}},
	}
	if _, err := EngineConfig(cfg, nil); err == nil || !strings.Contains(err.Error(), "clusters[0]") {
		t.Errorf("unknown lb_policy: err %v, want one naming clusters[0]", err)
	}
	cfg = &apiv1alpha1.FilterConfig{
		Protocol: "dubbo",
		RouteSpecifier: &apiv1alpha1.FilterConfig_RouteConfig{RouteConfig: &apiv1alpha1.RouteConfiguration{
			Routes: []*apiv1alpha1.Route{{
				Match: &apiv1alpha1.RouteMatch{Attributes: []*apiv1alpha1.AttributeMatcher{{Name: "method"}}},
				Route: &apiv1alpha1.RouteAction{Timeout: durationpb.New(time.Second)},
			}},
		}},
	}
	if _, err := EngineConfig(cfg, nil); err == nil || !strings.Contains(err.Error(), "attributes[0]") {
		t.Errorf("matcher without specifier: err %v, want one naming attributes[0]", err)
	}
}

type nopDialer struct{}

func (nopDialer) Dial(string, engine.UpstreamHandler) {}
