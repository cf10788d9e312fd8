//go:build envtest

package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// repoRoot is the repository root, found from this file's path.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// decodeAll splits a multi-document YAML stream into objects, skipping empty documents.
func decodeAll(t *testing.T, name string, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var out []*unstructured.Unstructured
	d := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		err := d.Decode(&m)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: document %d: %v", name, len(out)+1, err)
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
}

// rendered is the chart rendered with some values, as objects.
type rendered struct {
	manifest string
	objs     []*unstructured.Unstructured
}

func render(t *testing.T, values map[string]any) rendered {
	t.Helper()
	m, err := Render(filepath.Join(repoRoot(t), ChartDir), Namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	return rendered{manifest: m, objs: decodeAll(t, "rendered chart", []byte(m))}
}

// get converts the one object of that kind and name into out; it fails when there is none.
func (r rendered) get(t *testing.T, kind, name string, out any) {
	t.Helper()
	if !r.find(t, kind, name, out) {
		t.Fatalf("no %s %s in the rendered chart", kind, name)
	}
}

func (r rendered) find(t *testing.T, kind, name string, out any) bool {
	t.Helper()
	for _, o := range r.objs {
		if o.GetKind() == kind && o.GetName() == name {
			if err := runtimeFromUnstructured(o, out); err != nil {
				t.Fatalf("%s %s: %v", kind, name, err)
			}
			return true
		}
	}
	return false
}

func (r rendered) kinds() []string {
	var out []string
	for _, o := range r.objs {
		out = append(out, o.GetKind()+"/"+o.GetName())
	}
	sort.Strings(out)
	return out
}

// controllerBin is the controller binary TestMain builds once for the tests that run it; it
// is set before any test runs and never changed.
var controllerBin string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "meltemi-deploy-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	_, file, _, _ := runtime.Caller(0)
	controllerBin = filepath.Join(dir, "meltemi-controller")
	build := exec.Command("go", "build", "-o", controllerBin, "./controlplane/cmd/meltemi-controller")
	build.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the controller: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// controllerFlags returns the flags the controller's --help lists.
func controllerFlags(t *testing.T) map[string]bool {
	t.Helper()
	bin := controllerBin
	var help bytes.Buffer
	cmd := exec.Command(bin, "--help")
	cmd.Stdout, cmd.Stderr = &help, &help
	_ = cmd.Run() // exits 2 after printing the usage
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(help.String(), -1) {
		flags[m[1]] = true
	}
	if !flags["source"] || !flags["xds-address"] {
		t.Fatalf("cannot read the controller's flags from --help:\n%s", help.String())
	}
	return flags
}

// argFlags maps each --flag=value argument to its value.
func argFlags(t *testing.T, args []string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, a := range args {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Fatalf("argument %q is not --flag=value", a)
		}
		if _, dup := out[name]; dup {
			t.Fatalf("flag --%s given twice in %q", name, args)
		}
		out[name] = value
	}
	return out
}

