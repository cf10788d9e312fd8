package model

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// buildDestinationRules attaches each DestinationRule to the service its host names (exact
// match after making it fully qualified relative to the rule's namespace; a rule for a host
// that is no Meltemi service is none of Meltemi's business and ignored). Of two rules for
// one host the oldest wins.
//
// Policies are merged as Istio merges them: portLevelSettings for a port replace the
// top-level load balancer, connection pool and outlier detection; a subset's sections
// replace the service's; a subset's portLevelSettings replace everything for their port.
// What has no meaning for a Meltemi cluster (tls, tunnel, proxyProtocol, warmup,
// localityLbSetting, exportTo, workloadSelector, HTTP keepalive and idle settings) is
// ignored without a problem: mesh-wide rules set them for HTTP services.
func (b *builder) buildDestinationRules() {
	if len(b.in.DestinationRules) == 0 {
		return
	}
	owner := make(map[string]ObjectRef)
	for _, dr := range sortedCopy(b.in.DestinationRules, func(x, y *networkingv1.DestinationRule) int {
		return olderFirst(&x.ObjectMeta, &y.ObjectMeta)
	}) {
		ref := b.ref(GroupIstio, KindDestinationRule, &dr.ObjectMeta)
		if strings.Contains(dr.Spec.Host, "*") {
			b.notAccepted(ref, ReasonUnsupportedValue, "wildcard host %q: Meltemi applies DestinationRules to exact hosts only", dr.Spec.Host)
			continue
		}
		host := b.fqdn(dr.Spec.Host, dr.Namespace)
		svc := b.services[host]
		if svc == nil {
			continue
		}
		if w, ok := owner[host]; ok {
			b.notAccepted(ref, ReasonConflicted, "host %q already has the older DestinationRule %s", host, w)
			continue
		}
		owner[host] = ref
		b.applyDestinationRule(svc, ref, &dr.Spec)
	}
}

func (b *builder) applyDestinationRule(svc *Service, ref ObjectRef, dr *networkingapi.DestinationRule) {
	r := ref
	svc.DestinationRule = &r
	c := policyConverter{b: b, ref: ref}

	top := c.sections(dr.TrafficPolicy, "spec.trafficPolicy")
	topPorts := c.portSections(svc, dr.TrafficPolicy, "spec.trafficPolicy")
	svc.TrafficPolicy = top.policy()
	for _, p := range svc.Ports {
		if s, ok := topPorts[p.Number]; ok {
			p.TrafficPolicy = s.policy()
			if p.TrafficPolicy == nil {
				// Port-level settings that set nothing mean defaults, not the
				// service's policy.
				p.TrafficPolicy = &TrafficPolicy{}
			}
		}
	}

	seen := make(map[string]bool, len(dr.Subsets))
	for i, ss := range dr.Subsets {
		if ss.Name == "" || seen[ss.Name] {
			b.notAccepted(ref, ReasonInvalid, "spec.subsets[%d]: subset name %q is empty or repeated", i, ss.Name)
			continue
		}
		seen[ss.Name] = true
		subset := Subset{Name: ss.Name, Labels: ss.Labels}
		if ss.TrafficPolicy != nil {
			path := "spec.subsets[" + ss.Name + "].trafficPolicy"
			own := c.sections(ss.TrafficPolicy, path)
			ownPorts := c.portSections(svc, ss.TrafficPolicy, path)
			subset.TrafficPolicy = top.override(own).policy()
			for _, p := range svc.Ports {
				base, dp := topPorts[p.Number]
				sp, sok := ownPorts[p.Number]
				var tp *TrafficPolicy
				switch {
				case sok:
					tp = sp.policy()
				case dp:
					tp = base.override(own).policy()
				default:
					continue
				}
				if tp == nil {
					tp = &TrafficPolicy{}
				}
				if subset.PortTrafficPolicies == nil {
					subset.PortTrafficPolicies = make(map[uint32]*TrafficPolicy)
				}
				subset.PortTrafficPolicies[p.Number] = tp
			}
		}
		svc.Subsets = append(svc.Subsets, subset)
	}
	slices.SortFunc(svc.Subsets, func(x, y Subset) int { return strings.Compare(x.Name, y.Name) })
}

// policySections is a traffic policy's sections Meltemi uses, converted; nil means the
// section is unset (and is inherited when merging).
type policySections struct {
	lb *lbSection
	cp *cpSection
	od *OutlierDetection
}

type lbSection struct {
	lb              LBPolicy
	hashKeys        []string
	ringMinSize     uint64
	maglevTableSize uint64
}

