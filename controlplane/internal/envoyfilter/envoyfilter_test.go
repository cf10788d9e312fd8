package envoyfilter

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

func echoService() *model.Service {
	return &model.Service{
		Hostname:  "echo.demo.svc.cluster.local",
		Namespace: "demo",
		Addresses: []string{"10.96.0.10"},
		Source:    model.ObjectRef{Kind: "Service", Namespace: "demo", Name: "echo"},
		Ports:     []*model.Port{{Number: 20880, Protocol: "dubbo", Codec: "dubbo", Endpoints: []model.Endpoint{{Address: "10.0.0.1:20880"}}}},
	}
}

func TestGenerateOutboundListener(t *testing.T) {
	res := Generate(&model.Model{Services: []*model.Service{echoService()}}, Options{})
	if len(res.Filters) != 2 || len(res.Problems) != 0 {
		t.Fatalf("%d filters, problems %v: want outbound + plainText", len(res.Filters), res.Problems)
	}
	ef := res.Filters[0]
	if ef.Namespace != DefaultRootNamespace || ef.Name != "meltemi-outbound-echo.demo.svc.cluster.local" {
		t.Errorf("filter %s/%s", ef.Namespace, ef.Name)
	}
	if got := ef.Spec.GetConfigPatches()[0].GetMatch().GetListener().GetName(); got != "10.96.0.10_20880" {
		t.Errorf("listener %q", got)
	}
	if res.Filters[1].Name != PlainTextFilterName || res.Filters[1].Namespace != DefaultRootNamespace {
		t.Errorf("second filter %s/%s", res.Filters[1].Namespace, res.Filters[1].Name)
	}
}

// TestPlacement: exportTo of the service, narrowed by the router's.
func TestPlacement(t *testing.T) {
	for _, tc := range []struct {
		service, router []string
		noRouter        bool
		want            []string
		problem         bool
	}{
		{service: nil, noRouter: true, want: []string{"istio-system"}},
		{service: []string{"*"}, noRouter: true, want: []string{"istio-system"}},
		{service: []string{"."}, noRouter: true, want: []string{"demo"}},
		{service: []string{"b", ".", "a", "a"}, noRouter: true, want: []string{"a", "b", "demo"}},
		{service: []string{"~"}, noRouter: true, want: nil},
		{service: nil, router: nil, want: []string{"istio-system"}},
		{service: nil, router: []string{"*"}, want: []string{"istio-system"}},
		{service: nil, router: []string{"."}, want: []string{"routers"}},
		{service: []string{"a", "b"}, router: []string{"b", "c"}, want: []string{"b"}},
		{service: []string{"."}, router: []string{"*"}, want: []string{"demo"}},
		{service: []string{"a"}, router: []string{"b"}, want: nil, problem: true},
		{service: []string{"~"}, router: []string{"b"}, want: nil},
	} {
		t.Run(fmt.Sprint(tc.service, tc.router, tc.noRouter), func(t *testing.T) {
			g := &generator{opts: Options{}.withDefaults()}
			s := echoService()
			s.ExportTo = tc.service
			var r *model.Router
			if !tc.noRouter {
				r = &model.Router{Source: model.ObjectRef{Kind: "MetaRouter", Namespace: "routers", Name: "r"}}
				r.Spec.ExportTo = tc.router
			}
			got, ok := g.placement(s, r)
			if !slices.Equal(got, tc.want) || ok == tc.problem {
				t.Errorf("placement = %v, %v; want %v, %v", got, ok, tc.want, !tc.problem)
			}
		})
	}
}