// rbacRules flattens rules into "group/resource[:name]/verb" strings, sorted.
func rbacRules(t *testing.T, rules []rbacv1.PolicyRule) []string {
	t.Helper()
	var out []string
	for _, r := range rules {
		if len(r.NonResourceURLs) > 0 {
			t.Errorf("non-resource rule %v", r)
		}
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					if g == "*" || res == "*" || v == "*" {
						t.Errorf("wildcard in rule %v", r)
					}
					key := g + "/" + res
					if len(r.ResourceNames) > 0 {
						key += ":" + strings.Join(r.ResourceNames, ",")
					}
					out = append(out, key+"/"+v)
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func expand(groupResources string, verbs ...string) []string {
	var out []string
	for _, v := range verbs {
		out = append(out, groupResources+"/"+v)
	}
	return out
}

// wantClusterRules is what the controller's code does cluster-wide, and nothing more.
func wantClusterRules() []string {
	var out []string
	read := []string{"get", "list", "watch"}
	for _, gr := range []string{
		"/services", "/pods", "discovery.k8s.io/endpointslices",
		"networking.istio.io/serviceentries", "networking.istio.io/workloadentries", "networking.istio.io/destinationrules",
		"metaprotocol.meltemi.io/metarouters", "metaprotocol.meltemi.io/applicationprotocols",
		"metaprotocol.aeraki.io/metarouters",
	} {
		out = append(out, expand(gr, read...)...)
	}
	out = append(out, expand("networking.istio.io/serviceentries", "patch")...)
	out = append(out, expand("networking.istio.io/envoyfilters", "list", "create", "patch", "delete")...)
	out = append(out, expand("metaprotocol.meltemi.io/metarouters/status", "patch")...)
	out = append(out, expand("metaprotocol.meltemi.io/applicationprotocols/status", "patch")...)
	sort.Strings(out)
	return out
}

func wantLeaseRules() []string {
	out := append(expand("coordination.k8s.io/leases", "create"), expand("coordination.k8s.io/leases:meltemi-controller", "get", "update")...)
	sort.Strings(out)
	return out
}

// TestChartDefaults checks the properties the issue promises of the default installation.
func TestChartDefaults(t *testing.T) {
	r := render(t, nil)
	want := []string{
		"ClusterRole/meltemi-controller", "ClusterRoleBinding/meltemi-controller",
		"CustomResourceDefinition/applicationprotocols.metaprotocol.meltemi.io",
		"CustomResourceDefinition/metarouters.metaprotocol.meltemi.io",
		"Deployment/meltemi-controller", "PodDisruptionBudget/meltemi-controller",
		"Role/meltemi-controller-leader-election", "RoleBinding/meltemi-controller-leader-election",
		"Service/meltemi-controller", "ServiceAccount/meltemi-controller",
	}
	if got := r.kinds(); !slices.Equal(got, want) {
		t.Errorf("objects:\n got %q\nwant %q", got, want)
	}
	for _, o := range r.objs {
		if o.GetKind() != "CustomResourceDefinition" && o.GetKind() != "ClusterRole" && o.GetKind() != "ClusterRoleBinding" && o.GetNamespace() != Namespace {
			t.Errorf("%s/%s in namespace %q, want %q", o.GetKind(), o.GetName(), o.GetNamespace(), Namespace)
		}
	}

	var d appsv1.Deployment
	r.get(t, "Deployment", "meltemi-controller", &d)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	sel, err := labelsSelector(d.Spec.Selector.MatchLabels)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the Deployment's selector %v does not match its pods' labels %v", d.Spec.Selector, d.Spec.Template.Labels)
	}
	if d.Spec.Template.Labels["sidecar.istio.io/inject"] != "false" {
		t.Errorf("controller pods must not get a sidecar: labels %v", d.Spec.Template.Labels)
	}
	pref := d.Spec.Template.Spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution
	if len(pref) != 1 || pref[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" ||
		!labels.SelectorFromSet(pref[0].PodAffinityTerm.LabelSelector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) ||
		d.Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution != nil {
		t.Errorf("want one preferred pod anti-affinity on the hostname over the controller's pods, got %+v", d.Spec.Template.Spec.Affinity)
	}
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != "15014" || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("metrics annotations %v", ann)
	}
	if sa := d.Spec.Template.Spec.ServiceAccountName; sa != "meltemi-controller" {
		t.Errorf("serviceAccountName %q", sa)
	}
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	c := d.Spec.Template.Spec.Containers[0]
	if c.Image != "ghcr.io/meltemi-mesh/meltemi-controller:0.1.0" {
		t.Errorf("image %q", c.Image)
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if ports["grpc-xds"] != 15010 || ports["http-metrics"] != 15014 || len(ports) != 2 {
		t.Errorf("container ports %v", ports)
	}
	for name, p := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != name || p.HTTPGet.Port.String() != "http-metrics" {
			t.Errorf("probe %s: %+v", name, p)
		}
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := c.Resources.Requests[res], c.Resources.Limits[res]
		if req.IsZero() || lim.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("%s: request %v, limit %v", res, req.String(), lim.String())
		}
	}
	sc, psc := c.SecurityContext, d.Spec.Template.Spec.SecurityContext
	if sc == nil || psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("security context: pod %+v, container %+v", psc, sc)
	}

	// The arguments are flags the controller has, with the promised defaults.
	known := controllerFlags(t)
	args := argFlags(t, c.Args)
	for name := range args {
		if !known[name] {
			t.Errorf("argument --%s is not a flag of meltemi-controller (flags: %v)", name, slices.Sorted(maps.Keys(known)))
		}
	}
	for name, value := range map[string]string{
		"source": "kube", "xds-address": ":15010", "metrics-address": ":15014",
		"istio": "true", "root-namespace": "istio-system", "workload-label": "meltemi.io/plugin=enabled",
		"plugin-path": "/usr/local/lib/meltemi/meltemi.so", "inbound": "true", "vip-range": "240.240.0.0/16",
		"xds-service-address": "meltemi-controller.meltemi-system.svc:15010", "istio-debounce": "1s",
		"leader-elect": "true", "leader-election-namespace": Namespace, "leader-election-lease-duration": "15s",
		"leader-election-renew-deadline": "10s", "leader-election-retry-period": "2s",
	} {
		if args[name] != value {
			t.Errorf("--%s=%q, want %q", name, args[name], value)
		}
	}
	for _, name := range []string{"namespaces", "plaintext-transport-socket", "kubeconfig"} {
		if _, ok := args[name]; ok {
			t.Errorf("--%s given by default: %q", name, c.Args)
		}
	}

	var svc corev1.Service
	r.get(t, "Service", "meltemi-controller", &svc)
	svcPorts := map[string]string{}
	for _, p := range svc.Spec.Ports {
		svcPorts[p.Name] = fmt.Sprintf("%d->%s", p.Port, p.TargetPort.String())
	}
	if want := map[string]string{"grpc-xds": "15010->grpc-xds", "http-metrics": "15014->http-metrics"}; !maps.Equal(svcPorts, want) {
		t.Errorf("service ports %v, want %v", svcPorts, want)
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("the Service's selector %v does not select the controller's pods", svc.Spec.Selector)
	}

	var pdb policyv1.PodDisruptionBudget
	r.get(t, "PodDisruptionBudget", "meltemi-controller", &pdb)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.String() != "1" || pdb.Spec.MaxUnavailable != nil ||
		!labels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("PodDisruptionBudget %+v", pdb.Spec)
	}

	var cr rbacv1.ClusterRole
	r.get(t, "ClusterRole", "meltemi-controller", &cr)
	if got, want := rbacRules(t, cr.Rules), wantClusterRules(); !slices.Equal(got, want) {
		t.Errorf("ClusterRole rules:\n got %q\nwant %q", got, want)
	}
	var role rbacv1.Role
	r.get(t, "Role", "meltemi-controller-leader-election", &role)
	if got, want := rbacRules(t, role.Rules), wantLeaseRules(); !slices.Equal(got, want) {
		t.Errorf("Role rules:\n got %q\nwant %q", got, want)
	}
	var crb rbacv1.ClusterRoleBinding
	r.get(t, "ClusterRoleBinding", "meltemi-controller", &crb)
	var rb rbacv1.RoleBinding
	r.get(t, "RoleBinding", "meltemi-controller-leader-election", &rb)
	for _, b := range []struct {
		ref      rbacv1.RoleRef
		subjects []rbacv1.Subject
		role     string
	}{{crb.RoleRef, crb.Subjects, "ClusterRole/meltemi-controller"}, {rb.RoleRef, rb.Subjects, "Role/meltemi-controller-leader-election"}} {
		if got := b.ref.Kind + "/" + b.ref.Name; got != b.role {
			t.Errorf("binding refers to %s, want %s", got, b.role)
		}
		if len(b.subjects) != 1 || b.subjects[0].Kind != "ServiceAccount" || b.subjects[0].Name != "meltemi-controller" || b.subjects[0].Namespace != Namespace {
			t.Errorf("binding subjects %+v", b.subjects)
		}
	}
}

