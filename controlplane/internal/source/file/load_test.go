package file

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"istio.io/api/networking/v1alpha3"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// writeFile writes a file under dir, creating its directories.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

const (
	meltemiRouter = `apiVersion: metaprotocol.meltemi.io/v1alpha1
kind: MetaRouter
metadata: {name: greeter, namespace: demo}
spec:
  hosts: [greeter.demo.svc.cluster.local]
  routes:
  - name: v2
    match: {attributes: {version: {exact: v2}}}
    route: [{destination: {host: greeter.demo.svc.cluster.local, subset: v2}}]
`
	aerakiRouter = `apiVersion: metaprotocol.aeraki.io/v1alpha1
kind: MetaRouter
metadata: {name: legacy}
spec:
  hosts: [org.apache.dubbo.samples.basic.api.demoservice]
  routes:
  - name: v1
    route: [{destination: {host: org.apache.dubbo.samples.basic.api.demoservice, subset: v1}}]
`
	appProtocol = `apiVersion: metaprotocol.meltemi.io/v1alpha1
kind: ApplicationProtocol
metadata: {name: trpc, namespace: demo}
spec: {protocol: trpc, codec: trpc}
`
	service = `apiVersion: v1
kind: Service
metadata: {name: greeter, namespace: demo}
spec:
  selector: {app: greeter}
  ports: [{name: tcp-dubbo, port: 20880, targetPort: 20880}]
`
	endpointSlice = `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: greeter-abc
  namespace: demo
  labels: {kubernetes.io/service-name: greeter}
addressType: IPv4
ports: [{name: tcp-dubbo, port: 20880}]
endpoints:
- addresses: [10.0.0.1]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: greeter-1, namespace: demo}
`
	pod = `apiVersion: v1
kind: Pod
metadata:
  name: greeter-1
  namespace: demo
  labels: {app: greeter, version: v1}
spec:
  containers: [{name: greeter, image: greeter:1}]
`
	serviceEntry = `apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: thrift-echo, namespace: demo}
spec:
  hosts: [thrift-echo.demo.svc]
  ports: [{number: 9090, name: tcp-thrift-9090, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {tcp-thrift-9090: 9091}
    labels: {version: v1}
`
	workloadEntry = `apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata: {name: vm-1, namespace: demo}
spec:
  address: 10.0.0.9
  labels: {app: greeter, version: v2}
  ports: {tcp-dubbo: 20881}
`
	destinationRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: greeter, namespace: demo}
spec:
  host: greeter.demo.svc.cluster.local
  trafficPolicy:
    connectionPool: {tcp: {maxConnections: 10, connectTimeout: 2s}}
    loadBalancer: {consistentHash: {httpHeaderName: tenant}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`
	virtualService = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec: {hosts: [web], http: [{route: [{destination: {host: web}}]}]}
`
)

func mustLoad(t *testing.T, dir string) *model.Inputs {
	t.Helper()
	in, errs := Load(dir)
	if len(errs) > 0 {
		t.Fatalf("Load: %v", errs)
	}
	return in
}

