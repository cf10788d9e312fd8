package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// MetaRouter routes the requests of a non-HTTP protocol sent to a host: it is the
// VirtualService of Dubbo, Thrift and the other protocols the plugin speaks.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Hosts",type=string,JSONPath=`.spec.hosts`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Programmed",type=string,JSONPath=`.status.conditions[?(@.type=="Programmed")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MetaRouter struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec MetaRouterSpec `json:"spec"`
	// +optional
	Status Status `json:"status,omitempty"`
}

// MetaRouterSpec is the routing of one host. Field names are Aeraki's.
type MetaRouterSpec struct {
	// Hosts are the service hostnames the routes apply to. As in Aeraki, only the first is
	// used; the others are accepted for compatibility.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=253
	Hosts []string `json:"hosts"`

	// Gateways are the gateways the routes apply to, "namespace/name"; none means the sidecars.
	// +optional
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	Gateways []string `json:"gateways,omitempty"`

	// ExportTo are the namespaces that see this MetaRouter: "." for its own, "*" for all.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MinLength=1
	// +kubebuilder:validation:items:MaxLength=63
	ExportTo []string `json:"exportTo,omitempty"`

	// Routes are tried in order; the first whose match holds routes the request.
	// +optional
	// +kubebuilder:validation:MaxItems=128
	Routes []MetaRoute `json:"routes,omitempty"`

	// LocalRateLimit limits requests per instance of the data plane.
	// +optional
	LocalRateLimit *LocalRateLimit `json:"localRateLimit,omitempty"`

	// GlobalRateLimit limits requests through an external rate limit service.
	// +optional
	GlobalRateLimit *GlobalRateLimit `json:"globalRateLimit,omitempty"`
}

// MetaRoute is one routing rule.
//
// +kubebuilder:validation:XValidation:rule="!has(self.mirrorPercentage) || has(self.mirror)",message="mirrorPercentage needs mirror"
type MetaRoute struct {
	// Name names the route in stats and logs.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name,omitempty"`

	// Match selects the requests; none matches every request.
	// +optional
	Match *MetaRouteMatch `json:"match,omitempty"`

	// Route are the destinations, picked by weight.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:XValidation:rule="self.size() <= 1 || self.map(d, has(d.weight) ? d.weight : 0).sum() == 100",message="weights must sum to 100 when there are several destinations"
	Route []MetaRouteDestination `json:"route"`

	// Mirror receives a copy of the requests; its responses are dropped.
	// +optional
	Mirror *Destination `json:"mirror,omitempty"`

	// MirrorPercentage is the share of requests mirrored; all when unset.
	// +optional
	MirrorPercentage *Percent `json:"mirrorPercentage,omitempty"`

	// RequestMutation sets attributes on the request before it is sent upstream.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	RequestMutation []KeyValue `json:"requestMutation,omitempty"`

	// ResponseMutation sets attributes on the response before it is sent downstream.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	ResponseMutation []KeyValue `json:"responseMutation,omitempty"`

	// Timeout bounds the time from sending the request upstream to receiving its whole
	// response, retries included; none means no limit. Not in Aeraki.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]{1,9}(\.[0-9]{1,9})?(h|m|s|ms|us|ns))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="timeout must be positive"
	Timeout *metav1.Duration `json:"timeout,omitempty"`

	// Retries retries failed requests. Not in Aeraki.
	// +optional
	Retries *RetryPolicy `json:"retries,omitempty"`
}

// MetaRouteMatch matches request attributes (the codec's metadata: interface, method,
// attachments, ...). All attributes must match.
type MetaRouteMatch struct {
	// Attributes maps an attribute name to how its value must match.
	// +optional
	// +kubebuilder:validation:MaxProperties=32
	// +kubebuilder:validation:XValidation:rule="self.all(k, size(k) > 0 && size(k) <= 256)",message="attribute names must be 1 to 256 characters"
	Attributes map[string]StringMatch `json:"attributes,omitempty"`
}

// StringMatch matches one attribute value. Exactly one of exact, prefix, regex and present is
// set. Present and invert are not in Aeraki.
//
// +kubebuilder:validation:XValidation:rule="[has(self.exact), has(self.prefix), has(self.regex), has(self.present)].filter(x, x).size() == 1",message="exactly one of exact, prefix, regex and present must be set"
type StringMatch struct {
	// Exact matches a value equal to it.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Exact *string `json:"exact,omitempty"`

	// Prefix matches a value starting with it.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Prefix *string `json:"prefix,omitempty"`

	// Regex matches a value wholly matched by this RE2 expression.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	Regex *string `json:"regex,omitempty"`

	// Present matches when the attribute is set (true) or not set (false), whatever its value.
	// +optional
	Present *bool `json:"present,omitempty"`

	// Invert negates the match.
	// +optional
	Invert bool `json:"invert,omitempty"`
}

// MetaRouteDestination is a destination and its share of the requests.
type MetaRouteDestination struct {
	// +required
	Destination Destination `json:"destination"`

	// Weight is the percentage of requests sent to this destination. Required, summing to
	// 100, when a route has several destinations.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Weight int32 `json:"weight,omitempty"`
}

