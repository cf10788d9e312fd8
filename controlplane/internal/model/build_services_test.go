package model

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

func TestPortProtocol(t *testing.T) {
	p := BuiltinProtocols()
	p["trpc"] = "trpc-codec"
	for _, tc := range []struct {
		name, app    string
		proto, codec string
		meltemi      bool
	}{
		{name: "tcp-dubbo", proto: "dubbo", codec: "dubbo", meltemi: true},
		{name: "tcp-dubbo-20880", proto: "dubbo", codec: "dubbo", meltemi: true},
		{name: "tcp-thrift", proto: "thrift", codec: "thrift", meltemi: true},
		{name: "TCP-Thrift-x", proto: "thrift", codec: "thrift", meltemi: true},
		{name: "tcp-metaprotocol-dubbo-20880", proto: "dubbo", codec: "dubbo", meltemi: true},
		{name: "tcp-metaprotocol-thrift", proto: "thrift", codec: "thrift", meltemi: true},
		{name: "tcp-metaprotocol-trpc-x", proto: "trpc", codec: "trpc-codec", meltemi: true},
		{name: "tcp-metaprotocol-foo", proto: "foo", codec: "", meltemi: true},
		{name: "tcp-metaprotocol", proto: "", codec: "", meltemi: true},
		{name: "tcp-dubbox"},
		{name: "tcp-trpc"}, // only dubbo and thrift have the short form
		{name: "tcp"},
		{name: "http-dubbo"},
		{name: "dubbo"}, // a bare name is not the convention; appProtocol is
		{name: "x", app: "dubbo", proto: "dubbo", codec: "dubbo", meltemi: true},
		{name: "x", app: "trpc", proto: "trpc", codec: "trpc-codec", meltemi: true},
		{name: "x", app: "tcp-thrift", proto: "thrift", codec: "thrift", meltemi: true},
		{name: "x", app: "tcp-metaprotocol-trpc", proto: "trpc", codec: "trpc-codec", meltemi: true},
		{name: "x", app: "http"},
		{name: "x", app: "foo"}, // an unknown plain appProtocol is someone else's
		{name: "tcp-dubbo", app: "http", proto: "dubbo", codec: "dubbo", meltemi: true},
		{name: "tcp-thrift", app: "dubbo", proto: "dubbo", codec: "dubbo", meltemi: true},
	} {
		proto, codec, ok := p.PortProtocol(tc.name, tc.app)
		if proto != tc.proto || codec != tc.codec || ok != tc.meltemi {
			t.Errorf("PortProtocol(%q, %q) = %q, %q, %v; want %q, %q, %v", tc.name, tc.app, proto, codec, ok, tc.proto, tc.codec, tc.meltemi)
		}
	}
}

func TestApplicationProtocols(t *testing.T) {
	ap := func(name string, age int, proto, codec string) *v1alpha1.ApplicationProtocol {
		return &v1alpha1.ApplicationProtocol{ObjectMeta: meta("meltemi", name, age), Spec: v1alpha1.ApplicationProtocolSpec{Protocol: proto, Codec: codec}}
	}
	m := Build(&Inputs{
		ApplicationProtocols: []*v1alpha1.ApplicationProtocol{
			ap("trpc-new", 2, "trpc", "other"),
			ap("trpc", 1, "trpc", "trpc"),
			ap("dubbo", 1, "dubbo", "dubbo3"),
			ap("bad", 1, "", "x"),
		},
		Services: []*corev1.Service{kubeService("ns", "svc",
			svcPort("tcp-dubbo", 20880),
			svcPort("tcp-metaprotocol-trpc", 8000),
			svcPort("tcp-thrift", 9090),
		)},
	})
	s := mustService(t, m, "svc.ns.svc.cluster.local")
	var got []string
	for _, p := range s.Ports {
		got = append(got, p.Protocol+"="+p.Codec)
	}
	mustEqual(t, "ports", got, []string{"trpc=trpc", "thrift=thrift", "dubbo=dubbo3"})
	mustEqual(t, "problems", reasons(m.Problems), []string{
		"ApplicationProtocol/bad Accepted Invalid",
		"ApplicationProtocol/trpc-new Accepted Conflicted",
	})
	var names []string
	for _, r := range m.ApplicationProtocols {
		names = append(names, r.Kind+"/"+r.Name)
	}
	mustEqual(t, "application protocols", names, []string{
		"ApplicationProtocol/bad", "ApplicationProtocol/dubbo", "ApplicationProtocol/trpc", "ApplicationProtocol/trpc-new",
	})
}

