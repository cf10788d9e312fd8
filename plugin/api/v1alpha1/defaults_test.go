package apiv1alpha1

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
)

func TestEffectiveDefaults(t *testing.T) {
	cfg := &FilterConfig{Protocol: "thrift"}
	cl := &Cluster{}
	ep := &Endpoint{}
	act := &RouteAction{}
	got := []any{
		cfg.EffectiveMaxFrameSize(), cfg.EffectiveStatPrefix(), cfg.EffectiveIdleTimeout(),
		cfg.EffectiveRouteTimeout(), act.EffectiveTimeout(cfg.EffectiveRouteTimeout()),
		cl.EffectiveConnectTimeout(), cl.EffectiveConnectionsPerEndpoint(),
		cl.EffectiveMaxPendingRequests(), cl.EffectiveMaxRequests(), cl.EffectiveMaxConnectAttempts(),
		ep.EffectiveWeight(),
	}
	want := []any{
		8 << 20, "thrift", time.Hour, 15 * time.Second, 15 * time.Second, 5 * time.Second, 1, 1024, 1024, 3, 1,
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("default %d = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestEffectiveSetValues(t *testing.T) {
	cfg := &FilterConfig{
		Protocol: "thrift", StatPrefix: "edge", MaxFrameSize: 1024,
		IdleTimeout: durationpb.New(0), RouteTimeout: durationpb.New(2 * time.Second),
	}
	cl := &Cluster{
		ConnectTimeout: durationpb.New(time.Second), ConnectionsPerEndpoint: 4,
		MaxPendingRequests: 10, MaxRequests: 20, MaxConnectAttempts: 1,
	}
	act := &RouteAction{Timeout: durationpb.New(0)}
	got := []any{
		cfg.EffectiveMaxFrameSize(), cfg.EffectiveStatPrefix(), cfg.EffectiveIdleTimeout(),
		cfg.EffectiveRouteTimeout(), act.EffectiveTimeout(cfg.EffectiveRouteTimeout()),
		cl.EffectiveConnectTimeout(), cl.EffectiveConnectionsPerEndpoint(),
		cl.EffectiveMaxPendingRequests(), cl.EffectiveMaxRequests(), cl.EffectiveMaxConnectAttempts(),
		(&Endpoint{Weight: 7}).EffectiveWeight(),
	}
	want := []any{
		1024, "edge", time.Duration(0), 2 * time.Second, time.Duration(0), time.Second, 4, 10, 20, 1, 7,
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("value %d = %v, want %v", i, got[i], want[i])
		}
	}
}
