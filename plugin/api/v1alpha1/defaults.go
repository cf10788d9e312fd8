package apiv1alpha1

import "time"

// Defaults of the fields whose zero value means "the default", as documented in the .proto
// files. The Effective* methods apply them, so that the engine and the documentation cannot
// disagree.
const (
	DefaultMaxFrameSize           = 8 << 20
	DefaultIdleTimeout            = time.Hour
	DefaultRouteTimeout           = 15 * time.Second
	DefaultConnectTimeout         = 5 * time.Second
	DefaultConnectionsPerEndpoint = 1
	DefaultMaxPendingRequests     = 1024
	DefaultMaxRequests            = 1024
	DefaultMaxConnectAttempts     = 3
	DefaultEndpointWeight         = 1
	DefaultTokensPerFill          = 1
	// DefaultRateLimitTimeout is how long the rate limit service is waited for (Envoy's
	// ratelimit filter default).
	DefaultRateLimitTimeout = 20 * time.Millisecond
	DefaultMirrorPercent    = 100.0
)

// EffectiveMaxFrameSize returns max_frame_size in bytes, with the default applied.
func (c *FilterConfig) EffectiveMaxFrameSize() int {
	if n := c.GetMaxFrameSize(); n != 0 {
		return int(n)
	}
	return DefaultMaxFrameSize
}

// EffectiveStatPrefix returns stat_prefix, or the protocol name when it is empty.
func (c *FilterConfig) EffectiveStatPrefix() string {
	if p := c.GetStatPrefix(); p != "" {
		return p
	}
	return c.GetProtocol()
}

// EffectiveIdleTimeout returns the downstream idle timeout; 0 means none.
func (c *FilterConfig) EffectiveIdleTimeout() time.Duration {
	if d := c.GetIdleTimeout(); d != nil {
		return d.AsDuration()
	}
	return DefaultIdleTimeout
}

// EffectiveRouteTimeout returns the timeout of routes that set none; 0 means none.
func (c *FilterConfig) EffectiveRouteTimeout() time.Duration {
	if d := c.GetRouteTimeout(); d != nil {
		return d.AsDuration()
	}
	return DefaultRouteTimeout
}

// EffectiveTimeout returns the route's timeout, or filterDefault (normally
// FilterConfig.EffectiveRouteTimeout) when the route sets none; 0 means none.
func (a *RouteAction) EffectiveTimeout(filterDefault time.Duration) time.Duration {
	if d := a.GetTimeout(); d != nil {
		return d.AsDuration()
	}
	return filterDefault
}

// EffectiveConnectTimeout returns connect_timeout with the default applied.
func (c *Cluster) EffectiveConnectTimeout() time.Duration {
	if d := c.GetConnectTimeout(); d != nil && d.AsDuration() > 0 {
		return d.AsDuration()
	}
	return DefaultConnectTimeout
}

// EffectiveConnectionsPerEndpoint returns connections_per_endpoint with the default applied.
func (c *Cluster) EffectiveConnectionsPerEndpoint() int {
	return orDefault(c.GetConnectionsPerEndpoint(), DefaultConnectionsPerEndpoint)
}

// EffectiveMaxPendingRequests returns max_pending_requests with the default applied.
func (c *Cluster) EffectiveMaxPendingRequests() int {
	return orDefault(c.GetMaxPendingRequests(), DefaultMaxPendingRequests)
}

// EffectiveMaxRequests returns max_requests with the default applied.
func (c *Cluster) EffectiveMaxRequests() int {
	return orDefault(c.GetMaxRequests(), DefaultMaxRequests)
}

// EffectiveMaxConnectAttempts returns max_connect_attempts with the default applied.
func (c *Cluster) EffectiveMaxConnectAttempts() int {
	return orDefault(c.GetMaxConnectAttempts(), DefaultMaxConnectAttempts)
}

// EffectiveWeight returns the endpoint's weight with the default applied.
func (e *Endpoint) EffectiveWeight() int {
	return orDefault(e.GetWeight(), DefaultEndpointWeight)
}

func orDefault(v uint32, def int) int {
	if v == 0 {
		return def
	}
	return int(v)
}

// EffectiveTokensPerFill returns tokens_per_fill with the default applied.
func (b *TokenBucket) EffectiveTokensPerFill() int {
	return orDefault(b.GetTokensPerFill(), DefaultTokensPerFill)
}

// EffectiveRequestTimeout returns how long the rate limit service is waited for.
func (g *GlobalRateLimit) EffectiveRequestTimeout() time.Duration {
	if d := g.GetRequestTimeout(); d != nil && d.AsDuration() > 0 {
		return d.AsDuration()
	}
	return DefaultRateLimitTimeout
}

// EffectiveRetryOn returns the retry conditions: all of them when none is listed.
func (r *RetryPolicy) EffectiveRetryOn() []string {
	if on := r.GetRetryOn(); len(on) > 0 {
		return on
	}
	return []string{RetryOnConnectFailure, RetryOnReset, RetryOnTimeout}
}

// EffectivePercent returns the share of requests mirrored, in percent.
func (m *RequestMirrorPolicy) EffectivePercent() float64 {
	if f := m.GetRuntimeFractionPercent(); f != nil {
		return f.GetValue()
	}
	return DefaultMirrorPercent
}
