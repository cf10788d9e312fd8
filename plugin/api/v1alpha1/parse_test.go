package apiv1alpha1

import (
	"strings"
	"testing"
	"time"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	xdsv3 "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// demoJSON is a realistic configuration as it would sit, converted from YAML, in an Envoy
// bootstrap: every kind of matcher and destination, defaults left out in places.
const demoJSON = `{
  "protocol": "dubbo",
  "codec_params": {"serialization": "hessian2"},
  "stat_prefix": "dubbo_inbound",
  "max_frame_size": 8388608,
  "idle_timeout": "300s",
  "route_timeout": "3s",
  "route_config": {
    "name": "echo",
    "routes": [
      {
        "name": "v2-by-version",
        "match": {"attributes": [{"name": "version", "exact": "2.0.0"}]},
        "route": {
          "cluster": "echo-v2",
          "timeout": "1.500s",
          "request_mutation": {"set": [{"key": "x-route", "value": "v2"}], "remove": ["debug"]},
          "response_mutation": {"set": [{"key": "x-served-by", "value": "meltemi"}]}
        }
      },
      {
        "name": "canary",
        "match": {"attributes": [
          {"name": "method", "regex": "Echo(Async)?"},
          {"name": "x-canary", "present": true},
          {"name": "service", "prefix": "org.apache.dubbo.", "invert": true}
        ]},
        "route": {"weighted_clusters": {"clusters": [
          {"name": "echo-v1", "weight": 90},
          {"name": "echo-v2", "weight": 10}
        ]}}
      },
      {"route": {"cluster": "echo-v1"}}
    ]
  },
  "clusters": [
    {
      "name": "echo-v1",
      "endpoints": [
        {"address": "127.0.0.1:20881", "weight": 2, "labels": {"version": "v1"}},
        {"address": "[::1]:20881"}
      ],
      "lb_policy": "LEAST_REQUEST",
      "connect_timeout": "0.250s",
      "connections_per_endpoint": 2,
      "max_pending_requests": 100,
      "max_requests": 1000,
      "max_connect_attempts": 2
    },
    {
      "name": "echo-v2",
      "endpoints": [{"address": "127.0.0.1:20882"}],
      "lb_policy": "MAGLEV",
      "hash_keys": ["x-user-id"]
    }
  ]
}`

func mustDemo(t *testing.T) *FilterConfig {
	t.Helper()
	cfg, err := FilterConfigFromJSON([]byte(demoJSON))
	if err != nil {
		t.Fatalf("FilterConfigFromJSON(demo): %v", err)
	}
	return cfg
}

// envoyRoundTrip serializes a as Envoy does before it calls the plugin, and decodes it as the
// Go side of Envoy's golang filter does.
func envoyRoundTrip(t *testing.T, a *anypb.Any) *anypb.Any {
	t.Helper()
	b, err := proto.Marshal(a)
	if err != nil {
		t.Fatalf("marshal Any: %v", err)
	}
	out := new(anypb.Any)
	if err := proto.Unmarshal(b, out); err != nil {
		t.Fatalf("unmarshal Any: %v", err)
	}
	return out
}

func TestDemoFields(t *testing.T) {
	cfg := mustDemo(t)
	if got := cfg.GetProtocol(); got != "dubbo" {
		t.Errorf("protocol = %q", got)
	}
	if got := cfg.EffectiveMaxFrameSize(); got != 8<<20 {
		t.Errorf("max frame size = %d", got)
	}
	if got := cfg.EffectiveIdleTimeout(); got != 5*time.Minute {
		t.Errorf("idle timeout = %v", got)
	}
	routes := cfg.GetRouteConfig().GetRoutes()
	if len(routes) != 3 {
		t.Fatalf("%d routes, want 3", len(routes))
	}
	if got := routes[0].GetRoute().EffectiveTimeout(cfg.EffectiveRouteTimeout()); got != 1500*time.Millisecond {
		t.Errorf("routes[0] timeout = %v", got)
	}
	if got := routes[2].GetRoute().EffectiveTimeout(cfg.EffectiveRouteTimeout()); got != 3*time.Second {
		t.Errorf("routes[2] timeout = %v, want the filter's route_timeout", got)
	}
	attrs := routes[1].GetMatch().GetAttributes()
	if got := attrs[0].GetRegex(); got != "Echo(Async)?" {
		t.Errorf("regex = %q", got)
	}
	if _, ok := attrs[1].GetMatchSpecifier().(*AttributeMatcher_Present); !ok || !attrs[1].GetPresent() {
		t.Errorf("attributes[1] = %v, want present: true", attrs[1])
	}
	if !attrs[2].GetInvert() || attrs[2].GetPrefix() != "org.apache.dubbo." {
		t.Errorf("attributes[2] = %v", attrs[2])
	}
	if got := routes[1].GetRoute().GetWeightedClusters().GetClusters()[1].GetWeight(); got != 10 {
		t.Errorf("weight = %d", got)
	}
	v1, v2 := cfg.GetClusters()[0], cfg.GetClusters()[1]
	if v1.GetLbPolicy() != Cluster_LEAST_REQUEST || v2.GetLbPolicy() != Cluster_MAGLEV {
		t.Errorf("lb policies = %v, %v", v1.GetLbPolicy(), v2.GetLbPolicy())
	}
	if got := v1.EffectiveConnectTimeout(); got != 250*time.Millisecond {
		t.Errorf("connect timeout = %v", got)
	}
	if got := v1.GetEndpoints()[0].GetLabels()["version"]; got != "v1" {
		t.Errorf("label version = %q", got)
	}
	if got := v1.GetEndpoints()[1].EffectiveWeight(); got != 1 {
		t.Errorf("default endpoint weight = %d", got)
	}
}

// TestRoundTripTypedStruct follows the path of a configuration written in YAML for Envoy:
// JSON -> Struct -> TypedStruct -> Any -> bytes -> Any -> FilterConfig.
func TestRoundTripTypedStruct(t *testing.T) {
	want := mustDemo(t)

	a, err := TypedStructAnyFromJSON([]byte(demoJSON))
	if err != nil {
		t.Fatal(err)
	}
	if got := a.GetTypeUrl(); got != "type.googleapis.com/xds.type.v3.TypedStruct" {
		t.Errorf("Any type = %q", got)
	}
	got, err := ParseFilterConfig(envoyRoundTrip(t, a))
	if err != nil {
		t.Fatalf("ParseFilterConfig: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("from TypedStructAnyFromJSON:\n got %v\nwant %v", got, want)
	}

	a, err = TypedStructAny(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err = ParseFilterConfig(envoyRoundTrip(t, a))
	if err != nil {
		t.Fatalf("ParseFilterConfig: %v", err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("from TypedStructAny:\n got %v\nwant %v", got, want)
	}
}

// TestPluginConfigFromJSON: the bytes a host hands to the plugin decode, as the Go side of
// Envoy's filter decodes them, into the configuration; invalid JSON is an error.
func TestPluginConfigFromJSON(t *testing.T) {
	b, err := PluginConfigFromJSON([]byte(demoJSON))
	if err != nil {
		t.Fatal(err)
	}
	a := new(anypb.Any)
	if err := proto.Unmarshal(b, a); err != nil {
		t.Fatalf("unmarshal Any: %v", err)
	}
	got, err := ParseFilterConfig(a)
	if err != nil {
		t.Fatalf("ParseFilterConfig: %v", err)
	}
	if want := mustDemo(t); !proto.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if _, err := PluginConfigFromJSON([]byte(`{"protocol": `)); err == nil {
		t.Error("truncated JSON accepted")
	}
}

// TestEnvoyPluginConfigJSON parses plugin_config exactly as written in an Envoy bootstrap,
// "@type" included, the way Envoy's own JSON parser resolves it.
func TestEnvoyPluginConfigJSON(t *testing.T) {
	for _, typ := range []string{"xds.type.v3.TypedStruct", "udpa.type.v1.TypedStruct"} {
		t.Run(typ, func(t *testing.T) {
			js := `{"@type": "type.googleapis.com/` + typ + `",
			  "type_url": "type.googleapis.com/meltemi.plugin.v1alpha1.FilterConfig",
			  "value": ` + demoJSON + `}`
			a := new(anypb.Any)
			if err := protojson.Unmarshal([]byte(js), a); err != nil {
				t.Fatalf("unmarshal plugin_config: %v", err)
			}
			got, err := ParseFilterConfig(envoyRoundTrip(t, a))
			if err != nil {
				t.Fatalf("ParseFilterConfig: %v", err)
			}
			if !proto.Equal(got, mustDemo(t)) {
				t.Errorf("got %v", got)
			}
		})
	}
}

func TestFilterConfigTypeURL(t *testing.T) {
	want := "type.googleapis.com/" + string((&FilterConfig{}).ProtoReflect().Descriptor().FullName())
	if FilterConfigTypeURL != want {
		t.Errorf("FilterConfigTypeURL = %q, want %q", FilterConfigTypeURL, want)
	}
	a, err := anypb.New(&FilterConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if a.GetTypeUrl() != FilterConfigTypeURL {
		t.Errorf("anypb.New type URL = %q", a.GetTypeUrl())
	}
}

// minimalJSON is the smallest valid configuration; bad cases below change one thing in it.
const minimalJSON = `"protocol": "thrift",
  "route_config": {"routes": [{"route": {"cluster": "c"}}]},
  "clusters": [{"name": "c", "endpoints": [{"address": "127.0.0.1:9091"}]}]`

func typedStruct(t *testing.T, typeURL string, valueJSON string) *anypb.Any {
	t.Helper()
	s := new(structpb.Struct)
	if err := protojson.Unmarshal([]byte(valueJSON), s); err != nil {
		t.Fatalf("struct %s: %v", valueJSON, err)
	}
	a, err := anypb.New(&xdsv3.TypedStruct{TypeUrl: typeURL, Value: s})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func filterConfigAny(t *testing.T, cfg *FilterConfig) *anypb.Any {
	t.Helper()
	a, err := anypb.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestParseFilterConfig(t *testing.T) {
	minimal := mustMinimal(t)
	withUnknown := func(t *testing.T, nested bool) *anypb.Any {
		cfg := proto.Clone(minimal).(*FilterConfig)
		// A field number from a newer API version, as binary decoding would keep it.
		unknown := protowire.AppendTag(nil, 99, protowire.VarintType)
		unknown = protowire.AppendVarint(unknown, 1)
		if nested {
			cfg.GetClusters()[0].GetEndpoints()[0].ProtoReflect().SetUnknown(unknown)
		} else {
			cfg.ProtoReflect().SetUnknown(unknown)
		}
		return filterConfigAny(t, cfg)
	}
	udpa := func(t *testing.T, typeURL string) *anypb.Any {
		s := new(structpb.Struct)
		if err := protojson.Unmarshal([]byte("{"+minimalJSON+"}"), s); err != nil {
			t.Fatal(err)
		}
		a, err := anypb.New(&udpav1.TypedStruct{TypeUrl: typeURL, Value: s})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	tests := []struct {
		name    string
		any     func(t *testing.T) *anypb.Any
		wantErr string // "" means valid; else parts separated by | that the error contains
	}{
		{"xds TypedStruct", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, "{"+minimalJSON+"}")
		}, ""},
		{"xds TypedStruct without type_url, as Envoy's docs", func(t *testing.T) *anypb.Any {
			return typedStruct(t, "", "{"+minimalJSON+"}")
		}, ""},
		{"TypedStruct type_url with another host", func(t *testing.T) *anypb.Any {
			return typedStruct(t, "example.com/meltemi.plugin.v1alpha1.FilterConfig", "{"+minimalJSON+"}")
		}, ""},
		{"udpa TypedStruct", func(t *testing.T) *anypb.Any { return udpa(t, FilterConfigTypeURL) }, ""},
		{"FilterConfig Any", func(t *testing.T) *anypb.Any { return filterConfigAny(t, minimal) }, ""},

		{"nil Any", func(*testing.T) *anypb.Any { return nil }, "plugin_config: missing"},
		{"empty Any, as Envoy passes an absent plugin_config", func(*testing.T) *anypb.Any {
			return &anypb.Any{}
		}, "plugin_config: missing"},
		{"other message type", func(t *testing.T) *anypb.Any {
			a, err := anypb.New(&structpb.Struct{})
			if err != nil {
				t.Fatal(err)
			}
			return a
		}, `type "type.googleapis.com/google.protobuf.Struct": want`},
		{"TypedStruct naming another message", func(t *testing.T) *anypb.Any {
			return typedStruct(t, "type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "{"+minimalJSON+"}")
		}, `type_url "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"`},
		{"udpa TypedStruct naming another message", func(t *testing.T) *anypb.Any {
			return udpa(t, "type.googleapis.com/other.Config")
		}, `type_url "type.googleapis.com/other.Config"`},
		{"TypedStruct bytes corrupt", func(*testing.T) *anypb.Any {
			return &anypb.Any{TypeUrl: "type.googleapis.com/xds.type.v3.TypedStruct", Value: []byte{0x0a, 0x05}}
		}, "decoding xds.type.v3.TypedStruct"},
		{"TypedStruct without value", func(t *testing.T) *anypb.Any {
			a, err := anypb.New(&xdsv3.TypedStruct{TypeUrl: FilterConfigTypeURL})
			if err != nil {
				t.Fatal(err)
			}
			return a
		}, "protocol: required"},
		{"unknown top-level field", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, `{`+minimalJSON+`, "protocl": "dubbo"}`)
		}, `value: protocl: proto:|unknown field "protocl"`},
		{"unknown nested field", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, `{"protocol": "thrift",
			  "route_config": {"routes": [{"route": {"cluster": "c"}}]},
			  "clusters": [{"name": "c", "endpoints": [{"adress": "127.0.0.1:9091"}]}]}`)
		}, `value: clusters[0].endpoints[0].adress: proto:|unknown field "adress"`},
		{"string where a number goes", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, `{`+minimalJSON+`, "max_frame_size": "8MiB"}`)
		}, "value: max_frame_size: proto:"},
		{"number where a string goes", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, `{"protocol": 7}`)
		}, "value: protocol: proto:"},
		{"negative size", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, `{`+minimalJSON+`, "max_frame_size": -1}`)
		}, "value: max_frame_size: proto:"},
		{"fractional size", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, `{`+minimalJSON+`, "max_frame_size": 1.5}`)
		}, "value: max_frame_size: proto:"},
		{"unknown lb policy name", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, `{"protocol": "thrift",
			  "route_config": {"routes": [{"route": {"cluster": "c"}}]},
			  "clusters": [{"name": "c", "lb_policy": "ROUNDROBIN"}]}`)
		}, `value: clusters[0].lb_policy: proto:|invalid value for enum field lbPolicy: "ROUNDROBIN"`},
		{"bad duration", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, `{`+minimalJSON+`, "idle_timeout": "5 minutes"}`)
		}, `value: idle_timeout: proto:|invalid google.protobuf.Duration value "5 minutes"`},
		{"both route specifiers", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, `{`+minimalJSON+`, "rds": {"route_config_name": "r"}}`)
		}, "route_specifier is already set"},
		{"matcher with two kinds", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, `{"protocol": "thrift",
			  "route_config": {"routes": [{"match": {"attributes": [{"name": "method", "exact": "a", "prefix": "b"}]},
			    "route": {"cluster": "c"}}]},
			  "clusters": [{"name": "c"}]}`)
		}, "value: route_config.routes[0].match.attributes[0].prefix: proto:"},
		{"invalid after parsing: bad regex", func(t *testing.T) *anypb.Any {
			return typedStruct(t, FilterConfigTypeURL, `{"protocol": "thrift",
			  "route_config": {"routes": [{"match": {"attributes": [{"name": "method", "regex": "echo("}]},
			    "route": {"cluster": "c"}}]},
			  "clusters": [{"name": "c"}]}`)
		}, "invalid FilterConfig: route_config.routes[0].match.attributes[0].regex: error parsing regexp: missing closing ): `echo(`"},
		{"unknown binary field", func(t *testing.T) *anypb.Any { return withUnknown(t, false) }, "unknown fields in FilterConfig"},
		{"unknown nested binary field", func(t *testing.T) *anypb.Any { return withUnknown(t, true) }, "clusters[0].endpoints[0]: unknown fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.any(t)
			if a != nil {
				a = envoyRoundTrip(t, a)
			}
			cfg, err := ParseFilterConfig(a)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseFilterConfig: %v", err)
				}
				if !proto.Equal(cfg, minimal) {
					t.Errorf("got %v, want %v", cfg, minimal)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseFilterConfig succeeded with %v, want error containing %q", cfg, tt.wantErr)
			}
			if cfg != nil {
				t.Errorf("config %v returned with error", cfg)
			}
			// protojson varies the spaces in its messages on purpose: match parts of them.
			for _, part := range strings.Split(tt.wantErr, "|") {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("error %q does not contain %q", err, part)
				}
			}
			if !strings.HasPrefix(err.Error(), "plugin_config: ") {
				t.Errorf("error %q does not say it is about plugin_config", err)
			}
		})
	}
}

