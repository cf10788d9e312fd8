package model

import (
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestServiceEntryStaticEndpoints(t *testing.T) {
	v1 := map[string]string{"version": "v1"}
	se := serviceEntry("ns", "dubbo", 0, &networkingapi.ServiceEntry{
		Hosts:     []string{"b.example.com", "a.example.com", "*.wild.example.com"},
		Addresses: []string{"240.0.0.1"},
		ExportTo:  []string{"."},
		Ports: []*networkingapi.ServicePort{
			{Number: 20880, Name: "tcp-metaprotocol-dubbo", Protocol: "TCP", TargetPort: 20881},
			{Number: 9090, Name: "tcp-thrift", Protocol: "TCP"},
			{Number: 80, Name: "http", Protocol: "HTTP"},
		},
		Resolution: networkingapi.ServiceEntry_STATIC,
		Endpoints: []*networkingapi.WorkloadEntry{
			{Address: "10.2.0.2", Labels: v1, Weight: 3, Locality: "r/z/s"},
			{Address: "10.2.0.1", Ports: map[string]uint32{"tcp-thrift": 9999}},
			{Address: "fd00::2"},
			{Address: "dubbo.example.com"},
			{Address: "unix:///var/run/dubbo.sock"},
		},
	})
	m := Build(&Inputs{ServiceEntries: []*networkingv1.ServiceEntry{se}})
	if len(m.Services) != 2 {
		t.Fatalf("%d services; want a.example.com and b.example.com", len(m.Services))
	}
	src := ref(GroupIstio, "ServiceEntry", "ns", "dubbo")
	wantPorts := []*Port{
		{Number: 9090, Name: "tcp-thrift", Protocol: "thrift", Codec: "thrift", Endpoints: []Endpoint{
			{Address: "10.2.0.1:9999"},
			{Address: "10.2.0.2:9090", Labels: v1, Weight: 3, Locality: "r/z/s"},
			{Address: "[fd00::2]:9090"},
		}},
		{Number: 20880, Name: "tcp-metaprotocol-dubbo", Protocol: "dubbo", Codec: "dubbo", Endpoints: []Endpoint{
			{Address: "10.2.0.1:20881"},
			{Address: "10.2.0.2:20881", Labels: v1, Weight: 3, Locality: "r/z/s"},
			{Address: "[fd00::2]:20881"},
		}},
	}
	for _, h := range []string{"a.example.com", "b.example.com"} {
		mustEqual(t, h, mustService(t, m, h), &Service{
			Hostname: h, Namespace: "ns", Addresses: []string{"240.0.0.1"}, ExportTo: []string{"."},
			Ports: wantPorts, Source: src,
		})
	}
	mustEqual(t, "problems", reasons(m.Problems), []string{
		"ServiceEntry/dubbo Accepted UnsupportedAddress",
		"ServiceEntry/dubbo Accepted UnsupportedAddress",
		"ServiceEntry/dubbo Accepted UnsupportedValue",
	})
}

func TestServiceEntryWorkloadSelector(t *testing.T) {
	se := serviceEntry("ns", "vm", 0, &networkingapi.ServiceEntry{
		Hosts:            []string{"vm.example.com"},
		Ports:            []*networkingapi.ServicePort{{Number: 20880, Name: "tcp-dubbo"}},
		Resolution:       networkingapi.ServiceEntry_STATIC,
		WorkloadSelector: &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "vm"}},
	})
	selected := workloadEntry("ns", "vm-1", &networkingapi.WorkloadEntry{Address: "10.3.0.1", Labels: map[string]string{"app": "vm", "version": "v1"}, Ports: map[string]uint32{"tcp-dubbo": 30000}, Weight: 2})
	byMeta := workloadEntry("ns", "vm-2", &networkingapi.WorkloadEntry{Address: "10.3.0.2", Labels: map[string]string{"version": "v2"}})
	byMeta.Labels = map[string]string{"app": "vm", "version": "old"}
	other := workloadEntry("ns", "other", &networkingapi.WorkloadEntry{Address: "10.3.0.3", Labels: map[string]string{"app": "other"}})
	otherNs := workloadEntry("elsewhere", "vm-3", &networkingapi.WorkloadEntry{Address: "10.3.0.4", Labels: map[string]string{"app": "vm"}})
	dnsName := workloadEntry("ns", "vm-dns", &networkingapi.WorkloadEntry{Address: "vm.internal", Labels: map[string]string{"app": "vm"}})
	m := Build(&Inputs{
		ServiceEntries:  []*networkingv1.ServiceEntry{se},
		WorkloadEntries: []*networkingv1.WorkloadEntry{otherNs, dnsName, other, byMeta, selected},
	})
	s := mustService(t, m, "vm.example.com")
	mustEqual(t, "endpoints", s.Ports[0].Endpoints, []Endpoint{
		{Address: "10.3.0.1:30000", Labels: map[string]string{"app": "vm", "version": "v1"}, Weight: 2},
		{Address: "10.3.0.2:20880", Labels: map[string]string{"app": "vm", "version": "v2"}},
	})
	mustEqual(t, "problems", reasons(m.Problems), []string{"ServiceEntry/vm Accepted UnsupportedAddress"})
}

