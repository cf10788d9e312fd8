package model

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

// Constructors of test inputs: short, so that each case shows what matters to it.

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func meta(ns, name string, ageRank int) metav1.ObjectMeta {
	return metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1, CreationTimestamp: metav1.NewTime(epoch.Add(time.Duration(ageRank) * time.Minute))}
}

func ptr[T any](v T) *T { return &v }

func svcPort(name string, port int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, Protocol: corev1.ProtocolTCP}
}

func kubeService(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: meta(ns, name, 0),
		Spec:       corev1.ServiceSpec{ClusterIP: "10.0.0.1", ClusterIPs: []string{"10.0.0.1"}, Ports: ports},
	}
}

func slicePort(name string, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr(name), Port: ptr(port)}
}

func endpointSlice(ns, svc, name string, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	m := meta(ns, name, 0)
	m.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
	return &discoveryv1.EndpointSlice{ObjectMeta: m, AddressType: at, Ports: ports, Endpoints: eps}
}

// podEndpoint is a ready endpoint of a pod.
func podEndpoint(ip, pod string) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{ip}}
	if pod != "" {
		e.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: pod}
	}
	return e
}

func pod(ns, name string, labels map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}}
}

func serviceEntry(ns, name string, age int, spec *networkingapi.ServiceEntry) *networkingv1.ServiceEntry {
	se := &networkingv1.ServiceEntry{ObjectMeta: meta(ns, name, age)}
	se.Spec.Hosts = spec.Hosts
	se.Spec.Addresses = spec.Addresses
	se.Spec.Ports = spec.Ports
	se.Spec.Resolution = spec.Resolution
	se.Spec.Endpoints = spec.Endpoints
	se.Spec.WorkloadSelector = spec.WorkloadSelector
	se.Spec.ExportTo = spec.ExportTo
	return se
}

func workloadEntry(ns, name string, spec *networkingapi.WorkloadEntry) *networkingv1.WorkloadEntry {
	we := &networkingv1.WorkloadEntry{ObjectMeta: meta(ns, name, 0)}
	we.Spec.Address = spec.Address
	we.Spec.Ports = spec.Ports
	we.Spec.Labels = spec.Labels
	we.Spec.Weight = spec.Weight
	we.Spec.Locality = spec.Locality
	return we
}

func destinationRule(ns, name string, age int, host string, tp *networkingapi.TrafficPolicy, subsets ...*networkingapi.Subset) *networkingv1.DestinationRule {
	dr := &networkingv1.DestinationRule{ObjectMeta: meta(ns, name, age)}
	dr.Spec.Host = host
	dr.Spec.TrafficPolicy = tp
	dr.Spec.Subsets = subsets
	return dr
}

func metaRouter(apiVersion, ns, name string, age int, hosts []string, routes ...v1alpha1.MetaRoute) *v1alpha1.MetaRouter {
	return &v1alpha1.MetaRouter{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiVersion, Kind: "MetaRouter"},
		ObjectMeta: meta(ns, name, age),
		Spec:       v1alpha1.MetaRouterSpec{Hosts: hosts, Routes: routes},
	}
}

func route(dests ...v1alpha1.Destination) v1alpha1.MetaRoute {
	r := v1alpha1.MetaRoute{}
	for _, d := range dests {
		r.Route = append(r.Route, v1alpha1.MetaRouteDestination{Destination: d})
	}
	return r
}

const (
	ours   = "metaprotocol.meltemi.io/v1alpha1"
	aeraki = "metaprotocol.aeraki.io/v1alpha1"
)

func ref(group, kind, ns, name string) ObjectRef {
	return ObjectRef{Group: group, Kind: kind, Namespace: ns, Name: name, Generation: 1}
}

// mustEqual fails with both values as JSON when they differ.
func mustEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", "  ")
		w, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("%s:\ngot  %s\nwant %s", what, g, w)
	}
}

// reasons are the problems' "Kind/name Condition Reason", compact to compare.
func reasons(ps []Problem) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Object.Kind+"/"+p.Object.Name+" "+p.Condition+" "+p.Reason)
	}
	return out
}

func mustService(t *testing.T, m *Model, host string) *Service {
	t.Helper()
	s := m.Service(host)
	if s == nil {
		var hs []string
		for _, s := range m.Services {
			hs = append(hs, s.Hostname)
		}
		t.Fatalf("no service %q; services: %v; problems: %+v", host, hs, m.Problems)
	}
	return s
}
