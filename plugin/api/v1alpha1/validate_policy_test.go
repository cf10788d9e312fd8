package apiv1alpha1

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// policyConfig is the demo's route configuration with every rate limit, retry and mirror
// field set validly.
func policyConfig(t *testing.T) *RouteConfiguration {
	t.Helper()
	rc := proto.Clone(mustDemo(t).GetRouteConfig()).(*RouteConfiguration)
	rc.LocalRateLimit = &LocalRateLimit{
		TokenBucket: &TokenBucket{MaxTokens: 100, TokensPerFill: 10, FillInterval: durationpb.New(time.Second)},
		Conditions: []*LocalRateLimitCondition{{
			Match:       &RouteMatch{Attributes: []*AttributeMatcher{{Name: "method", MatchSpecifier: &AttributeMatcher_Exact{Exact: "Echo"}}}},
			TokenBucket: &TokenBucket{MaxTokens: 5, FillInterval: durationpb.New(time.Minute)},
		}},
	}
	rc.GlobalRateLimit = &GlobalRateLimit{
		Match:            &RouteMatch{Attributes: []*AttributeMatcher{{Name: "service", MatchSpecifier: &AttributeMatcher_Present{Present: true}}}},
		Domain:           "meltemi",
		RequestTimeout:   durationpb.New(50 * time.Millisecond),
		RateLimitService: "ratelimit",
		Descriptors:      []*RateLimitDescriptor{{Property: "method", DescriptorKey: "method"}, {Property: "x-tenant", DescriptorKey: "tenant"}},
	}
	a := rc.GetRoutes()[0].GetRoute()
	a.RetryPolicy = &RetryPolicy{RetryOn: []string{"connect-failure", "reset", "timeout"}, NumRetries: 2, PerTryTimeout: durationpb.New(time.Second)}
	a.RequestMirrorPolicies = []*RequestMirrorPolicy{
		{Cluster: "echo-v1", RuntimeFractionPercent: wrapperspb.Double(12.5)},
		{Cluster: "echo-v2"},
	}
	return rc
}

func TestValidatePolicies(t *testing.T) {
	known := map[string]bool{"echo-v1": true, "echo-v2": true}
	local := func(rc *RouteConfiguration) *LocalRateLimit { return rc.GetLocalRateLimit() }
	global := func(rc *RouteConfiguration) *GlobalRateLimit { return rc.GetGlobalRateLimit() }
	action := func(rc *RouteConfiguration) *RouteAction { return rc.GetRoutes()[0].GetRoute() }
	tests := []struct {
		name    string
		mutate  func(rc *RouteConfiguration)
		wantErr string
	}{
		{"all set", func(*RouteConfiguration) {}, ""},
		{"local limit with conditions only", func(rc *RouteConfiguration) { local(rc).TokenBucket = nil }, ""},
		{"retry_on empty means all", func(rc *RouteConfiguration) { action(rc).RetryPolicy.RetryOn = nil }, ""},
		{"mirror 0 and 100 percent", func(rc *RouteConfiguration) {
			action(rc).RequestMirrorPolicies[0].RuntimeFractionPercent = wrapperspb.Double(0)
			action(rc).RequestMirrorPolicies[1].RuntimeFractionPercent = wrapperspb.Double(100)
		}, ""},
		{"global limit without match or timeout", func(rc *RouteConfiguration) {
			global(rc).Match, global(rc).RequestTimeout = nil, nil
		}, ""},

		{"zero max_tokens", func(rc *RouteConfiguration) { local(rc).TokenBucket.MaxTokens = 0 },
			"local_rate_limit.token_bucket.max_tokens: must be positive"},
		{"no fill_interval", func(rc *RouteConfiguration) { local(rc).TokenBucket.FillInterval = nil },
			"local_rate_limit.token_bucket.fill_interval: required"},
		{"zero fill_interval", func(rc *RouteConfiguration) { local(rc).TokenBucket.FillInterval = durationpb.New(0) },
			"local_rate_limit.token_bucket.fill_interval: must be positive"},
		{"negative fill_interval", func(rc *RouteConfiguration) { local(rc).TokenBucket.FillInterval = durationpb.New(-time.Second) },
			"local_rate_limit.token_bucket.fill_interval: negative duration -1s"},
		{"condition without match", func(rc *RouteConfiguration) { local(rc).Conditions[0].Match = nil },
			"local_rate_limit.conditions[0].match: required"},
		{"condition with a bad matcher", func(rc *RouteConfiguration) {
			local(rc).Conditions[0].Match.Attributes[0].MatchSpecifier = &AttributeMatcher_Regex{Regex: "("}
		}, "local_rate_limit.conditions[0].match.attributes[0].regex: error parsing regexp"},
		{"condition without bucket", func(rc *RouteConfiguration) { local(rc).Conditions[0].TokenBucket = nil },
			"local_rate_limit.conditions[0].token_bucket: required"},
		{"condition bucket without tokens", func(rc *RouteConfiguration) { local(rc).Conditions[0].TokenBucket.MaxTokens = 0 },
			"local_rate_limit.conditions[0].token_bucket.max_tokens: must be positive"},

		{"global without domain", func(rc *RouteConfiguration) { global(rc).Domain = "" },
			"global_rate_limit.domain: required"},
		{"global without service", func(rc *RouteConfiguration) { global(rc).RateLimitService = "" },
			"global_rate_limit.rate_limit_service: required"},
		{"global without descriptors", func(rc *RouteConfiguration) { global(rc).Descriptors = nil },
			"global_rate_limit.descriptors: at least one descriptor is required"},
		{"descriptor without property", func(rc *RouteConfiguration) { global(rc).Descriptors[1].Property = "" },
			"global_rate_limit.descriptors[1].property: required"},
		{"descriptor without key", func(rc *RouteConfiguration) { global(rc).Descriptors[0].DescriptorKey = "" },
			"global_rate_limit.descriptors[0].descriptor_key: required"},
		{"descriptor key twice", func(rc *RouteConfiguration) { global(rc).Descriptors[1].DescriptorKey = "method" },
			`global_rate_limit.descriptors[1].descriptor_key: descriptor key "method" used twice`},
		{"global zero timeout", func(rc *RouteConfiguration) { global(rc).RequestTimeout = durationpb.New(0) },
			"global_rate_limit.request_timeout: must be positive"},
		{"global bad match", func(rc *RouteConfiguration) { global(rc).Match.Attributes[0].Name = "" },
			"global_rate_limit.match.attributes[0].name: required"},

		{"zero retries", func(rc *RouteConfiguration) { action(rc).RetryPolicy.NumRetries = 0 },
			"routes[0].route.retry_policy.num_retries: must be positive"},
		{"unknown retry_on", func(rc *RouteConfiguration) { action(rc).RetryPolicy.RetryOn[1] = "5xx" },
			`routes[0].route.retry_policy.retry_on[1]: unknown condition "5xx"`},
		{"retry_on twice", func(rc *RouteConfiguration) { action(rc).RetryPolicy.RetryOn[2] = "reset" },
			`routes[0].route.retry_policy.retry_on[2]: "reset" listed twice`},
		{"zero per_try_timeout", func(rc *RouteConfiguration) { action(rc).RetryPolicy.PerTryTimeout = durationpb.New(0) },
			"routes[0].route.retry_policy.per_try_timeout: must be positive"},
		{"negative per_try_timeout", func(rc *RouteConfiguration) { action(rc).RetryPolicy.PerTryTimeout = durationpb.New(-1) },
			"routes[0].route.retry_policy.per_try_timeout: negative duration"},

		{"mirror to an unknown cluster", func(rc *RouteConfiguration) { action(rc).RequestMirrorPolicies[1].Cluster = "shadow" },
			`routes[0].route.request_mirror_policies[1].cluster: unknown cluster "shadow"`},
		{"mirror without cluster", func(rc *RouteConfiguration) { action(rc).RequestMirrorPolicies[0].Cluster = "" },
			"routes[0].route.request_mirror_policies[0].cluster: required"},
		{"mirror over 100 percent", func(rc *RouteConfiguration) {
			action(rc).RequestMirrorPolicies[0].RuntimeFractionPercent = wrapperspb.Double(100.5)
		}, "routes[0].route.request_mirror_policies[0].runtime_fraction_percent: 100.5: want 0 to 100"},
		{"mirror negative percent", func(rc *RouteConfiguration) {
			action(rc).RequestMirrorPolicies[0].RuntimeFractionPercent = wrapperspb.Double(-1)
		}, "routes[0].route.request_mirror_policies[0].runtime_fraction_percent: -1: want 0 to 100"},
		{"mirror NaN percent", func(rc *RouteConfiguration) {
			action(rc).RequestMirrorPolicies[0].RuntimeFractionPercent = wrapperspb.Double(math.NaN())
		}, "routes[0].route.request_mirror_policies[0].runtime_fraction_percent: NaN: want 0 to 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := policyConfig(t)
			tt.mutate(rc)
			err := rc.Validate(known)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want it to start with %q", err, tt.wantErr)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !strings.HasPrefix(tt.wantErr, fe.Path+": ") {
				t.Errorf("error %v: want a *FieldError whose Path starts %q", err, tt.wantErr)
			}
		})
	}
}

