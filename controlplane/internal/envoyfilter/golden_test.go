package envoyfilter

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	"sigs.k8s.io/yaml"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from the generator's output")

// goldenCase is testdata/<name>.model.yaml: the model (as translate's golden tests write
// it) and the options that are not their defaults.
type goldenCase struct {
	Options struct {
		RootNamespace  string
		WorkloadLabels map[string]string
		LibraryPath    string
		LibraryID      string
		XDSAddress     string
		Inbound        bool
		// PlainTextTLS sets a TLS transport socket (Istio's mTLS certificates over SDS) on
		// the plainText cluster.
		PlainTextTLS bool
	}
	Model model.Model
}

func loadCase(t testing.TB, name string) (*model.Model, Options) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".model.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c goldenCase
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	o := c.Options
	opts := Options{
		RootNamespace:  o.RootNamespace,
		WorkloadLabels: o.WorkloadLabels,
		LibraryPath:    o.LibraryPath,
		LibraryID:      o.LibraryID,
		XDSAddress:     o.XDSAddress,
		Inbound:        o.Inbound,
	}
	if o.PlainTextTLS {
		opts.PlainTextTransportSocket = tlsTransportSocket(t)
	}
	return &c.Model, opts
}

// tlsTransportSocket is an upstream TLS transport socket with Istio's workload certificate
// and root CA from the sidecar's SDS, as Istio's own ISTIO_MUTUAL clusters have.
func tlsTransportSocket(t testing.TB) *corev3.TransportSocket {
	t.Helper()
	sds := func(name string) *tlsv3.SdsSecretConfig {
		return &tlsv3.SdsSecretConfig{
			Name: name,
			SdsConfig: &corev3.ConfigSource{
				ResourceApiVersion: corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
					ApiType:             corev3.ApiConfigSource_GRPC,
					TransportApiVersion: corev3.ApiVersion_V3,
					GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
						EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: "sds-grpc"},
					}}},
				}},
			},
		}
	}
	typed, err := anypb.New(&tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols:                  []string{"istio"},
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{sds("default")},
		ValidationContextType: &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
			ValidationContextSdsSecretConfig: sds("ROOTCA"),
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.TransportSocket{
		Name:       "envoy.transport_sockets.tls",
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: typed},
	}
}

type goldenFile struct {
	Filters  []*networkingv1alpha3.EnvoyFilter `json:"filters"`
	Origins  map[string][]model.ObjectRef      `json:"origins"`
	Problems []model.Problem                   `json:"problems"`
}

func render(t testing.TB, res *Result) []byte {
	t.Helper()
	g := goldenFile{Filters: res.Filters, Origins: res.Origins, Problems: res.Problems}
	if g.Filters == nil {
		g.Filters = []*networkingv1alpha3.EnvoyFilter{}
	}
	if g.Problems == nil {
		g.Problems = []model.Problem{}
	}
	out, err := yaml.Marshal(g)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func goldenCases(t testing.TB) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*.model.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".model.yaml"))
	}
	return names
}

func TestGolden(t *testing.T) {
	cases := goldenCases(t)
	if len(cases) < 12 {
		t.Fatalf("%d golden cases, want at least 12", len(cases))
	}
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			m, opts := loadCase(t, name)
			res := Generate(m, opts)
			got := render(t, res)
			if again := render(t, Generate(m, opts)); !bytes.Equal(got, again) {
				t.Fatalf("two generations differ:\n%s", lineDiff(string(got), string(again)))
			}
			path := filepath.Join("testdata", name+".golden.yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the generator's output (go test -update rewrites it):\n%s", path, lineDiff(string(want), string(got)))
			}
		})
	}
}

// TestGoldenFilesHaveModels catches a golden file left behind by a renamed case.
func TestGoldenFilesHaveModels(t *testing.T) {
	goldens, err := filepath.Glob("testdata/*.golden.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := goldenCases(t)
	for _, g := range goldens {
		name := strings.TrimSuffix(filepath.Base(g), ".golden.yaml")
		if !slices.Contains(cases, name) {
			t.Errorf("%s has no %s.model.yaml", g, name)
		}
	}
	if len(goldens) != len(cases) {
		t.Errorf("%d golden files for %d models", len(goldens), len(cases))
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, wl, gl)
			shown++
		}
	}
	return b.String()
}
