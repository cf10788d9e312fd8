//go:build envtest

package envoyfilter

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// TestGeneratedFiltersAcceptedByAPIServer applies every generated EnvoyFilter of every golden
// case with server-side apply (our field manager, strict field validation) to a real kube-apiserver that has Istio's
// CRDs, and reads it back: Istio's schema accepts the names, labels and specs, and prunes
// nothing (a pruned patch value would come back different).
func TestGeneratedFiltersAcceptedByAPIServer(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal(`KUBEBUILDER_ASSETS is unset: run with KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)"`)
	}
	ctrllog.SetLogger(logr.Discard())
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("locate the istio.io/api module: %v", err)
	}
	te := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml")},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := te.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	t.Cleanup(func() {
		if err := te.Stop(); err != nil {
			t.Errorf("stop kube-apiserver and etcd: %v", err)
		}
	})
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := networkingv1alpha3.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c0, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	// Strict: the API server rejects a field Istio's schema does not have instead of
	// dropping it.
	c := client.WithFieldValidation(c0, metav1.FieldValidationStrict)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	namespaces := map[string]bool{}
	applied := 0
	for _, name := range goldenCases(t) {
		m, opts := loadCase(t, name)
		res := Generate(m, opts)
		for _, ef := range res.Filters {
			if !namespaces[ef.Namespace] {
				ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ef.Namespace}}
				if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
					t.Fatal(err)
				}
				namespaces[ef.Namespace] = true
			}
			// The apply body is the filter without status, as the writer sends it.
			js, err := json.Marshal(ef)
			if err != nil {
				t.Fatal(err)
			}
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON(js); err != nil {
				t.Fatal(err)
			}
			unstructured.RemoveNestedField(u.Object, "status")
			unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
			if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(ManagedBy), client.ForceOwnership); err != nil {
				t.Errorf("%s: apply %s/%s: %v", name, ef.Namespace, ef.Name, err)
				continue
			}
			applied++

			got := &unstructured.Unstructured{}
			got.SetGroupVersionKind(u.GroupVersionKind())
			if err := c.Get(ctx, client.ObjectKeyFromObject(u), got); err != nil {
				t.Fatal(err)
			}
			spec, err := json.Marshal(got.Object["spec"])
			if err != nil {
				t.Fatal(err)
			}
			back := new(apinetworking.EnvoyFilter)
			if err := (protojson.UnmarshalOptions{}).Unmarshal(spec, back); err != nil {
				t.Errorf("%s: %s/%s read back: %v", name, ef.Namespace, ef.Name, err)
				continue
			}
			if !proto.Equal(back, &ef.Spec) {
				t.Errorf("%s: %s/%s came back different:\n got %v\nwant %v", name, ef.Namespace, ef.Name, back, &ef.Spec)
			}
			for k, v := range ef.Labels {
				if got.GetLabels()[k] != v {
					t.Errorf("%s: %s/%s label %s = %q, want %q", name, ef.Namespace, ef.Name, k, got.GetLabels()[k], v)
				}
			}
		}
	}
	t.Logf("%d EnvoyFilters applied in %d namespaces", applied, len(namespaces))
	if applied < 20 {
		t.Errorf("only %d filters applied", applied)
	}
}
