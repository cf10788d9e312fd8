package model

import (
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

// routerInputs: services a.ns (dubbo 20880, subsets v1 v2), b.other (dubbo 20880), a
// ServiceEntry host ext.example.com.
func routerInputs(routers ...*v1alpha1.MetaRouter) *Inputs {
	return &Inputs{
		Services: []*corev1.Service{
			kubeService("ns", "a", svcPort("tcp-dubbo", 20880)),
			kubeService("other", "b", svcPort("tcp-dubbo", 20880)),
		},
		ServiceEntries: []*networkingv1.ServiceEntry{serviceEntry("ns", "ext", 0, &networkingapi.ServiceEntry{
			Hosts: []string{"ext.example.com"}, Ports: []*networkingapi.ServicePort{{Number: 20880, Name: "tcp-dubbo"}},
		})},
		DestinationRules: []*networkingv1.DestinationRule{destinationRule("ns", "a", 0, "a", nil,
			&networkingapi.Subset{Name: "v1", Labels: map[string]string{"version": "v1"}},
			&networkingapi.Subset{Name: "v2", Labels: map[string]string{"version": "v2"}},
		)},
		MetaRouters: routers,
	}
}

func TestMetaRouterResolution(t *testing.T) {
	mr := metaRouter(ours, "ns", "a", 0, []string{"a"},
		route(v1alpha1.Destination{Host: "a", Subset: "v1", Port: &v1alpha1.PortSelector{Number: 20880}}),
		route(v1alpha1.Destination{Host: "b.other"}, v1alpha1.Destination{Host: "ext.example.com"}),
	)
	mr.Spec.Routes[1].Mirror = &v1alpha1.Destination{Host: "a.ns.svc", Subset: "v2"}
	mr.Spec.Gateways = []string{"istio-system/gw"} // accepted, ignored
	in := routerInputs(mr)
	m := Build(in)
	if len(m.Problems) != 0 {
		t.Fatalf("problems: %+v", m.Problems)
	}
	if len(m.Routers) != 1 {
		t.Fatalf("%d routers; want 1", len(m.Routers))
	}
	r := m.Routers[0]
	mustEqual(t, "source", r.Source, ref(GroupMeltemi, "MetaRouter", "ns", "a"))
	mustEqual(t, "hosts", r.Spec.Hosts, []string{"a.ns.svc.cluster.local"})
	var dests []string
	for _, rt := range r.Spec.Routes {
		for _, d := range rt.Route {
			dests = append(dests, d.Destination.Host)
		}
		if rt.Mirror != nil {
			dests = append(dests, "mirror "+rt.Mirror.Host)
		}
	}
	mustEqual(t, "destinations", dests, []string{"a.ns.svc.cluster.local", "b.other.svc.cluster.local", "ext.example.com", "mirror a.ns.svc.cluster.local"})
	// Build copies the spec: the input keeps its short names.
	if in.MetaRouters[0].Spec.Hosts[0] != "a" || in.MetaRouters[0].Spec.Routes[1].Mirror.Host != "a.ns.svc" {
		t.Errorf("Build modified its input: %+v", in.MetaRouters[0].Spec)
	}
}

func TestMetaRouterProblems(t *testing.T) {
	for _, tc := range []struct {
		name   string
		router *v1alpha1.MetaRouter
		want   []string
	}{
		{"host not found", metaRouter(ours, "ns", "r", 0, []string{"nope"}, route(v1alpha1.Destination{Host: "a"})),
			[]string{"MetaRouter/r ResolvedRefs HostNotFound"}},
		{"host in another namespace by short name", metaRouter(ours, "other", "r", 0, []string{"a"}, route(v1alpha1.Destination{Host: "b"})),
			[]string{"MetaRouter/r ResolvedRefs HostNotFound"}},
		{"backend not found, once however often", metaRouter(ours, "ns", "r", 0, []string{"a"},
			route(v1alpha1.Destination{Host: "nope.example.com"}), route(v1alpha1.Destination{Host: "nope.example.com"})),
			[]string{"MetaRouter/r ResolvedRefs BackendNotFound"}},
		{"mirror not found", func() *v1alpha1.MetaRouter {
			mr := metaRouter(ours, "ns", "r", 0, []string{"a"}, route(v1alpha1.Destination{Host: "a"}))
			mr.Spec.Routes[0].Mirror = &v1alpha1.Destination{Host: "gone"}
			return mr
		}(), []string{"MetaRouter/r ResolvedRefs BackendNotFound"}},
		{"subset not found", metaRouter(ours, "ns", "r", 0, []string{"a"}, route(v1alpha1.Destination{Host: "a", Subset: "v3"})),
			[]string{"MetaRouter/r ResolvedRefs SubsetNotFound"}},
		{"subset of a service without a rule", metaRouter(ours, "ns", "r", 0, []string{"a"}, route(v1alpha1.Destination{Host: "b.other", Subset: "v1"})),
			[]string{"MetaRouter/r ResolvedRefs SubsetNotFound"}},
		{"port not found", metaRouter(ours, "ns", "r", 0, []string{"a"}, route(v1alpha1.Destination{Host: "a", Port: &v1alpha1.PortSelector{Number: 80}})),
			[]string{"MetaRouter/r ResolvedRefs PortNotFound"}},
		{"no hosts", metaRouter(ours, "ns", "r", 0, nil), []string{"MetaRouter/r Accepted Invalid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Build(routerInputs(tc.router))
			mustEqual(t, "problems", reasons(m.Problems), tc.want)
			accepted := tc.want[0] != "MetaRouter/r Accepted Invalid"
			if got := len(m.Routers) == 1; got != accepted {
				t.Errorf("router in the model: %v; want %v", got, accepted)
			}
		})
	}
}

func TestMetaRouterConflicts(t *testing.T) {
	for _, tc := range []struct {
		name    string
		routers []*v1alpha1.MetaRouter
		winner  ObjectRef
		loser   ObjectRef
	}{
		{
			name: "older wins",
			routers: []*v1alpha1.MetaRouter{
				metaRouter(ours, "ns", "a-new", 2, []string{"a"}, route(v1alpha1.Destination{Host: "a"})),
				metaRouter(ours, "ns", "z-old", 1, []string{"a.ns.svc.cluster.local"}, route(v1alpha1.Destination{Host: "a"})),
			},
			winner: ref(GroupMeltemi, "MetaRouter", "ns", "z-old"),
			loser:  ref(GroupMeltemi, "MetaRouter", "ns", "a-new"),
		},
		{
			name: "same age: ours before Aeraki's",
			routers: []*v1alpha1.MetaRouter{
				metaRouter(aeraki, "ns", "a", 1, []string{"a"}, route(v1alpha1.Destination{Host: "a"})),
				metaRouter(ours, "ns", "z", 1, []string{"a"}, route(v1alpha1.Destination{Host: "a"})),
			},
			winner: ref(GroupMeltemi, "MetaRouter", "ns", "z"),
			loser:  ref(GroupAeraki, "MetaRouter", "ns", "a"),
		},
		{
			name: "older Aeraki wins",
			routers: []*v1alpha1.MetaRouter{
				metaRouter(aeraki, "ns", "a", 0, []string{"a"}, route(v1alpha1.Destination{Host: "a"})),
				metaRouter(ours, "ns", "a", 1, []string{"ext.example.com", "a"}, route(v1alpha1.Destination{Host: "a"})),
			},
			winner: ref(GroupAeraki, "MetaRouter", "ns", "a"),
			loser:  ref(GroupMeltemi, "MetaRouter", "ns", "a"),
		},
		{
			name: "same age and group: namespace/name",
			routers: []*v1alpha1.MetaRouter{
				metaRouter("", "ns", "b", 0, []string{"a"}, route(v1alpha1.Destination{Host: "a"})),
				metaRouter("", "ns", "a", 0, []string{"a"}, route(v1alpha1.Destination{Host: "a"})),
			},
			winner: ref(GroupMeltemi, "MetaRouter", "ns", "a"),
			loser:  ref(GroupMeltemi, "MetaRouter", "ns", "b"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := Build(routerInputs(tc.routers...))
			if len(m.Routers) != 1 || m.Routers[0].Source != tc.winner {
				t.Fatalf("routers %+v; want only %v", m.Routers, tc.winner)
			}
			if len(m.Problems) != 1 || m.Problems[0].Object != tc.loser || m.Problems[0].Reason != ReasonConflicted || m.Problems[0].Condition != v1alpha1.ConditionAccepted {
				t.Fatalf("problems %+v; want %v Accepted Conflicted", m.Problems, tc.loser)
			}
		})
	}
}

func TestObjectRefFiles(t *testing.T) {
	in := routerInputs(metaRouter(ours, "ns", "r", 0, []string{"nope"}))
	in.Files = map[string]string{"MetaRouter/ns/r": "routers/r.yaml", "Service/ns/a": "svc.yaml"}
	m := Build(in)
	if m.Routers[0].Source.File != "routers/r.yaml" || m.Problems[0].Object.File != "routers/r.yaml" {
		t.Errorf("router %v, problem %v; want file routers/r.yaml", m.Routers[0].Source, m.Problems[0].Object)
	}
	if f := mustService(t, m, "a.ns.svc.cluster.local").Source.File; f != "svc.yaml" {
		t.Errorf("service file %q; want svc.yaml", f)
	}
	if f := mustService(t, m, "b.other.svc.cluster.local").Source.File; f != "" {
		t.Errorf("service file %q; want none", f)
	}
}
