// Package proxy_test runs Meltemi's plugin library (the .so that Envoy loads) in abihost, the
// C host that drives it as Envoy v1.36 does, between real third-party peers: apache/thrift's
// Go library and Debian's python3-thrift for Thrift, dubbo-go for Dubbo. It checks what a
// user of the proxy sees: routing, weighted splits, timeouts, upstreams that die, requests
// nobody routes, many clients sharing one upstream connection, abusive peers and a codec
// that panics.
//
// Dubbo providers run as subprocesses (this test binary, re-executed by TestMain) so that a
// test can kill one in the middle of a call.
package proxy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meltemi-mesh/meltemi/e2e/abihost"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// callTimeout bounds every call and socket operation of a test client: a proxy that loses a
// reply must fail the test, not hang it.
const callTimeout = 5 * time.Second

// Paths of the built artifacts, set by TestMain.
var (
	hostBin  string // abihost
	pluginSO string // the plugin, as shipped
	boomSO   string // the plugin with the panicking thrift-boom codec (testdata/boomplugin)
	buildErr error
	workDir  string // removed when the tests end
)

func TestMain(m *testing.M) {
	if runSubprocessRole() {
		return // not reached: a role exits the process
	}
	quietDubboLogs()
	var err error
	workDir, err = os.MkdirTemp("", "meltemi-proxy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildErr = build(workDir)
	code := m.Run()
	os.RemoveAll(workDir)
	os.Exit(code)
}

// build builds abihost and both plugin libraries into dir. MELTEMI_SO selects an already
// built plugin (make build's bin/meltemi.so).
func build(dir string) error {
	var err error
	if hostBin, err = abihost.Build(); err != nil {
		return err
	}
	pluginSO = os.Getenv("MELTEMI_SO")
	if pluginSO == "" {
		pluginSO = filepath.Join(dir, "meltemi.so")
		if err := goBuildShared(pluginSO, "github.com/meltemi-mesh/meltemi/plugin"); err != nil {
			return err
		}
	}
	boomSO = filepath.Join(dir, "boom.so")
	return goBuildShared(boomSO, "github.com/meltemi-mesh/meltemi/e2e/proxy/testdata/boomplugin")
}

func goBuildShared(out, pkg string) error {
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// startHost runs library in abihost with one listener per filter configuration (JSON of
// meltemi.plugin.v1alpha1.FilterConfig). The host is stopped when the test ends, and the
// test fails if it did not exit cleanly: a crash anywhere in the plugin shows up there.
func startHost(t *testing.T, library string, configs ...string) *abihost.Host {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	var ls []abihost.Listener
	for _, js := range configs {
		b, err := apiv1alpha1.PluginConfigFromJSON([]byte(js))
		if err != nil {
			t.Fatalf("config %s: %v", js, err)
		}
		ls = append(ls, abihost.Listener{Plugin: "meltemi", Config: b})
	}
	h, err := abihost.Start(abihost.Options{Binary: hostBin, Library: library, Listeners: ls,
		LogLevel: "warn", Stderr: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("host: %v", err)
		}
	})
	return h
}

// assertAlive fails the test if the host process has exited.
func assertAlive(t *testing.T, h *abihost.Host) {
	t.Helper()
	if exited, err := h.Exited(); exited {
		t.Fatalf("the host process exited: %v", err)
	}
}

// testWriter sends the host's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
