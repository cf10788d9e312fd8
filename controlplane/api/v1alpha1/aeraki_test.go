package v1alpha1_test

import (
	"testing"

	"github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

// Aeraki's manifests must decode into our MetaRouter with nothing dropped.
func TestAerakiMetaRoutersDecodeStrictly(t *testing.T) {
	docs := readDocs(t, "testdata/aeraki-metarouters.yaml")
	if len(docs) != 6 {
		t.Fatalf("got %d documents, want 6", len(docs))
	}
	byName := map[string]v1alpha1.MetaRouter{}
	for _, doc := range docs {
		var mr v1alpha1.MetaRouter
		if err := decodeStrict(doc, &mr); err != nil {
			t.Fatalf("%v in:\n%s", err, doc)
		}
		byName[mr.Name] = mr
	}

	v := byName["version-routing"].Spec
	if got := v.Hosts[0]; got != "org.apache.dubbo.samples.basic.api.demoservice" {
		t.Errorf("hosts[0] = %q", got)
	}
	if m := v.Routes[0].Match.Attributes["method"]; m.Exact == nil || *m.Exact != "sayHello" {
		t.Errorf("method match = %+v, want exact sayHello", m)
	}
	if d := v.Routes[0].Route[0].Destination; d.Subset != "v1" {
		t.Errorf("destination = %+v, want subset v1", d)
	}

	a := byName["attribute-routing"].Spec
	if m := a.Routes[0].Match.Attributes["method"]; m.Prefix == nil || *m.Prefix != "say" {
		t.Errorf("prefix match = %+v", m)
	}
	if m := a.Routes[1].Match.Attributes["method"]; m.Regex == nil || *m.Regex != "^ping.*" {
		t.Errorf("regex match = %+v", m)
	}
	if p := a.Routes[1].Route[0].Destination.Port; p == nil || p.Number != 9090 {
		t.Errorf("port = %+v, want 9090", p)
	}

	s := byName["traffic-split"].Spec.Routes[0].Route
	if len(s) != 2 || s[0].Weight != 20 || s[1].Weight != 80 {
		t.Errorf("split = %+v, want weights 20 and 80", s)
	}

	m := byName["mirror-and-mutation"].Spec
	r := m.Routes[0]
	if r.Mirror == nil || r.Mirror.Subset != "v2" || r.MirrorPercentage == nil || r.MirrorPercentage.Value != 50 {
		t.Errorf("mirror = %+v %+v", r.Mirror, r.MirrorPercentage)
	}
	if len(r.RequestMutation) != 1 || r.RequestMutation[0] != (v1alpha1.KeyValue{Key: "foo", Value: "bar"}) {
		t.Errorf("requestMutation = %+v", r.RequestMutation)
	}
	if len(r.ResponseMutation) != 1 || r.ResponseMutation[0].Key != "served-by" {
		t.Errorf("responseMutation = %+v", r.ResponseMutation)
	}
	if len(m.ExportTo) != 1 || m.ExportTo[0] != "." || len(m.Gateways) != 1 {
		t.Errorf("exportTo = %v, gateways = %v", m.ExportTo, m.Gateways)
	}

	l := byName["local-rate-limit"].Spec.LocalRateLimit
	if l == nil || l.TokenBucket == nil || l.TokenBucket.FillInterval.Seconds() != 60 || l.TokenBucket.MaxTokens != 10 {
		t.Fatalf("localRateLimit = %+v", l)
	}
	if got := l.Conditions[0].TokenBucket.FillInterval.Milliseconds(); got != 500 {
		t.Errorf("condition fillInterval = %dms, want 500ms (proto JSON's fractional seconds)", got)
	}

	g := byName["global-rate-limit"].Spec.GlobalRateLimit
	if g == nil || g.Domain != "production" || !g.DenyOnFail || g.RequestTimeout.Milliseconds() != 100 ||
		len(g.Descriptors) != 1 || g.Descriptors[0].DescriptorKey != "method" {
		t.Errorf("globalRateLimit = %+v", g)
	}
}

// Strict decoding is what catches a misspelt field, so it must reject one.
func TestDecodeStrictRejectsUnknownField(t *testing.T) {
	doc := []byte("spec:\n  hosts: [a]\n  routes:\n  - name: r\n    timout: 1s\n    route: []\n")
	var mr v1alpha1.MetaRouter
	if err := decodeStrict(doc, &mr); err == nil {
		t.Fatal("a MetaRouter with the unknown field routes[].timout decoded without error")
	}
}
