package model

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
)

func simpleLB(lb networkingapi.LoadBalancerSettings_SimpleLB) *networkingapi.TrafficPolicy {
	return &networkingapi.TrafficPolicy{LoadBalancer: &networkingapi.LoadBalancerSettings{
		LbPolicy: &networkingapi.LoadBalancerSettings_Simple{Simple: lb},
	}}
}

func hashLB(ch *networkingapi.LoadBalancerSettings_ConsistentHashLB) *networkingapi.TrafficPolicy {
	return &networkingapi.TrafficPolicy{LoadBalancer: &networkingapi.LoadBalancerSettings{
		LbPolicy: &networkingapi.LoadBalancerSettings_ConsistentHash{ConsistentHash: ch},
	}}
}

func header(name string) *networkingapi.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName {
	return &networkingapi.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: name}
}

func TestDestinationRulePolicies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tp      *networkingapi.TrafficPolicy
		want    *TrafficPolicy
		problem string // the reason, if any
	}{
		{name: "none", tp: nil, want: nil},
		{name: "round robin", tp: simpleLB(networkingapi.LoadBalancerSettings_ROUND_ROBIN), want: &TrafficPolicy{LB: LBRoundRobin}},
		{name: "least request", tp: simpleLB(networkingapi.LoadBalancerSettings_LEAST_REQUEST), want: &TrafficPolicy{LB: LBLeastRequest}},
		//lint:ignore SA1019 the deprecated value is still honoured
		{name: "least conn", tp: simpleLB(networkingapi.LoadBalancerSettings_LEAST_CONN), want: &TrafficPolicy{LB: LBLeastRequest}},
		{name: "random", tp: simpleLB(networkingapi.LoadBalancerSettings_RANDOM), want: &TrafficPolicy{LB: LBRandom}},
		{name: "unspecified", tp: simpleLB(networkingapi.LoadBalancerSettings_UNSPECIFIED), want: &TrafficPolicy{}},
		{name: "passthrough", tp: simpleLB(networkingapi.LoadBalancerSettings_PASSTHROUGH), want: &TrafficPolicy{}, problem: "UnsupportedValue"},
		{
			name: "ring hash on an attribute",
			tp: hashLB(&networkingapi.LoadBalancerSettings_ConsistentHashLB{HashKey: header("method"),
				HashAlgorithm: &networkingapi.LoadBalancerSettings_ConsistentHashLB_RingHash_{RingHash: &networkingapi.LoadBalancerSettings_ConsistentHashLB_RingHash{MinimumRingSize: 2048}}}),
			want: &TrafficPolicy{LB: LBRingHash, HashKeys: []string{"method"}, RingMinSize: 2048},
		},
		{
			name: "ring hash, deprecated minimumRingSize",
			//lint:ignore SA1019 the deprecated field is still honoured
			tp:   hashLB(&networkingapi.LoadBalancerSettings_ConsistentHashLB{HashKey: header("x-user"), MinimumRingSize: 512}),
			want: &TrafficPolicy{LB: LBRingHash, HashKeys: []string{"x-user"}, RingMinSize: 512},
		},
		{
			name: "maglev",
			//lint:ignore SA1019 the deprecated ring size must not leak into a maglev policy
			tp: hashLB(&networkingapi.LoadBalancerSettings_ConsistentHashLB{HashKey: header("service"), MinimumRingSize: 1024,
				HashAlgorithm: &networkingapi.LoadBalancerSettings_ConsistentHashLB_Maglev{Maglev: &networkingapi.LoadBalancerSettings_ConsistentHashLB_MagLev{TableSize: 65537}}}),
			want: &TrafficPolicy{LB: LBMaglev, HashKeys: []string{"service"}, MaglevTableSize: 65537},
		},
		{
			name:    "cookie",
			tp:      hashLB(&networkingapi.LoadBalancerSettings_ConsistentHashLB{HashKey: &networkingapi.LoadBalancerSettings_ConsistentHashLB_HttpCookie{HttpCookie: &networkingapi.LoadBalancerSettings_ConsistentHashLB_HTTPCookie{Name: "c"}}}),
			want:    &TrafficPolicy{},
			problem: "UnsupportedValue",
		},
		{
			name:    "source ip",
			tp:      hashLB(&networkingapi.LoadBalancerSettings_ConsistentHashLB{HashKey: &networkingapi.LoadBalancerSettings_ConsistentHashLB_UseSourceIp{UseSourceIp: true}}),
			want:    &TrafficPolicy{},
			problem: "UnsupportedValue",
		},
		{
			name:    "query parameter",
			tp:      hashLB(&networkingapi.LoadBalancerSettings_ConsistentHashLB{HashKey: &networkingapi.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName{HttpQueryParameterName: "q"}}),
			want:    &TrafficPolicy{},
			problem: "UnsupportedValue",
		},
		{
			name: "connection pool",
			tp: &networkingapi.TrafficPolicy{ConnectionPool: &networkingapi.ConnectionPoolSettings{
				Tcp:  &networkingapi.ConnectionPoolSettings_TCPSettings{MaxConnections: 7, ConnectTimeout: durationpb.New(250 * time.Millisecond)},
				Http: &networkingapi.ConnectionPoolSettings_HTTPSettings{Http1MaxPendingRequests: 100, Http2MaxRequests: 1000, MaxRetries: 3},
			}},
			want: &TrafficPolicy{MaxConnections: 7, ConnectTimeout: 250 * time.Millisecond, MaxPendingRequests: 100, MaxRequests: 1000, MaxRetries: 3},
		},
		{
			name: "negative limit",
			tp: &networkingapi.TrafficPolicy{ConnectionPool: &networkingapi.ConnectionPoolSettings{
				Tcp: &networkingapi.ConnectionPoolSettings_TCPSettings{MaxConnections: -1},
			}},
			want:    &TrafficPolicy{},
			problem: "UnsupportedValue",
		},
		{
			name: "outlier detection",
			tp: &networkingapi.TrafficPolicy{OutlierDetection: &networkingapi.OutlierDetection{
				Consecutive_5XxErrors:          wrapperspb.UInt32(5),
				ConsecutiveGatewayErrors:       wrapperspb.UInt32(3),
				Interval:                       durationpb.New(10 * time.Second),
				BaseEjectionTime:               durationpb.New(30 * time.Second),
				MaxEjectionPercent:             50,
				MinHealthPercent:               20,
				SplitExternalLocalOriginErrors: true,
				ConsecutiveLocalOriginFailures: wrapperspb.UInt32(4),
			}},
			want: &TrafficPolicy{OutlierDetection: &OutlierDetection{
				ConsecutiveErrors: 5, ConsecutiveGateway: 3, Interval: 10 * time.Second, BaseEjectionTime: 30 * time.Second,
				MaxEjectionPercent: 50, MinHealthPercent: 20, SplitExternalLocal: true, ConsecutiveLocalErr: 4,
			}},
		},
		{
			name: "outlier detection, deprecated consecutiveErrors",
			//lint:ignore SA1019 the deprecated field is still honoured
			tp:   &networkingapi.TrafficPolicy{OutlierDetection: &networkingapi.OutlierDetection{ConsecutiveErrors: 9}},
			want: &TrafficPolicy{OutlierDetection: &OutlierDetection{ConsecutiveErrors: 9}},
		},
		{
			name:    "outlier detection, bad percentage",
			tp:      &networkingapi.TrafficPolicy{OutlierDetection: &networkingapi.OutlierDetection{MaxEjectionPercent: 101}},
			want:    &TrafficPolicy{OutlierDetection: &OutlierDetection{}},
			problem: "UnsupportedValue",
		},
		{
			name: "tls only: nothing for Meltemi",
			tp:   &networkingapi.TrafficPolicy{Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_ISTIO_MUTUAL}},
			want: nil,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Build(&Inputs{
				Services:         []*corev1.Service{kubeService("ns", "svc", svcPort("tcp-dubbo", 20880))},
				DestinationRules: []*networkingv1.DestinationRule{destinationRule("ns", "dr", 0, "svc", tc.tp)},
			})
			s := mustService(t, m, "svc.ns.svc.cluster.local")
			mustEqual(t, "policy", s.TrafficPolicy, tc.want)
			mustEqual(t, "destination rule", s.DestinationRule, ptr(ref(GroupIstio, "DestinationRule", "ns", "dr")))
			var want []string
			if tc.problem != "" {
				want = []string{"DestinationRule/dr Accepted " + tc.problem}
			}
			got := reasons(m.Problems)
			if len(want) == 0 && len(got) == 0 {
				return
			}
			mustEqual(t, "problems", got, want)
		})
	}
}

