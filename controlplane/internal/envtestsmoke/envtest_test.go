//go:build envtest

package envtestsmoke

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

var serviceEntryGVK = schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "ServiceEntry"}

func TestServiceEntryRoundTrip(t *testing.T) {
	// envtest would silently look in /usr/local/kubebuilder/bin instead; failing here
	// says how to get the binaries.
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal(`KUBEBUILDER_ASSETS is unset: run with KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)"`)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	env := &envtest.Environment{}
	start := time.Now()
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	t.Logf("kube-apiserver and etcd up in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stop kube-apiserver and etcd: %v", err)
		}
	})

	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	crds, err := applyCRDs(ctx, c, istioCRDFile(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := envtest.WaitForCRDs(cfg, crds, envtest.CRDInstallOptions{MaxTime: 30 * time.Second}); err != nil {
		t.Fatalf("Istio CRDs not served: %v", err)
	}

	want := &networkingv1.ServiceEntry{
		Hosts:      []string{"greeter.dubbo.example"},
		Ports:      []*networkingv1.ServicePort{{Number: 20880, Name: "tcp-dubbo", Protocol: "TCP"}},
		Location:   networkingv1.ServiceEntry_MESH_INTERNAL,
		Resolution: networkingv1.ServiceEntry_STATIC,
		Endpoints: []*networkingv1.WorkloadEntry{
			{Address: "10.0.0.1", Labels: map[string]string{"version": "v1"}},
			{Address: "10.0.0.2", Labels: map[string]string{"version": "v2"}},
		},
	}
	se, err := serviceEntry("greeter", want)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, se); err != nil {
		t.Fatalf("create ServiceEntry: %v", err)
	}

	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(serviceEntryGVK)
	if err := c.Get(ctx, client.ObjectKeyFromObject(se), got); err != nil {
		t.Fatalf("get ServiceEntry: %v", err)
	}
	spec, err := specOf(got)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(spec, want) {
		t.Errorf("ServiceEntry spec read back = %v, want %v", spec, want)
	}

	// Istio's schema is really enforced: hosts is required.
	bad, err := serviceEntry("no-hosts", &networkingv1.ServiceEntry{Ports: want.Ports})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, bad); !apierrors.IsInvalid(err) {
		t.Errorf("create ServiceEntry without hosts: err = %v, want Invalid", err)
	}
}

// istioCRDFile finds Istio's CRDs in the istio.io/api module this module requires, so their
// version moves with the Go types the control plane compiles against.
func istioCRDFile(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		t.Fatalf("locate istio.io/api module: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatal("istio.io/api module is not downloaded")
	}
	return filepath.Join(dir, "kubernetes", "customresourcedefinitions.gen.yaml")
}

// applyCRDs server-side applies every CRD in a multi-document YAML file. Server-side,
// because Istio's largest CRDs exceed the annotation size a client-side apply records.
func applyCRDs(ctx context.Context, c client.Client, path string) ([]*apiextensionsv1.CustomResourceDefinition, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read CRDs: %w", err)
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("split %s: %w", path, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil {
			return nil, fmt.Errorf("decode %s: %w", path, err)
		}
		if u.GetKind() != "CustomResourceDefinition" {
			continue
		}
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := yaml.Unmarshal(doc, crd); err != nil {
			return nil, fmt.Errorf("decode CRD %s: %w", u.GetName(), err)
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("meltemi-envtest"), client.ForceOwnership); err != nil {
			return nil, fmt.Errorf("apply CRD %s: %w", u.GetName(), err)
		}
		crds = append(crds, crd)
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("no CRDs in %s", path)
	}
	return crds, nil
}

// serviceEntry wraps an Istio spec in a ServiceEntry object in the default namespace,
// encoding the spec the way Istio's tools do (protojson: camelCase fields, enum names).
func serviceEntry(name string, spec *networkingv1.ServiceEntry) (*unstructured.Unstructured, error) {
	raw, err := protojson.Marshal(spec)
	if err != nil {
		return nil, fmt.Errorf("encode ServiceEntry spec: %w", err)
	}
	u := &unstructured.Unstructured{Object: map[string]any{}}
	var specMap map[string]any
	if err := json.Unmarshal(raw, &specMap); err != nil {
		return nil, fmt.Errorf("decode ServiceEntry spec: %w", err)
	}
	u.Object["spec"] = specMap
	u.SetGroupVersionKind(serviceEntryGVK)
	u.SetNamespace("default")
	u.SetName(name)
	return u, nil
}

// specOf decodes the spec of a ServiceEntry object into Istio's Go type.
func specOf(u *unstructured.Unstructured) (*networkingv1.ServiceEntry, error) {
	js, err := json.Marshal(u.Object["spec"])
	if err != nil {
		return nil, fmt.Errorf("encode spec: %w", err)
	}
	spec := &networkingv1.ServiceEntry{}
	if err := protojson.Unmarshal(js, spec); err != nil {
		return nil, fmt.Errorf("decode spec %s: %w", js, err)
	}
	return spec, nil
}