func TestLoadEveryKind(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "routers.yaml", "# routers\n---\n"+meltemiRouter+"---\n"+aerakiRouter+"---\n# nothing\n")
	writeFile(t, dir, "k8s/service.yml", service+"---\n"+endpointSlice+"---\n"+pod)
	writeFile(t, dir, "k8s/deeper/protocol.yaml", appProtocol)
	writeFile(t, dir, "istio.yaml", serviceEntry+"---\n"+workloadEntry+"---\n"+destinationRule+"---\n"+virtualService)
	// Not manifests: hidden, editor leftovers, other extensions, hidden directories.
	for _, name := range []string{".hidden.yaml", "routers.yaml~", "#routers.yaml#", ".#routers.yaml", "notes.txt", ".git/config.yaml", "README.md"} {
		writeFile(t, dir, name, "this: [is not: valid")
	}

	in := mustLoad(t, dir)
	if len(in.MetaRouters) != 2 || len(in.ApplicationProtocols) != 1 || len(in.Services) != 1 || len(in.EndpointSlices) != 1 ||
		len(in.Pods) != 1 || len(in.ServiceEntries) != 1 || len(in.WorkloadEntries) != 1 || len(in.DestinationRules) != 1 {
		t.Fatalf("counts: %d MetaRouters, %d ApplicationProtocols, %d Services, %d EndpointSlices, %d Pods, %d ServiceEntries, %d WorkloadEntries, %d DestinationRules",
			len(in.MetaRouters), len(in.ApplicationProtocols), len(in.Services), len(in.EndpointSlices), len(in.Pods),
			len(in.ServiceEntries), len(in.WorkloadEntries), len(in.DestinationRules))
	}

	// Sorted by namespace: the Aeraki router (default) first.
	aeraki, ours := in.MetaRouters[0], in.MetaRouters[1]
	if aeraki.APIVersion != "metaprotocol.aeraki.io/v1alpha1" || aeraki.Namespace != "default" || aeraki.Name != "legacy" ||
		aeraki.Spec.Routes[0].Route[0].Destination.Subset != "v1" {
		t.Errorf("Aeraki MetaRouter: %s %s/%s %+v", aeraki.APIVersion, aeraki.Namespace, aeraki.Name, aeraki.Spec)
	}
	if ours.APIVersion != "metaprotocol.meltemi.io/v1alpha1" || ours.Namespace != "demo" ||
		*ours.Spec.Routes[0].Match.Attributes["version"].Exact != "v2" {
		t.Errorf("Meltemi MetaRouter: %s %s/%s %+v", ours.APIVersion, ours.Namespace, ours.Name, ours.Spec)
	}
	if ap := in.ApplicationProtocols[0]; ap.Spec.Protocol != "trpc" || ap.Spec.Codec != "trpc" {
		t.Errorf("ApplicationProtocol %+v", ap.Spec)
	}
	if s := in.Services[0]; s.Spec.Ports[0].Name != "tcp-dubbo" || s.Spec.Ports[0].Port != 20880 || s.Spec.Selector["app"] != "greeter" {
		t.Errorf("Service %+v", s.Spec)
	}
	if es := in.EndpointSlices[0]; es.Endpoints[0].Addresses[0] != "10.0.0.1" || es.Endpoints[0].TargetRef.Name != "greeter-1" ||
		*es.Ports[0].Port != 20880 {
		t.Errorf("EndpointSlice %+v", es)
	}
	if p := in.Pods[0]; p.Name != "greeter-1" || p.Labels["version"] != "v1" || p.Kind != "Pod" {
		t.Errorf("Pod %+v", p)
	}
	se := in.ServiceEntries[0]
	if se.APIVersion != "networking.istio.io/v1alpha3" || se.Spec.GetHosts()[0] != "thrift-echo.demo.svc" ||
		se.Spec.GetResolution() != v1alpha3.ServiceEntry_STATIC || se.Spec.GetPorts()[0].GetName() != "tcp-thrift-9090" ||
		se.Spec.GetEndpoints()[0].GetPorts()["tcp-thrift-9090"] != 9091 || se.Spec.GetEndpoints()[0].GetLabels()["version"] != "v1" {
		t.Errorf("ServiceEntry %s %v", se.APIVersion, &se.Spec)
	}
	if we := in.WorkloadEntries[0]; we.Spec.GetAddress() != "10.0.0.9" || we.Spec.GetPorts()["tcp-dubbo"] != 20881 {
		t.Errorf("WorkloadEntry %v", &we.Spec)
	}
	dr := in.DestinationRules[0]
	if dr.Spec.GetHost() != "greeter.demo.svc.cluster.local" || len(dr.Spec.GetSubsets()) != 2 ||
		dr.Spec.GetTrafficPolicy().GetConnectionPool().GetTcp().GetConnectTimeout().AsDuration().String() != "2s" ||
		dr.Spec.GetTrafficPolicy().GetLoadBalancer().GetConsistentHash().GetHttpHeaderName() != "tenant" {
		t.Errorf("DestinationRule %v", &dr.Spec)
	}

	wantFiles := map[string]string{
		"MetaRouter/demo/greeter":        "routers.yaml",
		"MetaRouter/default/legacy":      "routers.yaml",
		"ApplicationProtocol/demo/trpc":  "k8s/deeper/protocol.yaml",
		"Service/demo/greeter":           "k8s/service.yml",
		"EndpointSlice/demo/greeter-abc": "k8s/service.yml",
		"Pod/demo/greeter-1":             "k8s/service.yml",
		"ServiceEntry/demo/thrift-echo":  "istio.yaml",
		"WorkloadEntry/demo/vm-1":        "istio.yaml",
		"DestinationRule/demo/greeter":   "istio.yaml",
	}
	if len(in.Files) != len(wantFiles) {
		t.Errorf("Files %v, want %d entries", in.Files, len(wantFiles))
	}
	for key, rel := range wantFiles {
		if got := in.Files[key]; got != filepath.Join(dir, rel) {
			t.Errorf("Files[%s] = %q, want %q", key, got, filepath.Join(dir, rel))
		}
	}
}

