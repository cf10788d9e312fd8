package translate

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/encoding/protojson"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// The controller's translator (controlplane/internal/translate) records what it serves for
// every CRD feature in golden files. Each route configuration there must be accepted by
// FromXDS with the clusters and endpoints served beside it: the two sides of the xDS
// contract cannot import each other, so this test keeps them in step.
func TestControlPlaneGoldensTranslate(t *testing.T) {
	files, err := filepath.Glob("../../../controlplane/internal/translate/testdata/*.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found %d controller golden files, want the translator's 30+", len(files))
	}
	routes := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var g struct {
			Resources []struct {
				Type     string          `json:"type"`
				Name     string          `json:"name"`
				Resource json.RawMessage `json:"resource"`
			} `json:"resources"`
		}
		if err := json.Unmarshal(data, &g); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		rcs := map[string]*apiv1alpha1.RouteConfiguration{}
		clusters := map[string]*clusterv3.Cluster{}
		endpoints := map[string]*endpointv3.ClusterLoadAssignment{}
		for _, r := range g.Resources {
			var err error
			switch r.Type {
			case apiv1alpha1.RouteConfigurationTypeURL:
				m := &apiv1alpha1.RouteConfiguration{}
				err = protojson.Unmarshal(r.Resource, m)
				rcs[r.Name] = m
			case apiv1alpha1.ClusterTypeURL:
				m := &clusterv3.Cluster{}
				err = protojson.Unmarshal(r.Resource, m)
				clusters[r.Name] = m
			case apiv1alpha1.EndpointTypeURL:
				m := &endpointv3.ClusterLoadAssignment{}
				err = protojson.Unmarshal(r.Resource, m)
				endpoints[r.Name] = m
			default:
				t.Fatalf("%s: resource %s of unknown type %s", file, r.Name, r.Type)
			}
			if err != nil {
				t.Fatalf("%s: %s: %v", file, r.Name, err)
			}
		}
		for name, rc := range rcs {
			rs, cs, err := FromXDS(rc, clusters, endpoints, 15*time.Second)
			if err != nil {
				t.Errorf("%s: route configuration %s: %v", filepath.Base(file), name, err)
				continue
			}
			if len(rs) != len(rc.GetRoutes()) || len(cs) == 0 {
				t.Errorf("%s: %s: %d routes and %d clusters from %d routes", filepath.Base(file), name, len(rs), len(cs), len(rc.GetRoutes()))
			}
			routes++
		}
	}
	if routes == 0 {
		t.Fatal("no route configuration in the controller's golden files")
	}
}
