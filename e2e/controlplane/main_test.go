// Package controlplane_test runs Meltemi's control plane end to end: the controller binary
// (controlplane/cmd/meltemi-controller, a real process with its file source on a directory of
// YAML the test writes), the plugin library (the .so Envoy loads) in abihost, whose filter
// configurations take their routes, clusters and endpoints from the controller over xDS
// (rds), and real peers behind it: apache/thrift's Go server and client, dubbo-go providers
// (the demo's, as subprocesses) and consumers.
//
// The cases are what the control plane promises a user: a MetaRouter edited while clients
// send continuously moves the traffic within 2 s and no request fails; a controller that
// dies leaves the routing as it was, and one that comes back is resynced (including the
// change made meanwhile); an endpoint added to a ServiceEntry gets traffic within 2 s.
// Every socket is on a free port.
package controlplane_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meltemi-mesh/meltemi/e2e/abihost"
	"github.com/meltemi-mesh/meltemi/e2e/internal/dubbopeer"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// callTimeout bounds every call and socket operation of a test client: a proxy that loses a
// reply must fail the test, not hang it.
const callTimeout = 5 * time.Second

// moveBound is what the control plane promises for a change of a file: requests that start
// this long after the write see it.
const moveBound = 2 * time.Second

// Paths of the built artifacts, set by TestMain.
var (
	hostBin       string // abihost
	pluginSO      string // the plugin, as shipped
	controllerBin string // meltemi-controller
	demoBin       string // meltemi-demo: the Dubbo providers
	buildErr      error
)

