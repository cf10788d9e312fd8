package v1alpha1_test

import (
	"reflect"
	"regexp"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

func everything(t *testing.T) *v1alpha1.MetaRouter {
	t.Helper()
	var mr v1alpha1.MetaRouter
	if err := decodeStrict(readDocs(t, "testdata/meltemi-metarouter.yaml")[0], &mr); err != nil {
		t.Fatal(err)
	}
	return &mr
}

// The fixture must set every field, or the deepcopy test would not cover it.
func TestFixtureSetsEveryField(t *testing.T) {
	var missing []string
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		switch v.Kind() {
		case reflect.Pointer:
			if v.IsNil() {
				missing = append(missing, path)
				return
			}
			walk(v.Elem(), path)
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i), path+"."+v.Type().Field(i).Name)
			}
		case reflect.Slice:
			if v.Len() == 0 {
				missing = append(missing, path)
			}
			for i := range v.Len() {
				walk(v.Index(i), path+"[]")
			}
		case reflect.Map:
			if v.Len() == 0 {
				missing = append(missing, path)
			}
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k), path+"["+k.String()+"]")
			}
		default:
			if v.IsZero() {
				missing = append(missing, path)
			}
		}
	}
	mr := everything(t)
	walk(reflect.ValueOf(mr.Spec), "spec")
	walk(reflect.ValueOf(mr.Status).FieldByName("ObservedGeneration"), "status.observedGeneration")
	// Some fields of a StringMatch exclude each other: each is set in one of the matchers.
	var kept []string
	for _, p := range missing {
		if !regexp.MustCompile(`\.(Exact|Prefix|Regex|Present|Invert)$`).MatchString(p) {
			kept = append(kept, p)
		}
	}
	if len(kept) > 0 {
		t.Errorf("testdata/meltemi-metarouter.yaml leaves unset: %v", kept)
	}
}

func TestDeepCopyMetaRouter(t *testing.T) {
	orig := everything(t)
	want := everything(t)

	obj := orig.DeepCopyObject()
	cp, ok := obj.(*v1alpha1.MetaRouter)
	if !ok {
		t.Fatalf("DeepCopyObject returned %T", obj)
	}
	if !reflect.DeepEqual(cp, orig) {
		t.Fatal("copy differs from the original")
	}

	// Every kind of reference in the type, mutated in the copy, must leave the original alone.
	r := &cp.Spec.Routes[0]
	r.Name = "changed"
	r.Match.Attributes["method"] = v1alpha1.StringMatch{Invert: true}
	*r.Match.Attributes["tenant"].Present = false
	r.Route[0].Destination.Port.Number = 1
	r.Route[1].Weight = 50
	r.Mirror.Host = "other"
	r.MirrorPercentage.Value = 1
	r.RequestMutation[0].Value = "changed"
	r.ResponseMutation = append(r.ResponseMutation[:0], v1alpha1.KeyValue{Key: "k"})
	r.Timeout.Duration = 1
	r.Retries.RetryOn[0] = v1alpha1.RetryOnReset
	r.Retries.PerTryTimeout.Duration = 1
	cp.Spec.Hosts[0] = "changed"
	cp.Spec.Gateways[0] = "changed"
	cp.Spec.ExportTo[0] = "*"
	cp.Spec.LocalRateLimit.TokenBucket.MaxTokens = 1
	cp.Spec.LocalRateLimit.Conditions[0].Match.Attributes["method"] = v1alpha1.StringMatch{}
	cp.Spec.GlobalRateLimit.Match.Attributes["x"] = v1alpha1.StringMatch{}
	cp.Spec.GlobalRateLimit.RequestTimeout.Duration = 1
	cp.Spec.GlobalRateLimit.Descriptors[0].Property = "changed"
	cp.Status.Conditions[0].Status = "False"
	cp.Labels = map[string]string{"a": "b"}

	if !reflect.DeepEqual(orig, want) {
		t.Error("mutating the copy changed the original")
	}
	if reflect.DeepEqual(cp, want) {
		t.Error("the mutations did not change the copy")
	}
}

func TestDeepCopyOtherObjects(t *testing.T) {
	ap := &v1alpha1.ApplicationProtocol{Spec: v1alpha1.ApplicationProtocolSpec{Protocol: "dubbo", Codec: "dubbo"}}
	ap.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ConditionAccepted, Status: metav1.ConditionTrue}}
	list := &v1alpha1.ApplicationProtocolList{Items: []v1alpha1.ApplicationProtocol{*ap}}
	mrList := &v1alpha1.MetaRouterList{Items: []v1alpha1.MetaRouter{*everything(t)}}

	for _, obj := range []runtime.Object{ap, list, mrList} {
		cp := obj.DeepCopyObject()
		if !reflect.DeepEqual(cp, obj) {
			t.Errorf("%T: copy differs from the original", obj)
		}
	}
	cp := list.DeepCopy()
	cp.Items[0].Status.Conditions[0].Status = metav1.ConditionFalse
	if list.Items[0].Status.Conditions[0].Status != metav1.ConditionTrue {
		t.Error("mutating the copied list changed the original")
	}
	mcp := mrList.DeepCopy()
	mcp.Items[0].Spec.Routes[0].Route[0].Destination.Host = "changed"
	if mrList.Items[0].Spec.Routes[0].Route[0].Destination.Host == "changed" {
		t.Error("mutating the copied MetaRouter list changed the original")
	}
}

func TestAddToScheme(t *testing.T) {
	s := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"MetaRouter", "MetaRouterList", "ApplicationProtocol", "ApplicationProtocolList"} {
		obj, err := s.New(v1alpha1.GroupVersion.WithKind(kind))
		if err != nil {
			t.Errorf("%s: %v", kind, err)
			continue
		}
		if got := reflect.TypeOf(obj).Elem().Name(); got != kind {
			t.Errorf("scheme.New(%s) = %s", kind, got)
		}
	}
}