// nonDefaultValues exercise every optional branch of the templates.
const nonDefaultValues = `
replicaCount: 3
image: {repository: registry.example.com/meltemi/controller, tag: dev, pullPolicy: Always}
imagePullSecrets: [{name: regcred}]
controller:
  namespaces: [shop, billing]
  debounce: 50ms
  maxDebounce: 2s
  logLevel: debug
  logFormat: text
  extraArgs: ["--kubeconfig="]
  env: [{name: GOMEMLIMIT, value: 900MiB}]
istio:
  enabled: true
  rootNamespace: mesh-root
  workloadLabel: example.com/meltemi=yes
  pluginPath: /opt/meltemi/meltemi.so
  xdsServiceAddress: meltemi.example.svc:15010
  inbound: false
  plaintextTransportSocket:
    name: envoy.transport_sockets.raw_buffer
    typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}
  vipRange: 10.250.0.0/16
  debounce: 3s
leaderElection: {enabled: true, namespace: meltemi-leases, leaseDuration: 30s, renewDeadline: 20s, retryPeriod: 4s}
service: {type: ClusterIP, grpcXdsPort: 16010, httpMetricsPort: 16014}
serviceAccount: {create: true, name: meltemi-sa, annotations: {example.com/role: meltemi}}
podDisruptionBudget: {enabled: true, minAvailable: 50%}
podAnnotations: {example.com/team: mesh}
podLabels: {example.com/tier: control}
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/os, operator: In, values: [linux]}]}]
nodeSelector: {kubernetes.io/arch: amd64}
tolerations: [{key: dedicated, operator: Equal, value: mesh, effect: NoSchedule}]
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {app.kubernetes.io/name: meltemi-controller}}}
priorityClassName: system-cluster-critical
terminationGracePeriodSeconds: 60
`