func mustMinimal(t *testing.T) *FilterConfig {
	t.Helper()
	cfg, err := FilterConfigFromJSON([]byte("{" + minimalJSON + "}"))
	if err != nil {
		t.Fatalf("FilterConfigFromJSON(minimal): %v", err)
	}
	return cfg
}

func TestFilterConfigFromJSONErrors(t *testing.T) {
	tests := []struct{ json, wantErr string }{
		{`not json`, "FilterConfig JSON"},
		{`{"protocol": "dubbo", "color": "blue"}`, `unknown field "color"`},
		{`{"protocol": "dubbo"}`, "invalid FilterConfig: route_specifier"},
		{`{"route_config": {}}`, "invalid FilterConfig: protocol: required"},
	}
	for _, tt := range tests {
		cfg, err := FilterConfigFromJSON([]byte(tt.json))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("FilterConfigFromJSON(%s) = %v, %v; want error containing %q", tt.json, cfg, err, tt.wantErr)
		}
	}
}

func TestTypedStructAnyFromJSONKeepsInvalidConfig(t *testing.T) {
	// The ABI host hands invalid configurations to the plugin, as Envoy would: building the
	// Any must not validate, parsing it must fail.
	a, err := TypedStructAnyFromJSON([]byte(`{"protocol": "dubbo", "unknown": true}`))
	if err != nil {
		t.Fatalf("TypedStructAnyFromJSON: %v", err)
	}
	if _, err := ParseFilterConfig(a); err == nil || !strings.Contains(err.Error(), `unknown field "unknown"`) {
		t.Errorf("ParseFilterConfig = %v, want unknown field error", err)
	}
	if _, err := TypedStructAnyFromJSON([]byte(`["not", "an", "object"]`)); err == nil {
		t.Error("TypedStructAnyFromJSON accepted a JSON array")
	}
}
