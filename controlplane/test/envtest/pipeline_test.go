//go:build envtest

package envtest_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/source/kube"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/xds"
)

// env is one kube-apiserver + etcd with Meltemi's, Istio's and (a stand-in for) Aeraki's
// CRDs, shared by the cases of TestPipeline.
type env struct {
	te  *envtest.Environment
	cfg *rest.Config
	c   client.Client
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test's source file")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// istioCRDFile finds Istio's CRDs in the istio.io/api module this module requires.
func istioCRDFile(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		t.Fatalf("locate istio.io/api module: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatal("istio.io/api module is not downloaded")
	}
	return filepath.Join(dir, "kubernetes", "customresourcedefinitions.gen.yaml")
}

func startEnv(t *testing.T) *env {
	t.Helper()
	// envtest would silently look in /usr/local/kubebuilder/bin instead; failing here says
	// how to get the binaries.
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Fatal(`KUBEBUILDER_ASSETS is unset: run with KUBEBUILDER_ASSETS="$(hack/envtest-assets.sh)"`)
	}
	// controller-runtime logs through a global logger and complains, with a stack trace,
	// when none is set; the Source reports what matters through its own slog.Logger.
	ctrllog.SetLogger(logr.Discard())
	root := repoRoot(t)
	te := &envtest.Environment{
		CRDDirectoryPaths: []string{
			filepath.Join(root, "controlplane", "config", "crd"),
			istioCRDFile(t),
		},
		ErrorIfCRDPathMissing: true,
	}
	// A fixed certificate directory survives an API server restart (envtest regenerates the
	// serving certificate, and so invalidates every client, when it picked the directory).
	te.ControlPlane.GetAPIServer().CertDir = t.TempDir()
	// With watches open, kube-apiserver takes longer than envtest's default 20 s to shut
	// down gracefully; the restart case kills it after this instead, as a crash would.
	te.ControlPlane.GetAPIServer().StopTimeout = 3 * time.Second
	start := time.Now()
	cfg, err := te.Start()
	if err != nil {
		t.Fatalf("start kube-apiserver and etcd: %v", err)
	}
	t.Logf("kube-apiserver, etcd and CRDs up in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := te.Stop(); err != nil {
			t.Errorf("stop kube-apiserver and etcd: %v", err)
		}
	})
	scheme, err := kube.Scheme()
	if err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return &env{te: te, cfg: cfg, c: c}
}

// pipeline is the controller as the binary runs it: kube Source -> controller -> xDS server
// on a loopback port, status through the kube StatusWriter.
type pipeline struct {
	addr string
	xds  *xds.Server
	// syncs counts the snapshots the source handed the controller.
	syncs func() uint64
}

func startPipeline(t *testing.T, e *env) *pipeline {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	src := &kube.Source{Config: e.cfg, Log: log.With("component", "source"), DiscoveryInterval: time.Second}
	sw, err := kube.NewStatusWriter(e.cfg, src.Reader(), log.With("component", "status"))
	if err != nil {
		t.Fatal(err)
	}
	p, run := wire(t, src, sw, log)
	done := make(chan error, 2)
	go func() { done <- p.xds.Serve(ctx, l) }()
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("pipeline: %v", err)
			}
		}
	})
	p.addr = l.Addr().String()
	return p
}

// testWriter sends logs to t.Log, so that they show only for failing tests (or -v).
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var corev1PodGVK = corev1.SchemeGroupVersion.WithKind("Pod")

// installAerakiCRD installs the stand-in for Aeraki's MetaRouter CRD and waits until it is
// served.
func installAerakiCRD(t *testing.T, ctx context.Context, e *env) {
	t.Helper()
	path := filepath.Join(repoRoot(t), "controlplane", "test", "envtest", "testdata", "aeraki-metarouter-crd.yaml")
	if _, err := envtest.InstallCRDs(e.cfg, envtest.CRDInstallOptions{Paths: []string{path}, ErrorIfPathMissing: true}); err != nil {
		t.Fatalf("install the Aeraki MetaRouter CRD: %v", err)
	}
}