type cpSection struct {
	connectTimeout                    time.Duration
	maxConnections, maxPending, maxRq uint32
	maxRetries                        uint32
}

// override returns s with the sections o sets replaced.
func (s policySections) override(o policySections) policySections {
	if o.lb != nil {
		s.lb = o.lb
	}
	if o.cp != nil {
		s.cp = o.cp
	}
	if o.od != nil {
		s.od = o.od
	}
	return s
}

// policy is the model's policy for the sections; nil when none is set.
func (s policySections) policy() *TrafficPolicy {
	if s.lb == nil && s.cp == nil && s.od == nil {
		return nil
	}
	tp := &TrafficPolicy{}
	if s.lb != nil {
		tp.LB, tp.HashKeys, tp.RingMinSize, tp.MaglevTableSize = s.lb.lb, s.lb.hashKeys, s.lb.ringMinSize, s.lb.maglevTableSize
	}
	if s.cp != nil {
		tp.ConnectTimeout, tp.MaxConnections, tp.MaxPendingRequests, tp.MaxRequests, tp.MaxRetries =
			s.cp.connectTimeout, s.cp.maxConnections, s.cp.maxPending, s.cp.maxRq, s.cp.maxRetries
	}
	if s.od != nil {
		od := *s.od
		tp.OutlierDetection = &od
	}
	return tp
}

// policyConverter converts Istio traffic policies, reporting what it cannot convert on the
// DestinationRule.
type policyConverter struct {
	b   *builder
	ref ObjectRef
}

func (c policyConverter) unsupported(path, format string, args ...any) {
	c.b.notAccepted(c.ref, ReasonUnsupportedValue, path+": "+format, args...)
}

func (c policyConverter) sections(tp *networkingapi.TrafficPolicy, path string) policySections {
	if tp == nil {
		return policySections{}
	}
	return policySections{
		lb: c.loadBalancer(tp.LoadBalancer, path+".loadBalancer"),
		cp: c.connectionPool(tp.ConnectionPool, path+".connectionPool"),
		od: c.outlierDetection(tp.OutlierDetection, path+".outlierDetection"),
	}
}

// portSections converts the portLevelSettings for the service's Meltemi ports; settings for
// other ports are for other protocols and ignored.
func (c policyConverter) portSections(svc *Service, tp *networkingapi.TrafficPolicy, path string) map[uint32]policySections {
	if tp == nil || len(tp.PortLevelSettings) == 0 {
		return nil
	}
	var out map[uint32]policySections
	for i, pl := range tp.PortLevelSettings {
		if pl.Port == nil || pl.Port.Number == 0 {
			c.b.notAccepted(c.ref, ReasonInvalid, "%s.portLevelSettings[%d]: no port number", path, i)
			continue
		}
		n := pl.Port.Number
		if svc.Port(n) == nil {
			continue
		}
		if _, dup := out[n]; dup {
			continue // Istio uses the first
		}
		if out == nil {
			out = make(map[uint32]policySections)
		}
		p := path + ".portLevelSettings[" + itoa(n) + "]"
		out[n] = policySections{
			lb: c.loadBalancer(pl.LoadBalancer, p+".loadBalancer"),
			cp: c.connectionPool(pl.ConnectionPool, p+".connectionPool"),
			od: c.outlierDetection(pl.OutlierDetection, p+".outlierDetection"),
		}
	}
	return out
}

