package envoyfilter

import (
	"fmt"
	"testing"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// scaleModel is n services with a Dubbo and a Thrift port and three endpoints each, half
// of them exported to their own namespace (50 namespaces), half to all.
func scaleModel(n int) *model.Model {
	m := &model.Model{}
	for i := range n {
		ns := fmt.Sprintf("ns-%d", i%50)
		s := &model.Service{
			Hostname:  fmt.Sprintf("svc-%d.%s.svc.cluster.local", i, ns),
			Namespace: ns,
			Addresses: []string{fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)},
			Source:    model.ObjectRef{Kind: "Service", Namespace: ns, Name: fmt.Sprintf("svc-%d", i)},
		}
		if i%2 == 0 {
			s.ExportTo = []string{"."}
		}
		for _, p := range []struct {
			n     uint32
			codec string
		}{{9090, "thrift"}, {20880, "dubbo"}} {
			port := &model.Port{Number: p.n, Protocol: p.codec, Codec: p.codec}
			for e := range 3 {
				port.Endpoints = append(port.Endpoints, model.Endpoint{
					Address: fmt.Sprintf("10.%d.%d.%d:%d", e, i/250, i%250+1, p.n),
					Labels:  map[string]string{"app": s.Source.Name, "version": fmt.Sprint(e)},
				})
			}
			s.Ports = append(s.Ports, port)
		}
		m.Services = append(m.Services, s)
	}
	return m
}

// TestGenerateScale checks the counts on a model big enough to spread over every
// namespace; BenchmarkGenerate1000 times the 1,000-service target (make test runs with
// -race, where encoding is slow).
func TestGenerateScale(t *testing.T) {
	res := Generate(scaleModel(250), Options{Inbound: true})
	// 250 outbound + 250 inbound + plainText in 50 namespaces and the root namespace.
	if want := 250 + 250 + 51; len(res.Filters) != want || len(res.Problems) != 0 {
		t.Errorf("%d filters (want %d), problems %v", len(res.Filters), want, res.Problems)
	}
}

func BenchmarkGenerate1000(b *testing.B) {
	m := scaleModel(1000)
	b.ReportAllocs()
	for b.Loop() {
		Generate(m, Options{Inbound: true})
	}
}