func TestMain(m *testing.M) {
	if err := dubbopeer.Quiet("error"); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	dir, err := os.MkdirTemp("", "meltemi-controlplane-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildErr = build(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build builds abihost, the plugin, the controller and the demo command into dir, once for
// every test. MELTEMI_SO selects an already built plugin (make build's bin/meltemi.so).
func build(dir string) error {
	var err error
	if hostBin, err = abihost.Build(); err != nil {
		return err
	}
	controllerBin = filepath.Join(dir, "meltemi-controller")
	demoBin = filepath.Join(dir, "meltemi-demo")
	builds := [][]string{
		{"build", "-o", controllerBin, "github.com/meltemi-mesh/meltemi/controlplane/cmd/meltemi-controller"},
		{"build", "-o", demoBin, "github.com/meltemi-mesh/meltemi/e2e/demo/cmd/meltemi-demo"},
	}
	pluginSO = os.Getenv("MELTEMI_SO")
	if pluginSO == "" {
		pluginSO = filepath.Join(dir, "meltemi.so")
		builds = append(builds, []string{"build", "-buildmode=c-shared", "-o", pluginSO, "github.com/meltemi-mesh/meltemi/plugin"})
	}
	for _, args := range builds {
		cmd := exec.Command("go", args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// controller is a meltemi-controller process with the file source on dir. It can be killed
// and started again on the same addresses.
type controller struct {
	t                 *testing.T
	dir, xds, metrics string
	log               *syncBuffer // the output of every run
	runs              int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// startController starts the controller on dir and waits until it is ready; it is killed
// when the test ends, and its log shown if the test failed.
func startController(t *testing.T, dir string) *controller {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	c := &controller{t: t, dir: dir, xds: freeAddr(t), metrics: freeAddr(t), log: &syncBuffer{}}
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			t.Logf("controller log:\n%s", c.log.String())
		}
	})
	c.start()
	return c
}

// start runs the controller process and waits until /readyz answers 200: it has read the
// directory and its xDS server has the configuration.
func (c *controller) start() {
	c.t.Helper()
	c.runs++
	fmt.Fprintf(c.log, "=== run %d\n", c.runs)
	cmd := exec.Command(controllerBin, "--source=file", "--config-dir", c.dir,
		"--xds-address", c.xds, "--metrics-address", c.metrics, "--log-level", "debug")
	cmd.Stdout, cmd.Stderr = c.log, c.log
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("controller: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	c.mu.Lock()
	c.cmd, c.exited = cmd, exited
	c.mu.Unlock()
	hc := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-exited:
			c.t.Fatalf("controller exited before it was ready: %v\n%s", cmd.ProcessState, c.log.String())
		default:
		}
		if resp, err := hc.Get("http://" + c.metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("controller not ready after 30s:\n%s", c.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the controller with SIGKILL (no goodbye to its xDS clients) and waits for it.
func (c *controller) kill() {
	c.mu.Lock()
	cmd, exited := c.cmd, c.exited
	c.cmd = nil
	c.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// mesh writes the YAML manifests of one service into the controller's directory: service.yaml
// (a ServiceEntry with static endpoints labelled by version, and a DestinationRule with the
// subsets v1, v2) and router.yaml (a MetaRouter). Files are replaced atomically (a hidden
// temporary file renamed over), as editors and ConfigMap updates do.
type mesh struct {
	dir      string
	protocol string // thrift or dubbo: the port name's prefix
	host     string
	port     uint32 // the service port: a name in the resource names, not a socket
}

func newMesh(t *testing.T, protocol string) *mesh {
	return &mesh{dir: t.TempDir(), protocol: protocol,
		host: protocol + "-echo.e2e.svc.cluster.local", port: 7000}
}

// routeConfigName is the route configuration the controller serves for the service.
func (m *mesh) routeConfigName() string {
	return apiv1alpha1.ResourceName(apiv1alpha1.Outbound, m.port, "", m.host)
}

// endpoint is one server of the service: its address and version label.
type endpoint struct{ addr, version string }

func (m *mesh) portName() string { return fmt.Sprintf("tcp-%s-%d", m.protocol, m.port) }

// writeService writes the ServiceEntry with endpoints, and the DestinationRule.
func (m *mesh) writeService(t *testing.T, endpoints ...endpoint) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: echo
  namespace: e2e
spec:
  hosts: [%s]
  location: MESH_INTERNAL
  resolution: STATIC
  ports:
  - {number: %d, name: %s, protocol: TCP}
  endpoints:
`, m.host, m.port, m.portName())
	for _, e := range endpoints {
		host, port, err := net.SplitHostPort(e.addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "  - address: %s\n    ports: {%s: %s}\n    labels: {version: %s}\n",
			host, m.portName(), port, e.version)
	}
	fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo
  namespace: e2e
spec:
  host: %s
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, m.host)
	m.write(t, "service.yaml", b.String())
}

// writeRouter writes the MetaRouter that sends every request to subset.
func (m *mesh) writeRouter(t *testing.T, subset string) {
	t.Helper()
	m.write(t, "router.yaml", fmt.Sprintf(`apiVersion: metaprotocol.meltemi.io/v1alpha1
kind: MetaRouter
metadata:
  name: echo
  namespace: e2e
spec:
  hosts: [%s]
  routes:
  - name: all-to-%s
    route:
    - destination: {host: %s, subset: %s}
    timeout: 5s
`, m.host, subset, m.host, subset))
}

// writeBrokenRouter writes a MetaRouter that would send everything to subset but has a
// misspelt field: the file source must reject the file and keep its last good content.
func (m *mesh) writeBrokenRouter(t *testing.T, subset string) {
	t.Helper()
	m.write(t, "router.yaml", fmt.Sprintf(`apiVersion: metaprotocol.meltemi.io/v1alpha1
kind: MetaRouter
metadata:
  name: echo
  namespace: e2e
spec:
  hosts: [%s]
  routes:
  - name: all-to-%s
    route:
    - destination: {host: %s, subset: %s}
    timout: 5s
`, m.host, subset, m.host, subset))
}

func (m *mesh) write(t *testing.T, name, content string) {
	t.Helper()
	tmp := filepath.Join(m.dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, name)); err != nil {
		t.Fatal(err)
	}
}

// startHost runs the plugin in abihost with one listener whose routes come from the
// controller at xds: the route configuration of m's service. The host is stopped when the
// test ends, and the test fails if it did not exit cleanly; its log is shown if the test
// failed.
func startHost(t *testing.T, m *mesh, xds string) *abihost.Host {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	cfg, err := apiv1alpha1.PluginConfigFromJSON(fmt.Appendf(nil,
		`{"protocol": %q, "rds": {"route_config_name": %q, "config_source": %q}}`,
		m.protocol, m.routeConfigName(), xds))
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	h, err := abihost.Start(abihost.Options{Binary: hostBin, Library: pluginSO,
		Listeners: []abihost.Listener{{Plugin: "meltemi", Config: cfg}},
		LogLevel:  "info", Stderr: log})
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Cleanup(func() {
		if err := h.Stop(); err != nil {
			t.Errorf("host: %v", err)
		}
		if t.Failed() {
			t.Logf("host log:\n%s", log.String())
		}
	})
	return h
}

// syncBuffer collects a process's output, up to 4 MiB.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() < 4<<20 {
		s.b.Write(p)
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