func (c policyConverter) loadBalancer(lb *networkingapi.LoadBalancerSettings, path string) *lbSection {
	if lb == nil {
		return nil
	}
	s := &lbSection{}
	switch p := lb.LbPolicy.(type) {
	case *networkingapi.LoadBalancerSettings_Simple:
		switch p.Simple {
		case networkingapi.LoadBalancerSettings_UNSPECIFIED:
		case networkingapi.LoadBalancerSettings_ROUND_ROBIN:
			s.lb = LBRoundRobin
		//lint:ignore SA1019 LEAST_CONN is deprecated by Istio, still honoured as Istio does
		case networkingapi.LoadBalancerSettings_LEAST_REQUEST, networkingapi.LoadBalancerSettings_LEAST_CONN:
			s.lb = LBLeastRequest
		case networkingapi.LoadBalancerSettings_RANDOM:
			s.lb = LBRandom
		default:
			c.unsupported(path, "simple %s is not supported; the default is used", p.Simple)
		}
	case *networkingapi.LoadBalancerSettings_ConsistentHash:
		ch := p.ConsistentHash
		if ch == nil {
			break
		}
		switch k := ch.HashKey.(type) {
		case *networkingapi.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName:
			if k.HttpHeaderName == "" {
				c.unsupported(path, "consistentHash.httpHeaderName is empty; the default policy is used")
				return s
			}
			s.hashKeys = []string{k.HttpHeaderName}
		case *networkingapi.LoadBalancerSettings_ConsistentHashLB_HttpCookie:
			c.unsupported(path, "consistentHash.httpCookie is not supported (no cookies in RPC protocols); use httpHeaderName to name a request attribute")
			return s
		case *networkingapi.LoadBalancerSettings_ConsistentHashLB_UseSourceIp:
			c.unsupported(path, "consistentHash.useSourceIp is not supported; use httpHeaderName to name a request attribute")
			return s
		case *networkingapi.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName:
			c.unsupported(path, "consistentHash.httpQueryParameterName is not supported; use httpHeaderName to name a request attribute")
			return s
		default:
			c.unsupported(path, "consistentHash needs httpHeaderName, the request attribute to hash")
			return s
		}
		s.lb = LBRingHash
		//lint:ignore SA1019 deprecated by Istio, still honoured as Istio does
		s.ringMinSize = ch.MinimumRingSize
		switch a := ch.HashAlgorithm.(type) {
		case *networkingapi.LoadBalancerSettings_ConsistentHashLB_RingHash_:
			if a.RingHash != nil && a.RingHash.MinimumRingSize != 0 {
				s.ringMinSize = a.RingHash.MinimumRingSize
			}
		case *networkingapi.LoadBalancerSettings_ConsistentHashLB_Maglev:
			s.lb = LBMaglev
			s.ringMinSize = 0
			if a.Maglev != nil {
				s.maglevTableSize = a.Maglev.TableSize
			}
		}
	}
	return s
}

func (c policyConverter) connectionPool(cp *networkingapi.ConnectionPoolSettings, path string) *cpSection {
	if cp == nil {
		return nil
	}
	s := &cpSection{}
	if t := cp.Tcp; t != nil {
		s.maxConnections = c.count(t.MaxConnections, path+".tcp.maxConnections")
		s.connectTimeout = c.duration(t.ConnectTimeout, path+".tcp.connectTimeout")
	}
	if h := cp.Http; h != nil {
		s.maxPending = c.count(h.Http1MaxPendingRequests, path+".http.http1MaxPendingRequests")
		s.maxRq = c.count(h.Http2MaxRequests, path+".http.http2MaxRequests")
		s.maxRetries = c.count(h.MaxRetries, path+".http.maxRetries")
	}
	return s
}

func (c policyConverter) outlierDetection(od *networkingapi.OutlierDetection, path string) *OutlierDetection {
	if od == nil {
		return nil
	}
	//lint:ignore SA1019 deprecated by Istio, still honoured as Istio does
	consecutiveErrors := od.ConsecutiveErrors
	o := &OutlierDetection{
		ConsecutiveErrors:  c.count(consecutiveErrors, path+".consecutiveErrors"),
		Interval:           c.duration(od.Interval, path+".interval"),
		BaseEjectionTime:   c.duration(od.BaseEjectionTime, path+".baseEjectionTime"),
		MaxEjectionPercent: c.percent(od.MaxEjectionPercent, path+".maxEjectionPercent"),
		MinHealthPercent:   c.percent(od.MinHealthPercent, path+".minHealthPercent"),
		SplitExternalLocal: od.SplitExternalLocalOriginErrors,
	}
	if v := od.Consecutive_5XxErrors; v != nil {
		o.ConsecutiveErrors = v.Value
	}
	if v := od.ConsecutiveGatewayErrors; v != nil {
		o.ConsecutiveGateway = v.Value
	}
	if v := od.ConsecutiveLocalOriginFailures; v != nil {
		o.ConsecutiveLocalErr = v.Value
	}
	return o
}

func (c policyConverter) count(v int32, path string) uint32 {
	if v < 0 {
		c.unsupported(path, "negative value %d; the default is used", v)
		return 0
	}
	return uint32(v)
}

func (c policyConverter) percent(v int32, path string) uint32 {
	if v < 0 || v > 100 {
		c.unsupported(path, "%d is not a percentage; the default is used", v)
		return 0
	}
	return uint32(v)
}

func (c policyConverter) duration(d *durationpb.Duration, path string) time.Duration {
	if d == nil {
		return 0
	}
	if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
		c.unsupported(path, "invalid duration %v; the default is used", d)
		return 0
	}
	return d.AsDuration()
}

func itoa(n uint32) string {
	return strconv.FormatUint(uint64(n), 10)
}