// Every served version of the Istio kinds is read, into the v1 types.
func TestLoadIstioVersions(t *testing.T) {
	for _, version := range []string{"v1alpha3", "v1beta1", "v1"} {
		t.Run(version, func(t *testing.T) {
			dir := t.TempDir()
			set := func(doc string) string {
				lines := strings.SplitN(doc, "\n", 2)
				return "apiVersion: networking.istio.io/" + version + "\n" + lines[1]
			}
			writeFile(t, dir, "istio.yaml", set(serviceEntry)+"---\n"+set(workloadEntry)+"---\n"+set(destinationRule))
			in := mustLoad(t, dir)
			if len(in.ServiceEntries) != 1 || len(in.WorkloadEntries) != 1 || len(in.DestinationRules) != 1 {
				t.Fatalf("%d ServiceEntries, %d WorkloadEntries, %d DestinationRules, want one each",
					len(in.ServiceEntries), len(in.WorkloadEntries), len(in.DestinationRules))
			}
			if got := in.DestinationRules[0].APIVersion; got != "networking.istio.io/"+version {
				t.Errorf("apiVersion %q", got)
			}
			if in.ServiceEntries[0].Spec.GetEndpoints()[0].GetAddress() != "127.0.0.1" || in.WorkloadEntries[0].Spec.GetAddress() != "10.0.0.9" ||
				in.DestinationRules[0].Spec.GetSubsets()[1].GetName() != "v2" {
				t.Errorf("specs not decoded: %v %v %v", &in.ServiceEntries[0].Spec, &in.WorkloadEntries[0].Spec, &in.DestinationRules[0].Spec)
			}
		})
	}
}

// loadError loads a directory holding one file and returns the one error, which must name
// the file.
func loadError(t *testing.T, content string) string {
	t.Helper()
	dir := t.TempDir()
	path := writeFile(t, dir, "bad.yaml", content)
	in, errs := Load(dir)
	if len(errs) != 1 {
		t.Fatalf("errors %v, want one, for:\n%s", errs, content)
	}
	if in == nil || len(in.Files) != 0 {
		t.Errorf("an invalid file contributed %v", in)
	}
	if !strings.HasPrefix(errs[0].Error(), path+": ") {
		t.Errorf("error %q does not start with the file", errs[0])
	}
	t.Log(errs[0])
	return errs[0].Error()
}