// Destination is a service host, optionally narrowed to a subset and a port.
type Destination struct {
	// Host is the service hostname.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Host string `json:"host"`

	// Subset names a subset of the host's endpoints, defined by a DestinationRule.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Subset string `json:"subset,omitempty"`

	// Port is the destination port; needed only when the host has several.
	// +optional
	Port *PortSelector `json:"port,omitempty"`
}

// PortSelector selects a port by number.
type PortSelector struct {
	// +required
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Number int32 `json:"number"`
}

// Percent is a percentage, Istio's Percent message.
type Percent struct {
	// Value is between 0 and 100.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	Value float64 `json:"value"`
}

// KeyValue is an attribute to set.
type KeyValue struct {
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Key string `json:"key"`

	// +optional
	// +kubebuilder:validation:MaxLength=4096
	Value string `json:"value,omitempty"`
}

// RetryCondition names a failure after which a request may be retried.
//
// +kubebuilder:validation:Enum=connect-failure;reset;timeout
type RetryCondition string

// Retry conditions.
const (
	// RetryOnConnectFailure retries when no upstream connection could be made: the request
	// was never sent, so this is safe for any request.
	RetryOnConnectFailure RetryCondition = "connect-failure"
	// RetryOnReset retries when the upstream connection closed before the response.
	RetryOnReset RetryCondition = "reset"
	// RetryOnTimeout retries when an attempt exceeded perTryTimeout.
	RetryOnTimeout RetryCondition = "timeout"
)

// RetryPolicy retries failed requests on another endpoint.
//
// +kubebuilder:validation:XValidation:rule="!self.retryOn.exists(c, c == 'timeout') || has(self.perTryTimeout)",message="retryOn timeout needs perTryTimeout"
type RetryPolicy struct {
	// Attempts is the number of retries after the first try.
	// +required
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=10
	Attempts int32 `json:"attempts"`

	// PerTryTimeout bounds each attempt.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]{1,9}(\.[0-9]{1,9})?(h|m|s|ms|us|ns))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="perTryTimeout must be positive"
	PerTryTimeout *metav1.Duration `json:"perTryTimeout,omitempty"`

	// RetryOn are the failures that are retried; connect-failure when empty.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=3
	RetryOn []RetryCondition `json:"retryOn,omitempty"`
}

// LocalRateLimit is a token bucket per data-plane instance, with optional buckets for
// requests matching conditions.
type LocalRateLimit struct {
	// TokenBucket limits the requests no condition matches.
	// +optional
	TokenBucket *TokenBucket `json:"tokenBucket,omitempty"`

	// Conditions give matching requests their own bucket; the first that matches applies.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Conditions []LocalRateLimitCondition `json:"conditions,omitempty"`
}

// LocalRateLimitCondition is a bucket for the requests a match selects.
type LocalRateLimitCondition struct {
	// +required
	Match MetaRouteMatch `json:"match"`
	// +required
	TokenBucket TokenBucket `json:"tokenBucket"`
}

// TokenBucket holds up to maxTokens tokens and gains tokensPerFill every fillInterval; a
// request takes one or is rejected.
type TokenBucket struct {
	// +required
	// +kubebuilder:validation:Minimum=1
	MaxTokens int32 `json:"maxTokens"`

	// TokensPerFill defaults to 1.
	// +optional
	// +kubebuilder:validation:Minimum=1
	TokensPerFill int32 `json:"tokensPerFill,omitempty"`

	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]{1,9}(\.[0-9]{1,9})?(h|m|s|ms|us|ns))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1ms')",message="fillInterval must be at least 1ms"
	FillInterval metav1.Duration `json:"fillInterval"`
}

// GlobalRateLimit asks an Envoy rate limit service whether a request may pass.
type GlobalRateLimit struct {
	// Match selects the requests that are limited; none means all.
	// +optional
	Match *MetaRouteMatch `json:"match,omitempty"`

	// Domain is the rate limit service's domain.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	Domain string `json:"domain"`

	// RequestTimeout bounds the call to the rate limit service.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]{1,9}(\.[0-9]{1,9})?(h|m|s|ms|us|ns))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) > duration('0s')",message="requestTimeout must be positive"
	RequestTimeout *metav1.Duration `json:"requestTimeout,omitempty"`

	// DenyOnFail rejects requests when the rate limit service cannot be reached.
	// +optional
	DenyOnFail bool `json:"denyOnFail,omitempty"`

	// RateLimitService is the rate limit service's cluster: a host, or "outbound|port||host".
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=512
	RateLimitService string `json:"rateLimitService"`

	// Descriptors build the descriptor sent to the service from request attributes. At
	// least one: a rate limit service has nothing to count an empty descriptor by.
	// +required
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=16
	Descriptors []GlobalRateLimitDescriptor `json:"descriptors"`
}

// GlobalRateLimitDescriptor sends the value of a request attribute under a descriptor key.
type GlobalRateLimitDescriptor struct {
	// Property is the request attribute.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	Property string `json:"property"`

	// DescriptorKey is the key in the descriptor.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	DescriptorKey string `json:"descriptorKey"`
}

// MetaRouterList is a list of MetaRouter.
//
// +kubebuilder:object:root=true
type MetaRouterList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MetaRouter `json:"items"`
}