func nonDefault(t *testing.T) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.UnmarshalStrict([]byte(nonDefaultValues), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestChartValues renders non-default values and checks they reach the objects.
func TestChartValues(t *testing.T) {
	r := render(t, nonDefault(t))
	var d appsv1.Deployment
	r.get(t, "Deployment", "meltemi-controller", &d)
	c := d.Spec.Template.Spec.Containers[0]
	args := argFlags(t, c.Args)
	known := controllerFlags(t)
	for name := range args {
		if !known[name] {
			t.Errorf("argument --%s is not a flag of meltemi-controller", name)
		}
	}
	for name, value := range map[string]string{
		"xds-address": ":16010", "metrics-address": ":16014", "namespaces": "shop,billing",
		"debounce": "50ms", "max-debounce": "2s", "log-level": "debug", "log-format": "text", "kubeconfig": "",
		"root-namespace": "mesh-root", "workload-label": "example.com/meltemi=yes", "plugin-path": "/opt/meltemi/meltemi.so",
		"xds-service-address": "meltemi.example.svc:15010", "inbound": "false",
		"plaintext-transport-socket": "/etc/meltemi/transport-socket/transport-socket.yaml", "istio-debounce": "3s",
		"leader-election-lease-duration": "30s", "leader-election-renew-deadline": "20s", "leader-election-retry-period": "4s",
		"leader-election-namespace": "meltemi-leases", "vip-range": "10.250.0.0/16",
	} {
		if got, ok := args[name]; !ok || got != value {
			t.Errorf("--%s=%q, want %q", name, got, value)
		}
	}
	if *d.Spec.Replicas != 3 || c.Image != "registry.example.com/meltemi/controller:dev" || c.ImagePullPolicy != corev1.PullAlways ||
		d.Spec.Template.Spec.ServiceAccountName != "meltemi-sa" || d.Spec.Template.Spec.PriorityClassName != "system-cluster-critical" ||
		d.Spec.Template.Spec.Affinity.PodAntiAffinity != nil || d.Spec.Template.Spec.Affinity.NodeAffinity == nil ||
		len(d.Spec.Template.Spec.Tolerations) != 1 || len(d.Spec.Template.Spec.TopologySpreadConstraints) != 1 ||
		d.Spec.Template.Spec.NodeSelector["kubernetes.io/arch"] != "amd64" || len(d.Spec.Template.Spec.ImagePullSecrets) != 1 ||
		d.Spec.Template.Annotations["example.com/team"] != "mesh" || d.Spec.Template.Labels["example.com/tier"] != "control" ||
		len(c.Env) != 1 || c.Env[0].Name != "GOMEMLIMIT" || *d.Spec.Template.Spec.TerminationGracePeriodSeconds != 60 {
		t.Errorf("values not applied to the Deployment: %+v", d.Spec)
	}
	// The transport socket reaches the controller as a file from a ConfigMap.
	var cm corev1.ConfigMap
	r.get(t, "ConfigMap", "meltemi-controller-transport-socket", &cm)
	var ts map[string]any
	if err := yaml.UnmarshalStrict([]byte(cm.Data["transport-socket.yaml"]), &ts); err != nil || ts["name"] != "envoy.transport_sockets.raw_buffer" {
		t.Errorf("transport socket ConfigMap %q: %v", cm.Data, err)
	}
	vols := d.Spec.Template.Spec.Volumes
	if len(vols) != 1 || vols[0].ConfigMap == nil || vols[0].ConfigMap.Name != cm.Name ||
		len(c.VolumeMounts) != 1 || c.VolumeMounts[0].Name != vols[0].Name || !c.VolumeMounts[0].ReadOnly ||
		filepath.Dir(args["plaintext-transport-socket"]) != c.VolumeMounts[0].MountPath {
		t.Errorf("transport socket not mounted where the flag points: volumes %+v, mounts %+v", vols, c.VolumeMounts)
	}
	if d.Spec.Template.Annotations["checksum/transport-socket"] == "" {
		t.Errorf("no checksum annotation rolls the pods when the transport socket changes")
	}

	var role rbacv1.Role
	r.get(t, "Role", "meltemi-controller-leader-election", &role)
	if role.Namespace != "meltemi-leases" {
		t.Errorf("lease Role in %q, want meltemi-leases", role.Namespace)
	}
	var crb rbacv1.ClusterRoleBinding
	r.get(t, "ClusterRoleBinding", "meltemi-controller", &crb)
	if crb.Subjects[0].Name != "meltemi-sa" {
		t.Errorf("ClusterRoleBinding subject %+v", crb.Subjects)
	}
	var pdb policyv1.PodDisruptionBudget
	r.get(t, "PodDisruptionBudget", "meltemi-controller", &pdb)
	if pdb.Spec.MinAvailable.String() != "50%" {
		t.Errorf("PDB minAvailable %v", pdb.Spec.MinAvailable)
	}

	// Off switches.
	off := render(t, map[string]any{
		"istio":               map[string]any{"enabled": false},
		"leaderElection":      map[string]any{"enabled": false},
		"podDisruptionBudget": map[string]any{"enabled": false},
		"serviceAccount":      map[string]any{"create": false, "name": "byo"},
		"rbac":                map[string]any{"create": false},
	})
	want := []string{
		"CustomResourceDefinition/applicationprotocols.metaprotocol.meltemi.io",
		"CustomResourceDefinition/metarouters.metaprotocol.meltemi.io",
		"Deployment/meltemi-controller", "Service/meltemi-controller",
	}
	if got := off.kinds(); !slices.Equal(got, want) {
		t.Errorf("objects with everything optional off:\n got %q\nwant %q", got, want)
	}
	off.get(t, "Deployment", "meltemi-controller", &d)
	args = argFlags(t, d.Spec.Template.Spec.Containers[0].Args)
	for _, name := range []string{"root-namespace", "workload-label", "vip-range", "leader-election-namespace"} {
		if _, ok := args[name]; ok {
			t.Errorf("--%s given with istio and leader election off", name)
		}
	}
	if args["leader-elect"] != "false" || args["istio"] != "false" {
		t.Errorf("--leader-elect=%q --istio=%q, want false (the controller's defaults are true)", args["leader-elect"], args["istio"])
	}
}

// TestGenerated checks that what `make generate` writes is current: the chart's CRDs are
// byte-for-byte those of controlplane/config/crd and the plain manifests are a fresh render.
func TestGenerated(t *testing.T) {
	root := repoRoot(t)
	src, err := filepath.Glob(filepath.Join(root, CRDDir, "*.yaml"))
	if err != nil || len(src) == 0 {
		t.Fatalf("CRDs in %s: %v %v", CRDDir, src, err)
	}
	dst, err := filepath.Glob(filepath.Join(root, ChartDir, "crds", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dst) != len(src) {
		t.Errorf("chart crds/ has %d files, %s has %d: run make generate", len(dst), CRDDir, len(src))
	}
	for _, f := range src {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, ChartDir, "crds", filepath.Base(f)))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("chart CRD %s differs from %s (%v): run make generate", filepath.Base(f), CRDDir, err)
		}
	}
	want, err := Manifests(root)
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(root, ManifestsFile))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is not a fresh render of the chart: run make generate", ManifestsFile)
	}
}

