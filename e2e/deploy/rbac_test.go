//go:build envtest

package deploy

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"
)

// workload is what the controller acts on in TestRBACIsEnough: a Dubbo Service with an
// endpoint, a MetaRouter for it, and a Thrift ServiceEntry without addresses (it needs a VIP).
const workload = `
apiVersion: v1
kind: Namespace
metadata: {name: istio-system}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop}
spec:
  selector: {app: orders}
  ports: [{name: tcp-dubbo, port: 20880, targetPort: 20880}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: orders-1
  namespace: shop
  labels: {kubernetes.io/service-name: orders}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1], conditions: {ready: true}}]
ports: [{name: tcp-dubbo, port: 20880}]
---
apiVersion: metaprotocol.meltemi.io/v1alpha1
kind: MetaRouter
metadata: {name: orders, namespace: shop}
spec:
  hosts: [orders.shop.svc.cluster.local]
  routes:
  - name: all
    route:
    - destination: {host: orders.shop.svc.cluster.local}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: billing, namespace: shop}
spec:
  hosts: [billing.example.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{name: tcp-thrift, number: 9090, protocol: TCP}]
  endpoints: [{address: 10.0.0.2}]
`

// syncBuffer is a bytes.Buffer safe for a process writing while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRBACIsEnough runs the controller binary with the arguments the chart renders, as the
// chart's ServiceAccount (a client certificate for its user name, so the API server's RBAC
// authorizer applies exactly the chart's ClusterRole and Role), and checks that it does the
// whole job: leader election, EnvoyFilters, a ServiceEntry VIP, MetaRouter status, and never
// a "forbidden" in its log. With TestChartDefaults (exactly these rules, no wildcards) the
// RBAC is both sufficient and minimal.
func TestRBACIsEnough(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal(`KUBEBUILDER_ASSETS is unset: run with KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)"`)
	}
	ctrllog.SetLogger(logr.Discard())
	root := repoRoot(t)
	te := &envtest.Environment{
		CRDDirectoryPaths: []string{
			filepath.Join(root, CRDDir),
			istioCRDFile(t),
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
	admin, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The chart's ServiceAccount and RBAC, for real.
	r := render(t, nil)
	objs := decodeAll(t, "namespace", []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: "+Namespace+"}\n"))
	for _, o := range r.objs {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding":
			objs = append(objs, o)
		}
	}
	objs = append(objs, decodeAll(t, "workload", []byte(workload))...)
	for _, o := range objs {
		if err := admin.Apply(ctx, client.ApplyConfigurationFromUnstructured(o.DeepCopy()), client.FieldOwner("meltemi-deploy-test"), client.ForceOwnership); err != nil {
			t.Fatalf("apply %s %s: %v", o.GetKind(), o.GetName(), err)
		}
	}

	user, err := te.AddUser(envtest.User{
		Name:   "system:serviceaccount:" + Namespace + ":meltemi-controller",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + Namespace, "system:authenticated"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	// The ServiceAccount may not read Secrets: the authorizer is really in the way.
	sa, err := client.New(user.Config(), client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	secrets := &unstructured.UnstructuredList{}
	secrets.SetAPIVersion("v1")
	secrets.SetKind("SecretList")
	if err := sa.List(ctx, secrets); !apierrors.IsForbidden(err) {
		t.Fatalf("listing Secrets as the controller's ServiceAccount: %v, want forbidden", err)
	}

	// The chart's arguments, plus local addresses and the kubeconfig (later flags win).
	var d struct {
		Spec struct {
			Template struct {
				Spec struct {
					Containers []struct {
						Args []string `json:"args"`
					} `json:"containers"`
				} `json:"spec"`
			} `json:"template"`
		} `json:"spec"`
	}
	for _, o := range r.objs {
		if o.GetKind() == "Deployment" {
			b, err := yaml.Marshal(o.Object)
			if err != nil {
				t.Fatal(err)
			}
			if err := yaml.Unmarshal(b, &d); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatal("no controller container in the rendered Deployment")
	}
	args := append(d.Spec.Template.Spec.Containers[0].Args, "--kubeconfig="+kubeconfig,
		"--xds-address=127.0.0.1:0", "--metrics-address=127.0.0.1:0", "--log-level=debug", "--log-format=text",
		"--debounce=10ms", "--istio-debounce=100ms")

	logs := &syncBuffer{}
	cmd := exec.Command(controllerBin, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+Namespace)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("controller exit: %v\n%s", err, logs)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("controller did not stop on SIGINT")
		}
	}()

	check := map[string]func() (bool, error){
		"Lease meltemi-controller held": func() (bool, error) {
			l := &unstructured.Unstructured{}
			l.SetAPIVersion("coordination.k8s.io/v1")
			l.SetKind("Lease")
			if err := admin.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: "meltemi-controller"}, l); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			h, _, _ := unstructured.NestedString(l.Object, "spec", "holderIdentity")
			return h != "", nil
		},
		// Outbound filters of services exported everywhere go to the root namespace, inbound
		// ones next to the workloads: both namespaces are written.
		"EnvoyFilters written": func() (bool, error) {
			l := &unstructured.UnstructuredList{}
			l.SetAPIVersion("networking.istio.io/v1alpha3")
			l.SetKind("EnvoyFilterList")
			if err := admin.List(ctx, l, client.MatchingLabels{"app.kubernetes.io/managed-by": "meltemi-controller"}); err != nil {
				return false, err
			}
			ns := map[string]int{}
			for _, f := range l.Items {
				ns[f.GetNamespace()]++
			}
			return ns["istio-system"] > 0 && ns["shop"] > 0, nil
		},
		"ServiceEntry VIP": func() (bool, error) {
			se := &unstructured.Unstructured{}
			se.SetAPIVersion("networking.istio.io/v1")
			se.SetKind("ServiceEntry")
			if err := admin.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "billing"}, se); err != nil {
				return false, err
			}
			a, _, _ := unstructured.NestedStringSlice(se.Object, "spec", "addresses")
			return len(a) == 1 && strings.HasPrefix(a[0], "240.240."), nil
		},
		"MetaRouter status": func() (bool, error) {
			mr := &unstructured.Unstructured{}
			mr.SetAPIVersion("metaprotocol.meltemi.io/v1alpha1")
			mr.SetKind("MetaRouter")
			if err := admin.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "orders"}, mr); err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(mr.Object, "status", "conditions")
			for _, c := range conds {
				if m, _ := c.(map[string]any); m["type"] == "Accepted" && m["status"] == string(metav1.ConditionTrue) {
					return true, nil
				}
			}
			return false, nil
		},
	}
	for what, ok := range check {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
			select {
			case err := <-exited:
				t.Fatalf("controller exited: %v\n%s", err, logs)
			default:
			}
			return ok()
		})
		if err != nil {
			t.Fatalf("%s: not within 60s: %v\n%s", what, err, logs)
		}
	}
	if l := strings.ToLower(logs.String()); strings.Contains(l, "forbidden") || strings.Contains(l, "write failed") {
		t.Errorf("the controller was refused something:\n%s", logs)
	}
}