func TestLoadRejects(t *testing.T) {
	withField := func(doc, after, extra string) string {
		if !strings.Contains(doc, after) {
			t.Fatalf("%q not in %s", after, doc)
		}
		return strings.Replace(doc, after, after+extra, 1)
	}
	tests := []struct {
		name, content string
		want          []string
	}{
		// Strict decoding: the document (counted from 1) and the field's path.
		{"unknown MetaRouter field", service + "---\n" + withField(meltemiRouter, "  - name: v2\n", "    timeuot: 1s\n"),
			[]string{"document 2", `unknown field "spec.routes[0].timeuot"`}},
		{"unknown metadata field", withField(appProtocol, "metadata: {", "nmae: x, "), []string{"document 1", `unknown field "metadata.nmae"`}},
		{"unknown Service field", withField(service, "spec:\n", "  selektor: {}\n"), []string{`unknown field "spec.selektor"`}},
		{"unknown Pod field", withField(pod, "spec:\n", "  nodeNam: n\n"), []string{`unknown field "spec.nodeNam"`}},
		{"unknown ServiceEntry field", withField(serviceEntry, "  - address: 127.0.0.1\n", "    weigth: 3\n"),
			[]string{"ServiceEntry", `unknown field "spec.endpoints[0].weigth"`}},
		{"unknown DestinationRule field", withField(destinationRule, "    connectionPool: {tcp: {", "maxConnectons: 1, "),
			[]string{`unknown field "spec.trafficPolicy.connectionPool.tcp.maxConnectons"`}},
		{"two unknown fields", withField(destinationRule, "  - {name: v1, ", "lables: {}, wieght: 1, "),
			[]string{`unknown field "spec.subsets[0].lables"; unknown field "spec.subsets[0].wieght"`}},
		{"generateName", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {generateName: dr-}\nspec: {host: h}\n",
			[]string{"metadata.name: Required value: generateName is not supported in files"}},
		{"unknown envelope field", withField(destinationRule, "metadata: {name: greeter, namespace: demo}\n", "specs: {}\n"),
			[]string{`unknown field "specs"`}},
		{"duplicate field", withField(service, "metadata: {name: greeter, namespace: demo}\n", "metadata: {name: other}\n"),
			[]string{"document 1", `key "metadata" already set`}},
		{"wrong type", strings.Replace(service, "port: 20880", "port: many", 1), []string{"document 1", "port"}},
		{"not YAML", "a: [b\n", []string{"document 1"}},
		{"not an object", "- a\n- b\n", []string{"not an object"}},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}\n", []string{"apiVersion and kind are required"}},
		{"unsupported version", strings.Replace(endpointSlice, "discovery.k8s.io/v1", "discovery.k8s.io/v1beta1", 1),
			[]string{"EndpointSlice.discovery.k8s.io of version v1beta1 is not supported"}},
		{"no name", "apiVersion: v1\nkind: Service\nmetadata: {namespace: demo}\n", []string{"metadata.name"}},
		{"twice in a file", destinationRule + "---\n" + destinationRule, []string{"document 2", "DestinationRule/demo/greeter is defined twice"}},

		// The CRD's OpenAPI schema and CEL rules, as the API server applies them.
		{"route without destinations", "apiVersion: metaprotocol.meltemi.io/v1alpha1\nkind: MetaRouter\nmetadata: {name: r}\nspec: {hosts: [h], routes: [{name: r, route: []}]}\n",
			[]string{"MetaRouter default/r", "spec.routes[0].route"}},
		{"exact and prefix", "apiVersion: metaprotocol.meltemi.io/v1alpha1\nkind: MetaRouter\nmetadata: {name: r}\nspec: {hosts: [h], routes: [{match: {attributes: {method: {exact: a, prefix: b}}}, route: [{destination: {host: h}}]}]}\n",
			[]string{"exactly one of exact, prefix, regex and present must be set"}},
		{"weights not 100", "apiVersion: metaprotocol.aeraki.io/v1alpha1\nkind: MetaRouter\nmetadata: {name: r}\nspec: {hosts: [h], routes: [{route: [{destination: {host: a}, weight: 20}, {destination: {host: b}, weight: 70}]}]}\n",
			[]string{"weights must sum to 100 when there are several destinations"}},
		{"no hosts", "apiVersion: metaprotocol.meltemi.io/v1alpha1\nkind: MetaRouter\nmetadata: {name: r}\nspec: {hosts: []}\n", []string{"spec.hosts"}},
		{"bad protocol name", strings.Replace(appProtocol, "protocol: trpc", "protocol: Tr_pc", 1), []string{"spec.protocol"}},
		{"bad object name", strings.Replace(appProtocol, "name: trpc", "name: Tr_pc", 1), []string{"metadata.name"}},

		// The minimal checks of the Istio kinds.
		{"ServiceEntry without hosts", strings.Replace(serviceEntry, "hosts: [thrift-echo.demo.svc]", "hosts: []", 1), []string{"spec.hosts: Required value"}},
		{"ServiceEntry port without name", strings.Replace(serviceEntry, "name: tcp-thrift-9090, ", "", 1), []string{"spec.ports[0].name: Required value"}},
		{"ServiceEntry STATIC with a hostname", strings.Replace(serviceEntry, "address: 127.0.0.1", "address: echo.example.com", 1),
			[]string{"spec.endpoints[0].address", "STATIC"}},
		{"WorkloadEntry without address", strings.Replace(workloadEntry, "address: 10.0.0.9", "weight: 2", 1), []string{"spec.address: Required value"}},
		{"WorkloadEntry port 0", strings.Replace(workloadEntry, "tcp-dubbo: 20881", "tcp-dubbo: 0", 1), []string{"spec.ports[tcp-dubbo]"}},
		{"DestinationRule without host", strings.Replace(destinationRule, "host: greeter.demo.svc.cluster.local", "exportTo: ['*']", 1), []string{"spec.host: Required value"}},
		{"DestinationRule subsets with one name", strings.Replace(destinationRule, "name: v2,", "name: v1,", 1), []string{"spec.subsets[1].name: Duplicate value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := loadError(t, tt.content)
			for _, want := range tt.want {
				if !strings.Contains(err, want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
		})
	}
}

// A kind the source does not read is skipped, not an error: the directory may hold a whole
// mesh's manifests.
func TestLoadSkipsOtherKinds(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "mesh.yaml", virtualService+"---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {whatever: 1}\n---\n"+service)
	in := mustLoad(t, dir)
	if len(in.Services) != 1 || len(in.Files) != 1 {
		t.Errorf("Files %v, want the Service only", in.Files)
	}
	dec, err := newDecoder()
	if err != nil {
		t.Fatal(err)
	}
	_, warnings, err := dec.decodeFile([]byte(virtualService + "---\n" + service))
	if err != nil || len(warnings) != 1 || !strings.Contains(warnings[0], "document 1: networking.istio.io/v1 VirtualService skipped") {
		t.Errorf("warnings %q, err %v", warnings, err)
	}
}

// An object defined in two files is an error of the later file, whose objects are all left
// out; the earlier file's stay.
func TestLoadDuplicateAcrossFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", destinationRule)
	later := writeFile(t, dir, "b.yaml", service+"---\n"+strings.Replace(destinationRule, "name: v2,", "name: v3,", 1))
	in, errs := Load(dir)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), later+": ") ||
		!strings.Contains(errs[0].Error(), "DestinationRule/demo/greeter is already defined in "+filepath.Join(dir, "a.yaml")) {
		t.Fatalf("errors %v, want one for %s", errs, later)
	}
	if len(in.Services) != 0 || len(in.DestinationRules) != 1 || in.DestinationRules[0].Spec.GetSubsets()[1].GetName() != "v2" {
		t.Errorf("in effect: %v", in.Files)
	}
}

func TestLoadMissingDirectory(t *testing.T) {
	in, errs := Load(filepath.Join(t.TempDir(), "nowhere"))
	if in != nil || len(errs) != 1 || !errors.Is(errs[0], os.ErrNotExist) {
		t.Errorf("Load of a missing directory: %v, %v", in, errs)
	}
}
