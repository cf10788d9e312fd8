package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the translator's output")

// loadModel reads testdata/<name>.model.yaml: a model.Model in YAML, field names matched
// case-insensitively, unknown fields rejected so that a typo cannot silently drop a setting.
func loadModel(t testing.TB, name string) *model.Model {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name+".model.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m model.Model
	if err := yaml.UnmarshalStrict(data, &m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return &m
}

type goldenResource struct {
	Type     string          `json:"type"`
	Name     string          `json:"name"`
	Resource json.RawMessage `json:"resource"`
}

type goldenFile struct {
	Resources []goldenResource             `json:"resources"`
	Origins   map[string][]model.ObjectRef `json:"origins"`
	Problems  []model.Problem              `json:"problems"`
}

// render writes resources as stable, indented JSON: protojson output is re-indented by
// encoding/json because protojson varies its whitespace on purpose.
func render(t testing.TB, res *Resources) []byte {
	t.Helper()
	g := goldenFile{Origins: res.Origins, Problems: res.Problems}
	if g.Problems == nil {
		g.Problems = []model.Problem{} // "problems": [] rather than null
	}
	add := func(typeURL, name string, m proto.Message) {
		b, err := protojson.Marshal(m)
		if err != nil {
			t.Fatalf("%s %s: %v", typeURL, name, err)
		}
		g.Resources = append(g.Resources, goldenResource{Type: typeURL, Name: name, Resource: b})
	}
	for name, m := range res.Routes {
		add(apiv1alpha1.RouteConfigurationTypeURL, name, m)
	}
	for name, m := range res.Clusters {
		add(apiv1alpha1.ClusterTypeURL, name, m)
	}
	for name, m := range res.Endpoints {
		add(apiv1alpha1.EndpointTypeURL, name, m)
	}
	slices.SortFunc(g.Resources, func(a, b goldenResource) int {
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	out, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

// goldenCases are the model files under testdata, by name.
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
	if len(cases) < 25 {
		t.Fatalf("%d golden cases, want one per CRD feature (at least 25)", len(cases))
	}
	for _, name := range cases {
		t.Run(name, func(t *testing.T) {
			m := loadModel(t, name)
			res := Translate(m)
			checkConsistent(t, res)
			got := render(t, res)
			path := filepath.Join("testdata", name+".golden.json")
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
				t.Errorf("%s differs from the translation (go test -update rewrites it):\n%s", path, lineDiff(string(want), string(got)))
			}
		})
	}
}

// TestGoldenFilesHaveModels catches a golden file left behind by a renamed case.
func TestGoldenFilesHaveModels(t *testing.T) {
	goldens, err := filepath.Glob("testdata/*.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	cases := goldenCases(t)
	for _, g := range goldens {
		name := strings.TrimSuffix(filepath.Base(g), ".golden.json")
		if !slices.Contains(cases, name) {
			t.Errorf("%s has no %s.model.yaml", g, name)
		}
	}
	if len(goldens) != len(cases) {
		t.Errorf("%d golden files for %d models", len(goldens), len(cases))
	}
}

// checkConsistent asserts what must hold for any translation: every route configuration is
// valid against the clusters emitted, every cluster has its endpoints and origins, names
// follow the naming scheme.
func checkConsistent(t testing.TB, res *Resources) {
	t.Helper()
	clusters := make(map[string]bool, len(res.Clusters))
	for name, c := range res.Clusters {
		clusters[name] = true
		if c.GetName() != name || c.GetEdsClusterConfig().GetServiceName() != name {
			t.Errorf("cluster %q: name %q, eds service name %q", name, c.GetName(), c.GetEdsClusterConfig().GetServiceName())
		}
		if _, _, _, _, err := apiv1alpha1.ParseResourceName(name); err != nil {
			t.Error(err)
		}
		if cla := res.Endpoints[name]; cla.GetClusterName() != name {
			t.Errorf("cluster %q: endpoints %v", name, cla)
		}
		for _, typeURL := range []string{apiv1alpha1.ClusterTypeURL, apiv1alpha1.EndpointTypeURL} {
			if len(res.Origins[OriginKey(typeURL, name)]) == 0 {
				t.Errorf("%s %q has no origin", typeURL, name)
			}
		}
	}
	if len(res.Endpoints) != len(res.Clusters) {
		t.Errorf("%d endpoint resources for %d clusters", len(res.Endpoints), len(res.Clusters))
	}
	for name, rc := range res.Routes {
		if rc.GetName() != name {
			t.Errorf("route configuration %q named %q", name, rc.GetName())
		}
		if err := rc.Validate(clusters); err != nil {
			t.Errorf("route configuration %q: %v", name, err)
		}
		for _, r := range rc.GetRoutes() {
			for _, mp := range r.GetRoute().GetRequestMirrorPolicies() {
				if !clusters[mp.GetCluster()] {
					t.Errorf("route configuration %q mirrors to unknown cluster %q", name, mp.GetCluster())
				}
			}
		}
		if len(res.Origins[OriginKey(apiv1alpha1.RouteConfigurationTypeURL, name)]) == 0 {
			t.Errorf("route configuration %q has no origin", name)
		}
	}
	for key, refs := range res.Origins {
		if !slices.IsSortedFunc(refs, model.CompareRefs) || len(slices.Compact(slices.Clone(refs))) != len(refs) {
			t.Errorf("origins of %s not sorted or not unique: %v", key, refs)
		}
	}
}

// lineDiff shows the first lines where want and got differ, enough to see what changed.
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