// TestValuesDocumented checks that every value has a comment in values.yaml and a row in the
// chart's README.
func TestValuesDocumented(t *testing.T) {
	root := repoRoot(t)
	raw, err := os.ReadFile(filepath.Join(root, ChartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, ChartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatal(err)
	}
	keys := leafKeys("", values)
	if len(keys) < 30 {
		t.Fatalf("only %d value keys found: %q", len(keys), keys)
	}
	for _, k := range keys {
		if !strings.Contains(string(readme), "| `"+k+"` |") {
			t.Errorf("value %s has no row in the chart's README.md", k)
		}
	}
	// Each value's line is preceded by a comment line, unless it is a section whose children
	// are commented. Inside Kubernetes-typed values (resources, security contexts) the
	// comment on the value itself covers its fields.
	lines := strings.Split(string(raw), "\n")
	keyLine := regexp.MustCompile(`^( *)([A-Za-z][A-Za-z0-9]*):`)
	top := ""
	for i, l := range lines {
		m := keyLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if m[1] == "" {
			top = m[2]
		} else if top == "resources" || top == "podSecurityContext" || top == "securityContext" {
			continue
		}
		prev := ""
		if i > 0 {
			prev = strings.TrimSpace(lines[i-1])
		}
		section := strings.TrimSpace(strings.TrimPrefix(l, m[0])) == ""
		if !strings.HasPrefix(prev, "#") && !section {
			t.Errorf("values.yaml line %d (%s) has no comment above it", i+1, strings.TrimSpace(l))
		}
	}
}

// leafKeys lists the dotted paths of a values tree, stopping at values that are not maps or
// are empty maps (a map-typed value such as podAnnotations).
func leafKeys(prefix string, m map[string]any) []string {
	var out []string
	for k, v := range m {
		p := k
		if prefix != "" {
			p = prefix + "." + k
		}
		switch v := v.(type) {
		case map[string]any:
			if len(v) == 0 || p == "resources" || p == "podSecurityContext" || p == "securityContext" {
				out = append(out, p)
				continue
			}
			out = append(out, leafKeys(p, v)...)
		default:
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

func labelsSelector(m map[string]string) (labels.Selector, error) {
	if len(m) == 0 {
		return nil, errors.New("empty selector")
	}
	return labels.SelectorFromSet(m), nil
}

// runtimeFromUnstructured converts o into a typed object, failing on unknown fields.
func runtimeFromUnstructured(o *unstructured.Unstructured, out any) error {
	return k8sruntime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, out, true)
}

// TestChartLint runs Helm's linter (as `helm lint --strict`) with the default and the
// non-default values: no errors and no warnings.
func TestChartLint(t *testing.T) {
	for name, values := range map[string]map[string]any{"default": nil, "non-default": nonDefault(t), "strict mTLS": strictMTLSValues(t)} {
		l := action.NewLint()
		l.Strict = true
		l.Namespace = Namespace
		res := l.Run([]string{filepath.Join(repoRoot(t), ChartDir)}, values)
		t.Logf("%s values: %d lint messages (info and above)", name, len(res.Messages))
		for _, err := range res.Errors {
			t.Errorf("%s values: %v", name, err)
		}
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("%s values: %s", name, m.Error())
			}
		}
	}
}
