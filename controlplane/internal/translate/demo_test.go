package translate

import (
	"testing"
	"time"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/source/file"
)

// TestDemoMesh translates what `make run` serves: envoy-config/demo/ read by the file
// source and built by model.Build. The route configurations must be the demo's routing
// (the v2 route, then default to v1, 5s timeouts) and consistent with the clusters.
func TestDemoMesh(t *testing.T) {
	in, errs := file.Load("../../../envoy-config/demo")
	if len(errs) > 0 {
		t.Fatalf("loading the demo: %v", errs)
	}
	res := Translate(model.Build(in))
	checkConsistent(t, res)
	if len(res.Problems) > 0 {
		t.Errorf("problems: %+v", res.Problems)
	}
	for _, tt := range []struct {
		host  string
		port  uint32
		first string
		v1    string
	}{
		{"dubbo-echo.demo.svc.cluster.local", 20880, "version-2.0.0", "127.0.0.1:20881"},
		{"thrift-echo.demo.svc.cluster.local", 9090, "header-v2", "127.0.0.1:9091"},
	} {
		routes := res.Routes[name(tt.port, "", tt.host)].GetRoutes()
		if len(routes) != 2 {
			t.Errorf("%s: routes %v", tt.host, routes)
			continue
		}
		if routes[0].GetName() != tt.first || routes[0].GetRoute().GetCluster() != name(tt.port, "v2", tt.host) ||
			routes[1].GetName() != "default" || routes[1].GetRoute().GetCluster() != name(tt.port, "v1", tt.host) ||
			routes[0].GetRoute().GetTimeout().AsDuration() != 5*time.Second {
			t.Errorf("%s: routes %v", tt.host, routes)
		}
		lbs := res.Endpoints[name(tt.port, "v1", tt.host)].GetEndpoints()
		if len(lbs) != 1 || len(lbs[0].GetLbEndpoints()) != 1 {
			t.Errorf("%s v1 endpoints %v", tt.host, lbs)
			continue
		}
		sa := lbs[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if got := sa.GetAddress() + ":" + itoa(sa.GetPortValue()); got != tt.v1 {
			t.Errorf("%s v1 endpoint %s, want %s", tt.host, got, tt.v1)
		}
		if c := res.Clusters[name(tt.port, "v1", tt.host)]; c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
			t.Errorf("%s: cluster %v is not EDS over ADS", tt.host, c)
		}
	}
	if len(res.Routes) != 2 || len(res.Clusters) != 6 {
		t.Errorf("%d route configurations, %d clusters: want 2 and 6", len(res.Routes), len(res.Clusters))
	}
}
