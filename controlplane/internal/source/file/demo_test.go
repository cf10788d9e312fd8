package file

import (
	"path/filepath"
	"slices"
	"testing"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// demoDir is envoy-config/demo/, the demo's mesh, relative to this package.
const demoDir = "../../../../envoy-config/demo"

// The demo's mesh must load without errors and build into the services and routes of the
// demo's plugin configurations (envoy-config/filters/*.yaml): per service the v1 and v2
// endpoints, the subsets v1 and v2, and the v2 route before the default one.
func TestDemoMesh(t *testing.T) {
	in := mustLoad(t, demoDir)
	wantFiles := map[string]string{
		"ServiceEntry/demo/thrift-echo":    "thrift-echo.yaml",
		"DestinationRule/demo/thrift-echo": "thrift-echo.yaml",
		"MetaRouter/demo/thrift-echo":      "thrift-echo.yaml",
		"ServiceEntry/demo/dubbo-echo":     "dubbo-echo.yaml",
		"DestinationRule/demo/dubbo-echo":  "dubbo-echo.yaml",
		"MetaRouter/demo/dubbo-echo":       "dubbo-echo.yaml",
	}
	if len(in.Files) != len(wantFiles) {
		t.Errorf("objects %v, want %d", in.Files, len(wantFiles))
	}
	for key, file := range wantFiles {
		if got := in.Files[key]; got != filepath.Join(demoDir, file) {
			t.Errorf("%s in %q, want %s", key, got, file)
		}
	}

	m := model.Build(in)
	if len(m.Problems) > 0 {
		t.Errorf("problems: %+v", m.Problems)
	}
	tests := []struct {
		host       string
		port       uint32
		protocol   string
		v1, v2     string
		route      string // the first route's name
		attr, want string // what it matches
	}{
		{"dubbo-echo.demo.svc.cluster.local", 20880, "dubbo", "127.0.0.1:20881", "127.0.0.1:20882", "version-2.0.0", "version", "2.0.0"},
		{"thrift-echo.demo.svc.cluster.local", 9090, "thrift", "127.0.0.1:9091", "127.0.0.1:9092", "header-v2", "version", "v2"},
	}
	if len(m.Services) != len(tests) || len(m.Routers) != len(tests) {
		t.Fatalf("%d services, %d routers, want %d each", len(m.Services), len(m.Routers), len(tests))
	}
	for i, tt := range tests {
		svc := m.Services[i]
		if svc.Hostname != tt.host || len(svc.Ports) != 1 {
			t.Errorf("service %d: %s with %d ports, want %s with one", i, svc.Hostname, len(svc.Ports), tt.host)
			continue
		}
		p := svc.Port(tt.port)
		if p == nil || p.Protocol != tt.protocol {
			t.Errorf("%s: port %d %+v, want protocol %s", tt.host, tt.port, p, tt.protocol)
			continue
		}
		var eps []string
		for _, ep := range p.Endpoints {
			eps = append(eps, ep.Address+" "+ep.Labels["version"])
		}
		if want := []string{tt.v1 + " v1", tt.v2 + " v2"}; !slices.Equal(eps, want) {
			t.Errorf("%s endpoints %q, want %q", tt.host, eps, want)
		}
		for _, name := range []string{"v1", "v2"} {
			if s := svc.Subset(name); s == nil || s.Labels["version"] != name {
				t.Errorf("%s subset %s: %+v", tt.host, name, s)
			}
		}

		r := m.Routers[i].Spec
		if len(r.Hosts) != 1 || r.Hosts[0] != tt.host || len(r.Routes) != 2 {
			t.Errorf("router %d: hosts %v, %d routes", i, r.Hosts, len(r.Routes))
			continue
		}
		first, rest := r.Routes[0], r.Routes[1]
		match := ""
		if first.Match != nil {
			if sm, ok := first.Match.Attributes[tt.attr]; ok && sm.Exact != nil && len(first.Match.Attributes) == 1 {
				match = *sm.Exact
			}
		}
		if first.Name != tt.route || match != tt.want || len(first.Route) != 1 ||
			first.Route[0].Destination != (v1alpha1.Destination{Host: tt.host, Subset: "v2"}) {
			t.Errorf("%s first route %+v, want %s: %s=%s -> v2", tt.host, first, tt.route, tt.attr, tt.want)
		}
		if rest.Name != "default" || rest.Match != nil || len(rest.Route) != 1 ||
			rest.Route[0].Destination != (v1alpha1.Destination{Host: tt.host, Subset: "v1"}) {
			t.Errorf("%s second route %+v, want default -> v1", tt.host, rest)
		}
		if first.Timeout == nil || first.Timeout.Duration.String() != "5s" || rest.Timeout == nil || rest.Timeout.Duration.String() != "5s" {
			t.Errorf("%s: route timeouts %v %v, want 5s as the plugin configurations' route_timeout", tt.host, first.Timeout, rest.Timeout)
		}
	}
}
