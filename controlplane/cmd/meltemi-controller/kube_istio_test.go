//go:build envtest

package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/istio"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/source/kube"
)

// TestRunKubeIstio runs the program in Istio mode (the default with --source=kube) with
// the Istio flags set: the EnvoyFilter it writes carries them (workload selector, plugin
// path, xDS address, root namespace), the replica leads the Lease in --leader-election-
// namespace, and /metrics says so.
func TestRunKubeIstio(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal(`KUBEBUILDER_ASSETS is unset: run with KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)"`)
	}
	ctrllog.SetLogger(logr.Discard())
	_, file, _, _ := runtime.Caller(0)
	apiDir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		t.Fatalf("locate istio.io/api: %v", err)
	}
	te := &envtest.Environment{
		CRDDirectoryPaths: []string{
			filepath.Join(filepath.Dir(file), "..", "..", "config", "crd"),
			filepath.Join(strings.TrimSpace(string(apiDir)), "kubernetes", "customresourcedefinitions.gen.yaml"),
		},
		ErrorIfCRDPathMissing: true,
	}
	if _, err := te.Start(); err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	defer func() {
		if err := te.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	}()
	user, err := te.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
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
	scheme, err := kube.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(user.Config(), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	mr := &v1alpha1.MetaRouter{}
	if err := yaml.UnmarshalStrict([]byte(kubeMetaRouter), mr); err != nil {
		t.Fatal(err)
	}
	for _, o := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "mesh-root"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ctl"}},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: "demo"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "tcp-dubbo", Port: 20880}}},
		},
		mr,
	} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T: %v", o, err)
		}
	}

	logs := &syncBuffer{}
	bound := make(chan addrs, 1)
	done := make(chan error, 1)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() {
		done <- run(runCtx, []string{"--source=kube", "--kubeconfig=" + kubeconfig,
			"--xds-address=127.0.0.1:0", "--metrics-address=127.0.0.1:0",
			"--root-namespace=mesh-root", "--workload-label=example.com/sidecar=meltemi",
			"--plugin-path=/opt/meltemi.so", "--xds-service-address=ctl.ctl.svc:15010", "--inbound=false",
			"--istio-debounce=100ms", "--leader-election-lease-duration=3s", "--leader-election-renew-deadline=2s",
			"--leader-election-retry-period=250ms"},
			func(k string) string {
				if k == "POD_NAMESPACE" {
					return "ctl"
				}
				return ""
			}, logs, func(a addrs) { bound <- a })
	}()
	var a addrs
	select {
	case a = <-bound:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, logs)
	case <-time.After(30 * time.Second):
		t.Fatal("not listening")
	}

	key := client.ObjectKey{Namespace: "mesh-root", Name: "meltemi-outbound-echo.demo.svc.cluster.local"}
	ef := &unstructured.Unstructured{}
	ef.SetGroupVersionKind(istio.EnvoyFilterGVK)
	var getErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if getErr = c.Get(ctx, key, ef); getErr == nil {
			break
		}
	}
	if getErr != nil {
		t.Fatalf("EnvoyFilter %s: %v\n%s", key, getErr, logs)
	}
	sel, _, _ := unstructured.NestedStringMap(ef.Object, "spec", "workloadSelector", "labels")
	if len(sel) != 1 || sel["example.com/sidecar"] != "meltemi" {
		t.Errorf("workloadSelector %v; want example.com/sidecar=meltemi", sel)
	}
	spec, _ := yaml.Marshal(ef.Object["spec"])
	for _, want := range []string{"/opt/meltemi.so", "ctl.ctl.svc:15010"} {
		if !strings.Contains(string(spec), want) {
			t.Errorf("EnvoyFilter spec lacks %q:\n%s", want, spec)
		}
	}
	inbound := &unstructured.Unstructured{}
	inbound.SetGroupVersionKind(istio.EnvoyFilterGVK)
	if err := c.Get(ctx, client.ObjectKey{Namespace: "demo", Name: "meltemi-inbound-echo.demo.svc.cluster.local"}, inbound); err == nil {
		t.Error("--inbound=false, yet an inbound EnvoyFilter was written")
	}

	// The Lease is in POD_NAMESPACE, held by this replica; /metrics says it leads.
	lease := &unstructured.Unstructured{}
	lease.SetAPIVersion("coordination.k8s.io/v1")
	lease.SetKind("Lease")
	if err := c.Get(ctx, client.ObjectKey{Namespace: "ctl", Name: istio.LeaseName}, lease); err != nil {
		t.Fatalf("Lease: %v", err)
	}
	resp, err := http.Get("http://" + a.Metrics.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"meltemi_controller_leader 1", "meltemi_istio_envoyfilter_applies_total"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}