// TestNamesValid: whatever the input, names are DNS-1123 subdomains and owners label values
// of at most 63 characters, and distinct inputs get distinct names.
func TestNamesValid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "abcXYZ019.-_*/ "
	inputs := []string{"", ".", "-", "a", "A", "a.b-c", "a-b.c", "Echo.demo", "echo.demo", "*.wild.example.com",
		strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 40), "a..b", "a.-b", "x-"}
	for range 2000 {
		b := make([]byte, rng.IntN(90))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		inputs = append(inputs, string(b))
	}
	names := map[string]string{}
	labels := map[string]string{}
	for _, in := range inputs {
		n := dnsName(in)
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 || len(n) > 63 {
			t.Errorf("dnsName(%q) = %q: %v", in, n, errs)
		}
		if prev, ok := names[n]; ok && prev != in {
			t.Errorf("dnsName(%q) = dnsName(%q) = %q", in, prev, n)
		}
		names[n] = in
		if dnsName(in) != n {
			t.Errorf("dnsName(%q) not deterministic", in)
		}
		l := labelValue(in)
		if errs := validation.IsValidLabelValue(l); len(errs) > 0 || l == "" {
			t.Errorf("labelValue(%q) = %q: %v", in, l, errs)
		}
		if prev, ok := labels[l]; ok && prev != in {
			t.Errorf("labelValue(%q) = labelValue(%q) = %q", in, prev, l)
		}
		labels[l] = in
	}
	// Names that need no change stay readable.
	if n := dnsName("meltemi-outbound-echo.demo.svc.cluster.local"); n != "meltemi-outbound-echo.demo.svc.cluster.local" {
		t.Errorf("readable name changed: %q", n)
	}
}

// TestGenerateIndependentOfServiceOrder: the filters and their origins do not depend on the
// order services come in.
func TestGenerateIndependentOfServiceOrder(t *testing.T) {
	for _, name := range goldenCases(t) {
		m, opts := loadCase(t, name)
		want := render(t, Generate(m, opts))
		slices.Reverse(m.Services)
		if got := render(t, Generate(m, opts)); !bytes.Equal(got, want) {
			t.Errorf("%s: reversed services give other filters:\n%s", name, lineDiff(string(want), string(got)))
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	if err := (Options{}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if err := (Options{PlainTextTransportSocket: tlsTransportSocket(t), Inbound: true}).Validate(); err != nil {
		t.Errorf("TLS transport socket: %v", err)
	}
	if (Options{PlainTextTransportSocket: tlsTransportSocket(t), Inbound: true}).InboundWritten() ||
		!(Options{Inbound: true}).InboundWritten() || (Options{}).InboundWritten() {
		t.Error("InboundWritten: want true only for Inbound without a transport socket")
	}
	unknown := &corev3.TransportSocket{
		Name:       "custom",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: &anypb.Any{TypeUrl: "type.googleapis.com/example.Unknown"}},
	}
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{RootNamespace: "Istio_System"}, "root namespace"},
		{Options{WorkloadLabels: map[string]string{"bad key": "x"}}, "workload label key"},
		{Options{WorkloadLabels: map[string]string{"ok": "bad value!"}}, "workload label ok value"},
		{Options{XDSAddress: "no-port"}, "xDS address"},
		{Options{PlainTextTransportSocket: &corev3.TransportSocket{Name: "x"}}, "name and typed_config"},
		{Options{PlainTextTransportSocket: unknown}, "example.Unknown"},
	} {
		err := tc.opts.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error about %s", tc.opts, err, tc.want)
		}
	}

	// Generate with the unencodable transport socket writes nothing and says why on each
	// service.
	res := Generate(&model.Model{Services: []*model.Service{echoService()}}, Options{PlainTextTransportSocket: unknown})
	if len(res.Filters) != 0 || len(res.Problems) != 1 || res.Problems[0].Reason != ReasonInvalidOptions ||
		res.Problems[0].Object.Name != "echo" || res.Problems[0].Condition != v1alpha1.ConditionProgrammed {
		t.Errorf("filters %d, problems %v", len(res.Filters), res.Problems)
	}
}

