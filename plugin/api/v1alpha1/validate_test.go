package apiv1alpha1

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestValidate(t *testing.T) {
	demo := mustDemo(t)
	routes := func(c *FilterConfig) []*Route { return c.GetRouteConfig().GetRoutes() }
	v1 := func(c *FilterConfig) *Cluster { return c.GetClusters()[0] }
	split := func(c *FilterConfig) []*ClusterWeight {
		return routes(c)[1].GetRoute().GetWeightedClusters().GetClusters()
	}
	matcher := func(c *FilterConfig) *AttributeMatcher { return routes(c)[1].GetMatch().GetAttributes()[0] }

	tests := []struct {
		name    string
		mutate  func(c *FilterConfig)
		wantErr string // "" means valid
	}{
		{"demo", func(*FilterConfig) {}, ""},
		{"rds instead of inline routes", func(c *FilterConfig) {
			c.RouteSpecifier = &FilterConfig_Rds{Rds: &Rds{RouteConfigName: "echo", ConfigSource: "istiod.istio-system.svc:15010"}}
		}, ""},
		{"rds without config_source", func(c *FilterConfig) {
			c.RouteSpecifier = &FilterConfig_Rds{Rds: &Rds{RouteConfigName: "echo"}}
		}, ""},
		{"a zero weight in a split drains a cluster", func(c *FilterConfig) { split(c)[1].Weight = 0 }, ""},
		{"cluster without endpoints", func(c *FilterConfig) { v1(c).Endpoints = nil }, ""},
		{"present: false", func(c *FilterConfig) {
			matcher(c).MatchSpecifier = &AttributeMatcher_Present{Present: false}
		}, ""},
		{"exact empty value", func(c *FilterConfig) {
			matcher(c).MatchSpecifier = &AttributeMatcher_Exact{Exact: ""}
		}, ""},
		{"timeouts disabled", func(c *FilterConfig) {
			c.IdleTimeout = durationpb.New(0)
			c.RouteTimeout = durationpb.New(0)
		}, ""},

		{"no protocol", func(c *FilterConfig) { c.Protocol = "" }, "protocol: required"},
		{"empty codec param key", func(c *FilterConfig) { c.CodecParams[""] = "x" }, "codec_params: empty key"},
		{"no route specifier", func(c *FilterConfig) { c.RouteSpecifier = nil },
			"route_specifier: one of route_config or rds is required"},
		{"rds without name", func(c *FilterConfig) { c.RouteSpecifier = &FilterConfig_Rds{Rds: &Rds{}} },
			"rds.route_config_name: required"},
		{"rds empty message", func(c *FilterConfig) { c.RouteSpecifier = &FilterConfig_Rds{} },
			"rds.route_config_name: required"},
		{"rds config_source without port", func(c *FilterConfig) {
			c.RouteSpecifier = &FilterConfig_Rds{Rds: &Rds{RouteConfigName: "r", ConfigSource: "istiod"}}
		}, "rds.config_source: want host:port"},
		{"rds config_source bad port", func(c *FilterConfig) {
			c.RouteSpecifier = &FilterConfig_Rds{Rds: &Rds{RouteConfigName: "r", ConfigSource: "istiod:grpc"}}
		}, `rds.config_source: "istiod:grpc": bad port "grpc"`},
		{"negative idle timeout", func(c *FilterConfig) { c.IdleTimeout = durationpb.New(-1) },
			"idle_timeout: negative duration"},
		{"invalid duration", func(c *FilterConfig) { c.RouteTimeout = &durationpb.Duration{Seconds: 1, Nanos: -1} },
			"route_timeout: proto:"},

		{"missing cluster", func(c *FilterConfig) {
			routes(c)[0].GetRoute().ClusterSpecifier = &RouteAction_Cluster{Cluster: "echo-v3"}
		}, `route_config.routes[0].route.cluster: unknown cluster "echo-v3" (not in clusters)`},
		{"missing cluster in a split", func(c *FilterConfig) { split(c)[1].Name = "echo-v3" },
			`route_config.routes[1].route.weighted_clusters.clusters[1].name: unknown cluster "echo-v3"`},
		{"split names a cluster twice", func(c *FilterConfig) { split(c)[1].Name = "echo-v1" },
			`route_config.routes[1].route.weighted_clusters.clusters[1].name: cluster "echo-v1" listed twice`},
		{"split weights sum to 0", func(c *FilterConfig) { split(c)[0].Weight, split(c)[1].Weight = 0, 0 },
			"route_config.routes[1].route.weighted_clusters.clusters: weights sum to 0"},
		{"empty oneway method", func(c *FilterConfig) { routes(c)[0].GetRoute().OnewayMethods = []string{"fire", ""} },
			"route_config.routes[0].route.oneway_methods[1]: empty method name"},
		{"split weights overflow", func(c *FilterConfig) { split(c)[0].Weight, split(c)[1].Weight = 1<<32-1, 1 },
			"route_config.routes[1].route.weighted_clusters.clusters: weights sum to 4294967296"},
		{"empty split", func(c *FilterConfig) { routes(c)[1].GetRoute().GetWeightedClusters().Clusters = nil },
			"route_config.routes[1].route.weighted_clusters.clusters: at least one cluster is required"},
		{"route without action", func(c *FilterConfig) { routes(c)[2].Route = nil },
			"route_config.routes[2].route: required"},
		{"action without destination", func(c *FilterConfig) { routes(c)[2].GetRoute().ClusterSpecifier = nil },
			"route_config.routes[2].route: one of cluster or weighted_clusters is required"},
		{"action with empty cluster name", func(c *FilterConfig) {
			routes(c)[2].GetRoute().ClusterSpecifier = &RouteAction_Cluster{}
		}, "route_config.routes[2].route.cluster: required"},
		{"negative route timeout", func(c *FilterConfig) { routes(c)[0].GetRoute().Timeout = durationpb.New(-5) },
			"route_config.routes[0].route.timeout: negative duration -5ns"},
		{"duplicate route names", func(c *FilterConfig) { routes(c)[1].Name = routes(c)[0].Name },
			`route_config.routes[1].name: duplicate route "v2-by-version"`},

		{"bad regex", func(c *FilterConfig) { matcher(c).MatchSpecifier = &AttributeMatcher_Regex{Regex: "Echo[a-"} },
			"route_config.routes[1].match.attributes[0].regex: error parsing regexp: missing closing ]: `[a-`"},
		{"Perl lookahead is not RE2", func(c *FilterConfig) {
			matcher(c).MatchSpecifier = &AttributeMatcher_Regex{Regex: "Echo(?=Async)"}
		}, "route_config.routes[1].match.attributes[0].regex: error parsing regexp: invalid or unsupported Perl syntax"},
		{"matcher without kind", func(c *FilterConfig) { matcher(c).MatchSpecifier = nil },
			"route_config.routes[1].match.attributes[0]: one of exact, prefix, regex or present is required"},
		{"matcher without name", func(c *FilterConfig) { matcher(c).Name = "" },
			"route_config.routes[1].match.attributes[0].name: required"},
		{"empty prefix", func(c *FilterConfig) { matcher(c).MatchSpecifier = &AttributeMatcher_Prefix{} },
			"route_config.routes[1].match.attributes[0].prefix: empty"},

		{"host name endpoint", func(c *FilterConfig) { v1(c).GetEndpoints()[0].Address = "localhost:20881" },
			`clusters[0].endpoints[0].address: want ip:port: ParseAddr("localhost")`},
		{"endpoint without port", func(c *FilterConfig) { v1(c).GetEndpoints()[1].Address = "127.0.0.1" },
			"clusters[0].endpoints[1].address: want ip:port"},
		{"IPv6 endpoint without brackets", func(c *FilterConfig) { v1(c).GetEndpoints()[1].Address = "::1:20881" },
			"clusters[0].endpoints[1].address: want ip:port"},
		{"endpoint port 0", func(c *FilterConfig) { v1(c).GetEndpoints()[0].Address = "127.0.0.1:0" },
			`clusters[0].endpoints[0].address: "127.0.0.1:0": port 0`},
		{"unspecified endpoint", func(c *FilterConfig) { v1(c).GetEndpoints()[0].Address = "0.0.0.0:20881" },
			`clusters[0].endpoints[0].address: "0.0.0.0:20881": unspecified address`},
		{"empty endpoint", func(c *FilterConfig) { v1(c).GetEndpoints()[0].Address = "" },
			"clusters[0].endpoints[0].address: want ip:port"},
		{"duplicate endpoint", func(c *FilterConfig) { v1(c).GetEndpoints()[1].Address = "127.0.0.1:20881" },
			`clusters[0].endpoints[1].address: duplicate endpoint "127.0.0.1:20881"`},
		{"empty label key", func(c *FilterConfig) { v1(c).GetEndpoints()[0].Labels[""] = "x" },
			"clusters[0].endpoints[0].labels: empty key"},
		{"cluster without name", func(c *FilterConfig) { c.GetClusters()[1].Name = "" },
			"clusters[1].name: required"},
		{"duplicate cluster", func(c *FilterConfig) { c.GetClusters()[1].Name = "echo-v1" },
			`clusters[1].name: duplicate cluster "echo-v1"`},
		{"hash policy without keys", func(c *FilterConfig) { c.GetClusters()[1].HashKeys = nil },
			"clusters[1].hash_keys: required with MAGLEV"},
		{"ring hash without keys", func(c *FilterConfig) { v1(c).LbPolicy = Cluster_RING_HASH },
			"clusters[0].hash_keys: required with RING_HASH"},
		{"hash keys without hash policy", func(c *FilterConfig) { v1(c).HashKeys = []string{"method"} },
			"clusters[0].hash_keys: only used by RING_HASH and MAGLEV, not LEAST_REQUEST"},
		{"empty hash key", func(c *FilterConfig) { c.GetClusters()[1].HashKeys = []string{"method", ""} },
			"clusters[1].hash_keys[1]: empty attribute name"},
		{"unknown lb policy number", func(c *FilterConfig) { v1(c).LbPolicy = 42 },
			"clusters[0].lb_policy: unknown policy 42"},
		{"zero connect timeout", func(c *FilterConfig) { v1(c).ConnectTimeout = durationpb.New(0) },
			"clusters[0].connect_timeout: must be positive"},
		{"negative connect timeout", func(c *FilterConfig) { v1(c).ConnectTimeout = durationpb.New(-1e9) },
			"clusters[0].connect_timeout: negative duration -1s"},

		{"mutation with empty key", func(c *FilterConfig) {
			routes(c)[0].GetRoute().GetRequestMutation().Set = append(routes(c)[0].GetRoute().GetRequestMutation().Set, &HeaderValue{Value: "v"})
		}, "route_config.routes[0].route.request_mutation.set[1].key: required"},
		{"mutation sets a key twice", func(c *FilterConfig) {
			m := routes(c)[0].GetRoute().GetResponseMutation()
			m.Set = append(m.Set, &HeaderValue{Key: "x-served-by", Value: "other"})
		}, `route_config.routes[0].route.response_mutation.set[1].key: header "x-served-by" set twice`},
		{"mutation removes an empty name", func(c *FilterConfig) {
			routes(c)[0].GetRoute().GetRequestMutation().Remove = []string{"debug", ""}
		}, "route_config.routes[0].route.request_mutation.remove[1]: empty header name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := proto.Clone(demo).(*FilterConfig)
			tt.mutate(cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted the config, want error %q", tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want it to start with %q", err, tt.wantErr)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(tt.wantErr, fe.Path+": ") {
				t.Errorf("error %v: want a *FieldError whose Path starts %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	cfg := mustDemo(t)
	cfg.Protocol = ""
	cfg.GetClusters()[0].GetEndpoints()[0].Address = "example.com:1"
	cfg.GetRouteConfig().GetRoutes()[2].Route = nil
	err := cfg.Validate()
	if err == nil {
		t.Fatal("Validate accepted the config")
	}
	var paths []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("%v is not a *FieldError", e)
		}
		paths = append(paths, fe.Path)
	}
	want := []string{"protocol", "clusters[0].endpoints[0].address", "route_config.routes[2].route"}
	if strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("paths %q, want %q", paths, want)
	}
}

func TestValidateNil(t *testing.T) {
	var cfg *FilterConfig
	if err := cfg.Validate(); err == nil {
		t.Error("nil FilterConfig validated")
	}
}

func TestRouteConfigurationValidate(t *testing.T) {
	rc := mustDemo(t).GetRouteConfig()
	if err := rc.Validate(nil); err != nil {
		t.Errorf("Validate(nil): %v", err)
	}
	if err := rc.Validate(map[string]bool{"echo-v1": true, "echo-v2": true}); err != nil {
		t.Errorf("Validate(both clusters): %v", err)
	}
	err := rc.Validate(map[string]bool{"echo-v1": true})
	want := `routes[0].route.cluster: unknown cluster "echo-v2"`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Validate(echo-v1 only) = %v, want %q first", err, want)
	}
}

func TestCompileRegexMatchesWholeValue(t *testing.T) {
	tests := []struct {
		expr, value string
		want        bool
	}{
		{"v2", "v2", true},
		{"v2", "v2-canary", false},
		{"v2", "xv2", false},
		{"v2.*", "v2-canary", true},
		{"a|b", "a", true},
		{"a|b", "ab", false}, // the alternation is anchored as a whole
		{"Echo(Async)?", "EchoAsync", true},
		{"", "", true},
		{"", "x", false},
	}
	for _, tt := range tests {
		re, err := CompileRegex(tt.expr)
		if err != nil {
			t.Fatalf("CompileRegex(%q): %v", tt.expr, err)
		}
		if got := re.MatchString(tt.value); got != tt.want {
			t.Errorf("CompileRegex(%q).MatchString(%q) = %v, want %v", tt.expr, tt.value, got, tt.want)
		}
	}
	if _, err := CompileRegex("a)(b"); err == nil || !strings.Contains(err.Error(), "`a)(b`") {
		t.Errorf("CompileRegex(a)(b) error = %v, want it to quote the expression", err)
	}
}
