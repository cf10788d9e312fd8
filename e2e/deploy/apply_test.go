//go:build envtest

package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// istioCRDFile finds Istio's CRDs in the istio.io/api module of the workspace.
func istioCRDFile(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api")
	cmd.Dir = repoRoot(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("locate istio.io/api module: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatal("istio.io/api module is not downloaded")
	}
	return filepath.Join(dir, "kubernetes", "customresourcedefinitions.gen.yaml")
}

// manifestFiles are the Kubernetes manifests kept valid by TestDryRunApply: every YAML file
// of deploy/istio and e2e/kind/manifests.
func manifestFiles(t *testing.T) []string {
	t.Helper()
	root := repoRoot(t)
	var out []string
	for _, glob := range []string{"deploy/istio/*.yaml", "e2e/kind/manifests/*.yaml"} {
		files, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, files...)
	}
	if !slices.ContainsFunc(out, func(f string) bool { return strings.Contains(f, filepath.Join("deploy", "istio")) }) {
		t.Fatalf("no manifests in deploy/istio: %q", out)
	}
	return out
}

// TestDryRunApply applies, with server-side apply, dry run and strict field validation, every
// object of the chart (default and non-default values), of the plain manifests and of the
// Istio and kind manifests to a real kube-apiserver that has Meltemi's, Istio's and Aeraki's
// CRDs: the API server's schemas, CEL rules and admission all accept them.
func TestDryRunApply(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal(`KUBEBUILDER_ASSETS is unset: run with KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)"`)
	}
	ctrllog.SetLogger(logr.Discard())
	root := repoRoot(t)
	te := &envtest.Environment{
		CRDDirectoryPaths: []string{
			filepath.Join(root, CRDDir),
			istioCRDFile(t),
			// A stand-in for Aeraki's MetaRouter CRD (the kind manifests use Aeraki's API).
			filepath.Join(root, "controlplane", "test", "envtest", "testdata", "aeraki-metarouter-crd.yaml"),
		},
		ErrorIfCRDPathMissing: true,
	}
	cfg, err := te.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	defer func() {
		if err := te.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	base, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := client.WithFieldValidation(base, metav1.FieldValidationStrict)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type source struct {
		name string
		objs []*unstructured.Unstructured
	}
	sources := []source{
		{"chart (default values)", render(t, nil).objs},
		{"chart (non-default values)", render(t, nonDefault(t)).objs},
		{"chart (strict-mtls-values.yaml)", render(t, strictMTLSValues(t)).objs},
	}
	plain, err := os.ReadFile(filepath.Join(root, ManifestsFile))
	if err != nil {
		t.Fatal(err)
	}
	sources = append(sources, source{ManifestsFile, decodeAll(t, ManifestsFile, plain)})
	for _, f := range manifestFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, f)
		objs := decodeAll(t, rel, data)
		if len(objs) == 0 {
			t.Errorf("%s has no objects", rel)
		}
		sources = append(sources, source{rel, objs})
	}

	// Dry run creates nothing, so the namespaces the objects live in must exist for real.
	namespaces := map[string]bool{}
	for _, s := range sources {
		for _, o := range s.objs {
			if ns := o.GetNamespace(); ns != "" {
				namespaces[ns] = true
			}
		}
	}
	for ns := range namespaces {
		err := base.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("create namespace %s: %v", ns, err)
		}
	}

	applied := 0
	for _, s := range sources {
		for _, o := range s.objs {
			what := s.name + ": " + o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
			if o.GetKind() == "" || o.GetAPIVersion() == "" || o.GetName() == "" {
				t.Errorf("%s: object without apiVersion, kind or name", what)
				continue
			}
			obj := o.DeepCopy()
			if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.DryRunAll,
				client.FieldOwner("meltemi-deploy-test"), client.ForceOwnership); err != nil {
				t.Errorf("%s: server-side dry-run apply: %v", what, err)
				continue
			}
			applied++
		}
	}
	t.Logf("%d objects from %d sources applied with server-side dry run", applied, len(sources))
	if applied < 30 {
		t.Errorf("only %d objects applied", applied)
	}
}
