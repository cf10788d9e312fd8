package envoyfilter

import (
	"testing"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

func TestGenerateOutboundListener(t *testing.T) {
	m := &model.Model{Services: []*model.Service{{
		Hostname:  "echo.demo.svc.cluster.local",
		Namespace: "demo",
		Addresses: []string{"10.96.0.10"},
		Source:    model.ObjectRef{Kind: "Service", Namespace: "demo", Name: "echo"},
		Ports:     []*model.Port{{Number: 20880, Protocol: "dubbo", Codec: "dubbo"}},
	}}}
	res := Generate(m, Options{})
	if len(res.Filters) != 2 {
		t.Fatalf("%d filters, want outbound + plainText", len(res.Filters))
	}
	ef := res.Filters[0]
	if ef.Namespace != DefaultRootNamespace || ef.Name != "meltemi-outbound-echo.demo.svc.cluster.local" {
		t.Errorf("filter %s/%s", ef.Namespace, ef.Name)
	}
	if got := ef.Spec.GetConfigPatches()[0].GetMatch().GetListener().GetName(); got != "10.96.0.10_20880" {
		t.Errorf("listener %q", got)
	}
}