func TestDestinationRuleSubsetsAndPorts(t *testing.T) {
	rr := simpleLB(networkingapi.LoadBalancerSettings_ROUND_ROBIN)
	rr.ConnectionPool = &networkingapi.ConnectionPoolSettings{Tcp: &networkingapi.ConnectionPoolSettings_TCPSettings{MaxConnections: 10}}
	rr.PortLevelSettings = []*networkingapi.TrafficPolicy_PortTrafficPolicy{
		{Port: &networkingapi.PortSelector{Number: 9090}, LoadBalancer: &networkingapi.LoadBalancerSettings{LbPolicy: &networkingapi.LoadBalancerSettings_Simple{Simple: networkingapi.LoadBalancerSettings_RANDOM}}},
		{Port: &networkingapi.PortSelector{Number: 80}, LoadBalancer: &networkingapi.LoadBalancerSettings{LbPolicy: &networkingapi.LoadBalancerSettings_Simple{Simple: networkingapi.LoadBalancerSettings_PASSTHROUGH}}}, // not a Meltemi port: ignored
	}
	v2policy := simpleLB(networkingapi.LoadBalancerSettings_LEAST_REQUEST)
	v3policy := &networkingapi.TrafficPolicy{
		OutlierDetection: &networkingapi.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(2)},
		PortLevelSettings: []*networkingapi.TrafficPolicy_PortTrafficPolicy{
			{Port: &networkingapi.PortSelector{Number: 20880}, ConnectionPool: &networkingapi.ConnectionPoolSettings{Tcp: &networkingapi.ConnectionPoolSettings_TCPSettings{MaxConnections: 1}}},
		},
	}
	m := Build(&Inputs{
		Services: []*corev1.Service{kubeService("ns", "svc", svcPort("tcp-dubbo", 20880), svcPort("tcp-thrift", 9090), svcPort("http", 80))},
		DestinationRules: []*networkingv1.DestinationRule{destinationRule("ns", "dr", 0, "svc.ns", rr,
			&networkingapi.Subset{Name: "v2", Labels: map[string]string{"version": "v2"}, TrafficPolicy: v2policy},
			&networkingapi.Subset{Name: "v1", Labels: map[string]string{"version": "v1"}},
			&networkingapi.Subset{Name: "v3", Labels: map[string]string{"version": "v3"}, TrafficPolicy: v3policy},
			&networkingapi.Subset{Name: "v1"},
		)},
	})
	s := mustService(t, m, "svc.ns.svc.cluster.local")
	top := &TrafficPolicy{LB: LBRoundRobin, MaxConnections: 10}
	random := &TrafficPolicy{LB: LBRandom} // port-level settings replace, they do not inherit
	mustEqual(t, "service policy", s.TrafficPolicy, top)
	mustEqual(t, "port 9090 policy", s.Port(9090).TrafficPolicy, random)
	if s.Port(20880).TrafficPolicy != nil {
		t.Errorf("port 20880 has a policy of its own: %+v", s.Port(20880).TrafficPolicy)
	}
	mustEqual(t, "subsets", s.Subsets, []Subset{
		{Name: "v1", Labels: map[string]string{"version": "v1"}},
		{Name: "v2", Labels: map[string]string{"version": "v2"}, TrafficPolicy: &TrafficPolicy{LB: LBLeastRequest, MaxConnections: 10},
			PortTrafficPolicies: map[uint32]*TrafficPolicy{9090: {LB: LBLeastRequest}}},
		{Name: "v3", Labels: map[string]string{"version": "v3"},
			TrafficPolicy: &TrafficPolicy{LB: LBRoundRobin, MaxConnections: 10, OutlierDetection: &OutlierDetection{ConsecutiveErrors: 2}},
			PortTrafficPolicies: map[uint32]*TrafficPolicy{
				20880: {MaxConnections: 1},
				9090:  {LB: LBRandom, OutlierDetection: &OutlierDetection{ConsecutiveErrors: 2}},
			}},
	})
	for _, tc := range []struct {
		port   uint32
		subset string
		want   *TrafficPolicy
	}{
		{20880, "", top},
		{9090, "", random},
		{20880, "v1", top},
		{9090, "v1", random},
		{20880, "v2", &TrafficPolicy{LB: LBLeastRequest, MaxConnections: 10}},
		{9090, "v2", &TrafficPolicy{LB: LBLeastRequest}},
		{20880, "v3", &TrafficPolicy{MaxConnections: 1}},
		{20880, "nope", top},
	} {
		mustEqual(t, "Policy("+itoa(tc.port)+", "+tc.subset+")", s.Policy(tc.port, tc.subset), tc.want)
	}
	mustEqual(t, "problems", reasons(m.Problems), []string{"DestinationRule/dr Accepted Invalid"})
}

