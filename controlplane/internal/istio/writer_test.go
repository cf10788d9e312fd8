package istio

import (
	"testing"

	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/json"
)

func testFilter() *networkingv1alpha3.EnvoyFilter {
	ef := &networkingv1alpha3.EnvoyFilter{ObjectMeta: metav1.ObjectMeta{
		Namespace: "istio-system", Name: "f", Labels: map[string]string{"meltemi.io/owner": "service.ns.svc"},
	}}
	ef.Spec.Priority = 10
	ef.Spec.WorkloadSelector = &apinetworking.WorkloadSelector{Labels: map[string]string{"meltemi.io/plugin": "enabled"}}
	ef.Spec.ConfigPatches = []*apinetworking.EnvoyFilter_EnvoyConfigObjectPatch{{
		ApplyTo: apinetworking.EnvoyFilter_NETWORK_FILTER,
		Match: &apinetworking.EnvoyFilter_EnvoyConfigObjectMatch{
			Context: apinetworking.EnvoyFilter_SIDECAR_OUTBOUND,
			ObjectTypes: &apinetworking.EnvoyFilter_EnvoyConfigObjectMatch_Listener{
				Listener: &apinetworking.EnvoyFilter_ListenerMatch{Name: "240.240.0.1_20880", PortNumber: 20880},
			},
		},
	}}
	return ef
}

// fromServer is u as the API server returns it: decoded from JSON by the unstructured
// decoder (integers as int64), with fields the server adds.
func fromServer(t *testing.T, u *unstructured.Unstructured, extraLabels map[string]string) *unstructured.Unstructured {
	t.Helper()
	b, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	obj := map[string]any{}
	if err := json.Unmarshal(b, &obj); err != nil { // k8s json: int64 for integers
		t.Fatal(err)
	}
	out := &unstructured.Unstructured{Object: obj}
	out.SetResourceVersion("7")
	out.SetUID("u")
	if extraLabels != nil {
		ls := out.GetLabels()
		for k, v := range extraLabels {
			ls[k] = v
		}
		out.SetLabels(ls)
	}
	return out
}

func TestEnvoyFilterObjectAndSameContent(t *testing.T) {
	want, err := envoyFilterObject(testFilter())
	if err != nil {
		t.Fatal(err)
	}
	if want.GetLabels()[LabelManagedBy] != ManagedBy || want.GetLabels()["meltemi.io/owner"] != "service.ns.svc" {
		t.Errorf("labels %v: want the generator's plus %s=%s", want.GetLabels(), LabelManagedBy, ManagedBy)
	}
	if want.GetAPIVersion() != "networking.istio.io/v1alpha3" || want.GetKind() != "EnvoyFilter" {
		t.Errorf("type %s %s", want.GetAPIVersion(), want.GetKind())
	}
	patches, _, _ := unstructured.NestedSlice(want.Object, "spec", "configPatches")
	if len(patches) != 1 {
		t.Fatalf("configPatches %v", patches)
	}
	if c, _, _ := unstructured.NestedString(patches[0].(map[string]any), "match", "context"); c != "SIDECAR_OUTBOUND" {
		t.Errorf("enum encoded as %q; want its name", c)
	}

	if !sameContent(fromServer(t, want, nil), want) {
		t.Error("the same filter, as the server returns it, differs")
	}
	if sameContent(fromServer(t, want, map[string]string{"stale": "x"}), want) {
		t.Error("a label we no longer set goes unnoticed")
	}
	changed := testFilter()
	changed.Spec.Priority = 11
	other, err := envoyFilterObject(changed)
	if err != nil {
		t.Fatal(err)
	}
	if sameContent(fromServer(t, other, nil), want) {
		t.Error("a spec change goes unnoticed")
	}
}