func TestKubeService(t *testing.T) {
	ks := kubeService("ns", "svc",
		svcPort("tcp-dubbo", 20880),
		svcPort("http", 80),
		svcPort("tcp-metaprotocol-nope", 7000),
		corev1.ServicePort{Name: "rpc", Port: 9090, AppProtocol: ptr("thrift")},
	)
	ks.Annotations = map[string]string{annotationExportTo: " ., other ,"}
	v1labels := map[string]string{"version": "v1"}
	v2labels := map[string]string{"version": "v2"}
	ports := []discoveryv1.EndpointPort{slicePort("tcp-dubbo", 20881), slicePort("http", 8080), slicePort("rpc", 9091)}

	notReady := podEndpoint("10.1.0.9", "p9")
	notReady.Conditions.Ready = ptr(false)
	notServing := podEndpoint("10.1.0.8", "p8")
	notServing.Conditions.Ready = ptr(true)
	notServing.Conditions.Serving = ptr(false)
	terminatingServing := podEndpoint("10.1.0.3", "p3") // ready false, serving true: draining, not used
	terminatingServing.Conditions.Ready = ptr(false)
	terminatingServing.Conditions.Serving = ptr(true)
	explicitReady := podEndpoint("10.1.0.2", "p2")
	explicitReady.Conditions.Ready = ptr(true)
	explicitReady.Zone = ptr("zone-a")
	otherNs := podEndpoint("10.1.0.4", "p4")
	otherNs.TargetRef.Namespace = "elsewhere"

	in := &Inputs{
		Services: []*corev1.Service{ks, kubeService("ns", "plain", svcPort("http", 80))},
		EndpointSlices: []*discoveryv1.EndpointSlice{
			endpointSlice("ns", "svc", "svc-1", discoveryv1.AddressTypeIPv4, ports,
				podEndpoint("10.1.0.1", "p1"), notReady, notServing, terminatingServing, explicitReady, otherNs),
			// The same pod in a second slice while it moves: one endpoint.
			endpointSlice("ns", "svc", "svc-2", discoveryv1.AddressTypeIPv4, ports, podEndpoint("10.1.0.1", "p1")),
			endpointSlice("ns", "svc", "svc-fqdn", discoveryv1.AddressTypeFQDN, ports, podEndpoint("svc.example.com", "")),
			endpointSlice("other", "svc", "svc-other-ns", discoveryv1.AddressTypeIPv4, ports, podEndpoint("10.9.9.9", "")),
			endpointSlice("ns", "plain", "plain-1", discoveryv1.AddressTypeIPv4, ports, podEndpoint("10.8.8.8", "")),
		},
		Pods: []*metav1.PartialObjectMetadata{
			pod("ns", "p1", v1labels), pod("ns", "p2", v2labels), pod("ns", "p4", v2labels), pod("elsewhere", "p4", v1labels),
		},
		DomainSuffix: "example.internal",
	}
	m := Build(in)
	want := []*Service{{
		Hostname:  "svc.ns.svc.example.internal",
		Namespace: "ns",
		Addresses: []string{"10.0.0.1"},
		ExportTo:  []string{".", "other"},
		Ports: []*Port{
			{Number: 9090, Name: "rpc", Protocol: "thrift", Codec: "thrift", Endpoints: []Endpoint{
				{Address: "10.1.0.1:9091", Labels: v1labels},
				{Address: "10.1.0.2:9091", Labels: v2labels, Locality: "/zone-a"},
				{Address: "10.1.0.4:9091", Labels: v1labels},
			}},
			{Number: 20880, Name: "tcp-dubbo", Protocol: "dubbo", Codec: "dubbo", Endpoints: []Endpoint{
				{Address: "10.1.0.1:20881", Labels: v1labels},
				{Address: "10.1.0.2:20881", Labels: v2labels, Locality: "/zone-a"},
				{Address: "10.1.0.4:20881", Labels: v1labels},
			}},
		},
		Source: ref("", "Service", "ns", "svc"),
	}}
	mustEqual(t, "services", m.Services, want)
	mustEqual(t, "problems", m.Problems, []Problem{{
		Object: ref("", "Service", "ns", "svc"), Condition: "Accepted", Reason: "UnknownProtocol",
		Message: `port 7000 (name "tcp-metaprotocol-nope") names protocol "nope", which no ApplicationProtocol declares`,
	}})
}

func TestKubeServiceIPv6AndUnnamedPort(t *testing.T) {
	ks := kubeService("ns", "v6", corev1.ServicePort{Port: 20880, AppProtocol: ptr("dubbo")})
	ks.Spec.ClusterIP, ks.Spec.ClusterIPs = "fd00::1", []string{"fd00::1", "10.0.0.7"}
	ks.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
	unnamed := []discoveryv1.EndpointPort{{Port: ptr(int32(20881))}}
	m := Build(&Inputs{
		Services: []*corev1.Service{ks},
		EndpointSlices: []*discoveryv1.EndpointSlice{
			endpointSlice("ns", "v6", "v6-a", discoveryv1.AddressTypeIPv6, unnamed, podEndpoint("fd00::a", ""), podEndpoint("fd00::b", "")),
			// The secondary family: the same pods again, not used.
			endpointSlice("ns", "v6", "v6-b", discoveryv1.AddressTypeIPv4, unnamed, podEndpoint("10.1.0.1", "")),
		},
	})
	s := mustService(t, m, "v6.ns.svc.cluster.local")
	mustEqual(t, "addresses", s.Addresses, []string{"fd00::1", "10.0.0.7"})
	mustEqual(t, "endpoints", s.Ports[0].Endpoints, []Endpoint{{Address: "[fd00::a]:20881"}, {Address: "[fd00::b]:20881"}})
}

func TestKubeServiceKinds(t *testing.T) {
	headless := kubeService("ns", "headless", svcPort("tcp-dubbo", 20880))
	headless.Spec.ClusterIP, headless.Spec.ClusterIPs = corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	external := kubeService("ns", "ext", svcPort("tcp-dubbo", 20880))
	external.Spec.Type, external.Spec.ClusterIP, external.Spec.ClusterIPs = corev1.ServiceTypeExternalName, "", nil
	external.Spec.ExternalName = "dubbo.example.com"
	m := Build(&Inputs{Services: []*corev1.Service{headless, external}})
	s := mustService(t, m, "headless.ns.svc.cluster.local")
	if s.Addresses != nil || s.ExportTo != nil {
		t.Errorf("headless: addresses %v, exportTo %v; want none", s.Addresses, s.ExportTo)
	}
	if m.Service("ext.ns.svc.cluster.local") != nil {
		t.Error("an ExternalName service is in the model")
	}
	mustEqual(t, "problems", reasons(m.Problems), []string{"Service/ext Accepted UnsupportedAddress"})
}