// Inside a FilterConfig the paths carry the route_config prefix.
func TestValidatePoliciesInFilterConfig(t *testing.T) {
	cfg := mustDemo(t)
	rc := policyConfig(t)
	rc.GetLocalRateLimit().TokenBucket.MaxTokens = 0
	cfg.RouteSpecifier = &FilterConfig_RouteConfig{RouteConfig: rc}
	want := "route_config.local_rate_limit.token_bucket.max_tokens: must be positive"
	if err := cfg.Validate(); err == nil || err.Error() != want {
		t.Fatalf("Validate = %v, want %q", err, want)
	}
}

func TestEffectivePolicyDefaults(t *testing.T) {
	if n := (&TokenBucket{}).EffectiveTokensPerFill(); n != 1 {
		t.Errorf("tokens_per_fill default %d, want 1", n)
	}
	if n := (&TokenBucket{TokensPerFill: 7}).EffectiveTokensPerFill(); n != 7 {
		t.Errorf("tokens_per_fill %d, want 7", n)
	}
	if d := (&GlobalRateLimit{}).EffectiveRequestTimeout(); d != 20*time.Millisecond {
		t.Errorf("rate limit timeout default %v, want 20ms", d)
	}
	if d := (&GlobalRateLimit{RequestTimeout: durationpb.New(time.Second)}).EffectiveRequestTimeout(); d != time.Second {
		t.Errorf("rate limit timeout %v, want 1s", d)
	}
	if on := (&RetryPolicy{}).EffectiveRetryOn(); strings.Join(on, ",") != "connect-failure,reset,timeout" {
		t.Errorf("retry_on default %v", on)
	}
	if on := (&RetryPolicy{RetryOn: []string{"reset"}}).EffectiveRetryOn(); strings.Join(on, ",") != "reset" {
		t.Errorf("retry_on %v", on)
	}
	if p := (&RequestMirrorPolicy{}).EffectivePercent(); p != 100 {
		t.Errorf("mirror percent default %v, want 100", p)
	}
	if p := (&RequestMirrorPolicy{RuntimeFractionPercent: wrapperspb.Double(0)}).EffectivePercent(); p != 0 {
		t.Errorf("mirror percent %v, want 0", p)
	}
}