func TestDestinationRuleHostsAndConflicts(t *testing.T) {
	rr := simpleLB(networkingapi.LoadBalancerSettings_ROUND_ROBIN)
	random := simpleLB(networkingapi.LoadBalancerSettings_RANDOM)
	m := Build(&Inputs{
		Services: []*corev1.Service{
			kubeService("a", "short", svcPort("tcp-dubbo", 20880)),
			kubeService("b", "dotted", svcPort("tcp-dubbo", 20880)),
			kubeService("c", "fqdn", svcPort("tcp-dubbo", 20880)),
			kubeService("d", "contested", svcPort("tcp-dubbo", 20880)),
		},
		DestinationRules: []*networkingv1.DestinationRule{
			destinationRule("a", "short", 0, "short", rr),
			destinationRule("x", "dotted", 0, "dotted.b", rr),
			destinationRule("x", "fqdn", 0, "fqdn.c.svc.cluster.local", rr),
			destinationRule("x", "wrong-ns", 0, "short", random), // short.x: not a Meltemi service, ignored
			destinationRule("d", "newer", 2, "contested", random),
			destinationRule("d", "older", 1, "contested.d.svc", rr),
			destinationRule("x", "wild", 0, "*.c.svc.cluster.local", random),
			destinationRule("x", "http", 0, "web.x.svc.cluster.local", random),
		},
	})
	for host, dr := range map[string]string{
		"short.a.svc.cluster.local":     "short",
		"dotted.b.svc.cluster.local":    "dotted",
		"fqdn.c.svc.cluster.local":      "fqdn",
		"contested.d.svc.cluster.local": "older",
	} {
		s := mustService(t, m, host)
		if s.DestinationRule == nil || s.DestinationRule.Name != dr || s.TrafficPolicy == nil || s.TrafficPolicy.LB != LBRoundRobin {
			t.Errorf("%s: destination rule %v, policy %+v; want %s with ROUND_ROBIN", host, s.DestinationRule, s.TrafficPolicy, dr)
		}
	}
	mustEqual(t, "problems", reasons(m.Problems), []string{
		"DestinationRule/newer Accepted Conflicted",
		"DestinationRule/wild Accepted UnsupportedValue",
	})
}
