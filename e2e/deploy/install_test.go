//go:build envtest

package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// readYAML decodes one YAML document of the repository strictly into a map.
func readYAML(t *testing.T, rel string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return m
}

func str(t *testing.T, m map[string]any, path ...string) string {
	t.Helper()
	v, ok, err := unstructured.NestedString(m, path...)
	if err != nil || !ok {
		t.Errorf("no string at %s: %v", strings.Join(path, "."), err)
	}
	return v
}

// sidecarImage is the image the per-pod example annotates; the istiod settings must name the
// same one.
func sidecarImage(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "istio", "per-pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range decodeAll(t, "per-pod.yaml", data) {
		if o.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := runtimeFromUnstructured(o, &d); err != nil {
			t.Fatal(err)
		}
		tpl := d.Spec.Template
		if tpl.Labels["meltemi.io/plugin"] != "enabled" {
			t.Errorf("per-pod example: pod labels %v lack meltemi.io/plugin: enabled", tpl.Labels)
		}
		var cfg map[string]any
		if err := yaml.UnmarshalStrict([]byte(tpl.Annotations["proxy.istio.io/config"]), &cfg); err != nil {
			t.Errorf("per-pod example: proxy.istio.io/config: %v", err)
		}
		if got := str(t, cfg, "proxyMetadata", "GODEBUG"); got != "cgocheck=0" {
			t.Errorf("per-pod example: proxyMetadata.GODEBUG = %q", got)
		}
		if img := tpl.Annotations["sidecar.istio.io/proxyImage"]; img != "" {
			return img
		}
	}
	t.Fatal("per-pod.yaml has no Deployment with sidecar.istio.io/proxyImage")
	return ""
}

// TestIstioInstallSettings checks the istiod settings of the mesh-wide and revision-based
// ways: our image as global.proxy.image, GODEBUG in the default proxy metadata, and the
// revision name the example namespace uses. (They are istioctl/Helm inputs, not cluster
// objects, so TestDryRunApply cannot check them.)
func TestIstioInstallSettings(t *testing.T) {
	image := sidecarImage(t)
	if !strings.Contains(image, "/") {
		t.Errorf("sidecar image %q: istiod treats a name without / as hub-relative", image)
	}
	for _, f := range []string{"mesh-wide.istiooperator.yaml", "revision.istiooperator.yaml", "mesh-wide.istiod-values.yaml", "revision.istiod-values.yaml"} {
		m := readYAML(t, filepath.Join("deploy", "istio", "install", f))
		spec := m
		if strings.HasSuffix(f, ".istiooperator.yaml") {
			if m["apiVersion"] != "install.istio.io/v1alpha1" || m["kind"] != "IstioOperator" {
				t.Errorf("%s: %v %v, want an IstioOperator", f, m["apiVersion"], m["kind"])
			}
			spec, _ = m["spec"].(map[string]any)
			values, _ := spec["values"].(map[string]any)
			if got := str(t, values, "global", "proxy", "image"); got != image {
				t.Errorf("%s: values.global.proxy.image = %q, want %q", f, got, image)
			}
		} else if got := str(t, spec, "global", "proxy", "image"); got != image {
			t.Errorf("%s: global.proxy.image = %q, want %q", f, got, image)
		}
		if got := str(t, spec, "meshConfig", "defaultConfig", "proxyMetadata", "GODEBUG"); got != "cgocheck=0" {
			t.Errorf("%s: meshConfig.defaultConfig.proxyMetadata.GODEBUG = %q", f, got)
		}
		rev, _ := spec["revision"].(string)
		if want := map[bool]string{true: "meltemi", false: ""}[strings.HasPrefix(f, "revision.")]; rev != want {
			t.Errorf("%s: revision %q, want %q", f, rev, want)
		}
	}
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "istio", "revision.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, o := range decodeAll(t, "revision.yaml", data) {
		if o.GetKind() == "Namespace" {
			found = true
			if o.GetLabels()["istio.io/rev"] != "meltemi" || o.GetLabels()["istio-injection"] != "" {
				t.Errorf("revision.yaml namespace labels %v, want istio.io/rev=meltemi and no istio-injection", o.GetLabels())
			}
		}
	}
	if !found {
		t.Error("revision.yaml has no Namespace")
	}
}

// strictMTLSValues are the chart values for STRICT meshes.
func strictMTLSValues(t *testing.T) map[string]any {
	t.Helper()
	return readYAML(t, filepath.Join("deploy", "istio", "install", "strict-mtls-values.yaml"))
}

// TestStrictMTLSTransportSocket checks that the documented Istio-style socket is a valid
// envoy TransportSocket (strict protojson, the typed_config decoded as UpstreamTlsContext)
// with the secrets Istio's agent serves, and that the chart hands it to the controller.
func TestStrictMTLSTransportSocket(t *testing.T) {
	v := strictMTLSValues(t)
	ts, ok, err := unstructured.NestedMap(v, "istio", "plaintextTransportSocket")
	if err != nil || !ok {
		t.Fatalf("no istio.plaintextTransportSocket: %v", err)
	}
	j, err := yaml.Marshal(ts)
	if err != nil {
		t.Fatal(err)
	}
	j, err = yaml.YAMLToJSON(j)
	if err != nil {
		t.Fatal(err)
	}
	var sock corev3.TransportSocket
	if err := protojson.Unmarshal(j, &sock); err != nil {
		t.Fatalf("not an envoy.config.core.v3.TransportSocket: %v", err)
	}
	if err := sock.ValidateAll(); err != nil {
		t.Errorf("TransportSocket fails Envoy's validation rules: %v", err)
	}
	var tlsCtx tlsv3.UpstreamTlsContext
	if err := sock.GetTypedConfig().UnmarshalTo(&tlsCtx); err != nil {
		t.Fatalf("typed_config is not an UpstreamTlsContext: %v", err)
	}
	if err := tlsCtx.ValidateAll(); err != nil {
		t.Errorf("UpstreamTlsContext fails Envoy's validation rules: %v", err)
	}
	common := tlsCtx.GetCommonTlsContext()
	certs := common.GetTlsCertificateSdsSecretConfigs()
	root := common.GetCombinedValidationContext().GetValidationContextSdsSecretConfig()
	if len(certs) != 1 || certs[0].GetName() != "default" || root.GetName() != "ROOTCA" {
		t.Errorf("secrets %v / %v, want default and ROOTCA", certs, root)
	}
	for _, s := range append(certs, root) {
		if c := s.GetSdsConfig().GetApiConfigSource().GetGrpcServices(); len(c) != 1 || c[0].GetEnvoyGrpc().GetClusterName() != "sds-grpc" {
			t.Errorf("secret %s: SDS from %v, want the agent's sds-grpc cluster", s.GetName(), c)
		}
	}

	r := render(t, v)
	var d appsv1.Deployment
	r.get(t, "Deployment", "meltemi-controller", &d)
	args := argFlags(t, d.Spec.Template.Spec.Containers[0].Args)
	if args["plaintext-transport-socket"] == "" {
		t.Errorf("the chart does not pass --plaintext-transport-socket with strict-mtls-values.yaml: %q", d.Spec.Template.Spec.Containers[0].Args)
	}
}