// TestOriginsFollowFilters: each filter's origins name the service and its router.
func TestOriginsFollowFilters(t *testing.T) {
	m, opts := loadCase(t, "metarouter-narrows")
	res := Generate(m, opts)
	echo := model.ObjectRef{Kind: "Service", Namespace: "demo", Name: "echo"}
	router := model.ObjectRef{Group: "meltemi.io", Kind: "MetaRouter", Namespace: "demo", Name: "echo", Generation: 2}
	for _, key := range []string{"demo/meltemi-outbound-echo.demo.svc.cluster.local", "team-a/meltemi-outbound-echo.demo.svc.cluster.local"} {
		if got := res.Origins[key]; !slices.Equal(got, []model.ObjectRef{echo, router}) {
			t.Errorf("origins of %s = %v", key, got)
		}
	}
	if _, ok := res.Origins["istio-system/meltemi-outbound-echo.demo.svc.cluster.local"]; ok {
		t.Error("the router's exportTo did not narrow the placement")
	}
	if got := res.Origins["team-a/"+PlainTextFilterName]; !slices.Equal(got, []model.ObjectRef{echo, router}) {
		t.Errorf("plainText origins in team-a = %v", got)
	}
}

// TestInboundSelector: the inbound filter selects the plugin label plus the labels every
// endpoint shares; the plugin label keeps its value.
func TestInboundSelector(t *testing.T) {
	for _, tc := range []struct {
		labels []map[string]string
		want   map[string]string
	}{
		{labels: []map[string]string{nil, nil}, want: map[string]string{DefaultWorkloadLabel: DefaultWorkloadValue}},
		{labels: []map[string]string{{"app": "echo", "v": "1"}, {"app": "echo", "v": "2"}},
			want: map[string]string{DefaultWorkloadLabel: DefaultWorkloadValue, "app": "echo"}},
		{labels: []map[string]string{{"app": "echo"}, {"app": "other"}}, want: map[string]string{DefaultWorkloadLabel: DefaultWorkloadValue}},
		{labels: []map[string]string{{"app": "echo"}, nil}, want: map[string]string{DefaultWorkloadLabel: DefaultWorkloadValue, "app": "echo"}},
		{labels: []map[string]string{{"app": "echo", DefaultWorkloadLabel: "off"}},
			want: map[string]string{DefaultWorkloadLabel: DefaultWorkloadValue, "app": "echo"}},
	} {
		s := echoService()
		s.Ports[0].Endpoints = nil
		for i, l := range tc.labels {
			s.Ports[0].Endpoints = append(s.Ports[0].Endpoints, model.Endpoint{Address: fmt.Sprintf("10.0.0.%d:20880", i+1), Labels: l})
		}
		res := Generate(&model.Model{Services: []*model.Service{s}}, Options{Inbound: true})
		var found bool
		for _, ef := range res.Filters {
			if ef.Name == "meltemi-inbound-echo.demo.svc.cluster.local" {
				found = true
				if got := ef.Spec.GetWorkloadSelector().GetLabels(); !maps.Equal(got, tc.want) {
					t.Errorf("endpoint labels %v: selector %v, want %v", tc.labels, got, tc.want)
				}
			}
		}
		if !found {
			t.Errorf("endpoint labels %v: no inbound filter", tc.labels)
		}
	}
}

func TestGenerateNilModel(t *testing.T) {
	res := Generate(nil, Options{})
	if res == nil || len(res.Filters) != 0 || len(res.Problems) != 0 || res.Origins == nil {
		t.Errorf("Generate(nil) = %+v", res)
	}
}

// TestInboundOrigins: an inbound filter programs the service only, not its router (whose
// routes it does not use), even when the router's exportTo leaves no outbound filter.
func TestInboundOrigins(t *testing.T) {
	m, opts := loadCase(t, "metarouter-disjoint")
	res := Generate(m, opts)
	echo := model.ObjectRef{Kind: "Service", Namespace: "demo", Name: "echo"}
	for _, key := range []string{"demo/meltemi-inbound-echo.demo.svc.cluster.local", "demo/" + PlainTextFilterName} {
		if got := res.Origins[key]; !slices.Equal(got, []model.ObjectRef{echo}) {
			t.Errorf("origins of %s = %v, want the service only", key, got)
		}
	}
	if len(res.Filters) != 2 {
		t.Errorf("%d filters, want inbound + plainText", len(res.Filters))
	}
}