func TestServiceEntryProblems(t *testing.T) {
	dubbo := []*networkingapi.ServicePort{{Number: 20880, Name: "tcp-dubbo"}}
	m := Build(&Inputs{
		Services: []*corev1.Service{kubeService("ns", "svc", svcPort("tcp-dubbo", 20880))},
		ServiceEntries: []*networkingv1.ServiceEntry{
			serviceEntry("ns", "dns", 0, &networkingapi.ServiceEntry{Hosts: []string{"dns.example.com"}, Ports: dubbo, Resolution: networkingapi.ServiceEntry_DNS}),
			serviceEntry("ns", "shadows-svc", 0, &networkingapi.ServiceEntry{Hosts: []string{"svc.ns.svc.cluster.local"}, Ports: dubbo}),
			serviceEntry("ns", "older", 1, &networkingapi.ServiceEntry{Hosts: []string{"x.example.com"}, Ports: dubbo}),
			serviceEntry("ns", "newer", 2, &networkingapi.ServiceEntry{Hosts: []string{"x.example.com"}, Ports: dubbo}),
			serviceEntry("ns", "http", 0, &networkingapi.ServiceEntry{Hosts: []string{"http.example.com"}, Ports: []*networkingapi.ServicePort{{Number: 80, Name: "http"}}}),
			serviceEntry("ns", "unknown", 0, &networkingapi.ServiceEntry{Hosts: []string{"u.example.com"}, Ports: []*networkingapi.ServicePort{{Number: 1, Name: "tcp-metaprotocol-zzz"}}}),
		},
	})
	mustEqual(t, "problems", reasons(m.Problems), []string{
		"ServiceEntry/dns Accepted UnsupportedAddress",
		"ServiceEntry/newer Accepted Conflicted",
		"ServiceEntry/shadows-svc Accepted Conflicted",
		"ServiceEntry/unknown Accepted UnknownProtocol",
	})
	var hosts []string
	for _, s := range m.Services {
		hosts = append(hosts, s.Hostname+" "+s.Source.Name)
	}
	mustEqual(t, "services", hosts, []string{"svc.ns.svc.cluster.local svc", "x.example.com older"})
}

// The VIP the controller allocated (annotation meltemi.io/vip) is the address of a
// ServiceEntry without spec.addresses; spec.addresses win over it; garbage is ignored.
func TestServiceEntryVIPAnnotation(t *testing.T) {
	mk := func(name string, addrs []string, vip string) *networkingv1.ServiceEntry {
		se := serviceEntry("ns", name, 0, &networkingapi.ServiceEntry{
			Hosts:      []string{name + ".example.com"},
			Addresses:  addrs,
			Ports:      []*networkingapi.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
			Resolution: networkingapi.ServiceEntry_STATIC,
			Endpoints:  []*networkingapi.WorkloadEntry{{Address: "10.2.0.1"}},
		})
		if vip != "" {
			se.Annotations = map[string]string{AnnotationVIP: vip}
		}
		return se
	}
	m := Build(&Inputs{ServiceEntries: []*networkingv1.ServiceEntry{
		mk("annotated", nil, "240.240.0.7"),
		mk("both", []string{"240.0.0.1"}, "240.240.0.8"),
		mk("garbage", nil, "not-an-ip"),
		mk("none", nil, ""),
	}})
	for h, want := range map[string][]string{
		"annotated.example.com": {"240.240.0.7"},
		"both.example.com":      {"240.0.0.1"},
		"garbage.example.com":   nil,
		"none.example.com":      nil,
	} {
		mustEqual(t, h, mustService(t, m, h).Addresses, want)
	}
}
