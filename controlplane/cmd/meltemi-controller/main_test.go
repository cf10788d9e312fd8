package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/controller"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

const serviceEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: thrift-echo, namespace: demo}
spec:
  hosts: [thrift-echo.demo.svc.cluster.local]
  ports: [{number: 9090, name: tcp-thrift-9090, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {tcp-thrift-9090: 9091}
    labels: {version: v1}
`

const metaRouter = `apiVersion: metaprotocol.meltemi.io/v1alpha1
kind: MetaRouter
metadata: {name: echo, namespace: demo}
spec:
  hosts: [thrift-echo.demo.svc.cluster.local]
  routes:
  - name: all-to-echo
    route:
    - destination:
        host: thrift-echo.demo.svc.cluster.local
        port: {number: 9090}
`

// syncBuffer is a log sink safe for the program's goroutines.
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

// TestRunFileSource runs the program on a directory, fetches the route configuration of the
// ServiceEntry's port over ADS, adds a MetaRouter file and sees the new routes pushed.
func TestRunFileSource(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "echo.yaml"), []byte(serviceEntry), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &syncBuffer{}
	bound := make(chan addrs, 1)
	done := make(chan error, 1)
	env := func(k string) string {
		if k == "MELTEMI_CONFIG_DIR" {
			return dir // the default directory comes from the environment
		}
		return ""
	}
	go func() {
		done <- run(ctx, []string{"--xds-address=127.0.0.1:0", "--metrics-address=127.0.0.1:0",
			"--debounce=20ms", "--log-format=json", "--log-level=debug"}, env, logs, func(a addrs) { bound <- a })
	}()
	var a addrs
	select {
	case a = <-bound:
	case err := <-done:
		t.Fatalf("run: %v\n%s", err, logs)
	case <-time.After(10 * time.Second):
		t.Fatal("not listening")
	}

	conn, err := grpc.NewClient("passthrough:///"+a.XDS.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	name := apiv1alpha1.ResourceName(apiv1alpha1.Outbound, 9090, "", "thrift-echo.demo.svc.cluster.local")
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "test"}, TypeUrl: apiv1alpha1.RouteConfigurationTypeURL, ResourceNames: []string{name}}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	// recvRoute reads responses (ACKing each) until one carries the route configuration
	// with a route named want; first: it must be the first response.
	recvRoute := func(want string, first bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for n := 0; time.Now().Before(deadline); n++ {
			if first && n > 0 {
				break
			}
			resp, err := stream.Recv()
			if err != nil {
				t.Fatalf("recv: %v\n%s", err, logs)
			}
			ack := &discoveryv3.DiscoveryRequest{TypeUrl: resp.TypeUrl, ResourceNames: []string{name}, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce}
			if err := stream.Send(ack); err != nil {
				t.Fatal(err)
			}
			for _, res := range resp.Resources {
				rc := &apiv1alpha1.RouteConfiguration{}
				if err := res.UnmarshalTo(rc); err != nil {
					t.Fatal(err)
				}
				if rc.Name == name && len(rc.Routes) == 1 && rc.Routes[0].Name == want {
					return
				}
				t.Logf("route configuration %s: %v", rc.Name, rc.Routes)
			}
		}
		t.Fatalf("no route configuration %s with route %q\n%s", name, want, logs)
	}
	// The server answers only once the directory is applied: the first response has the
	// ServiceEntry's default route.
	recvRoute("default", true)

	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + a.Metrics.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d after the first configuration", code)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d", code)
	}
	code, metrics := get("/metrics")
	for _, m := range []string{"meltemi_xds_pushes_total", "meltemi_controller_syncs_total", "meltemi_xds_connected_streams", "go_goroutines"} {
		if code != http.StatusOK || !strings.Contains(metrics, m) {
			t.Fatalf("/metrics (%d) lacks %s", code, m)
		}
	}

	// A MetaRouter file is picked up live and its route pushed.
	if err := os.WriteFile(filepath.Join(dir, "router.yaml"), []byte(metaRouter), 0o644); err != nil {
		t.Fatal(err)
	}
	recvRoute("all-to-echo", false)

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after cancel")
	}
	if !strings.Contains(logs.String(), `"msg":"starting"`) {
		t.Fatalf("no JSON log line: %s", logs)
	}
}

// TestReadyz: /readyz fails until the first configuration is applied; /healthz does not.
func TestReadyz(t *testing.T) {
	ctrl := controller.New(controller.Options{})
	h := httpHandler(prometheus.NewRegistry(), ctrl)
	get := func(path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	if code := get("/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz %d before the first sync", code)
	}
	if code := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz %d", code)
	}
	ctrl.Sync(&model.Inputs{})
	ctrl.Server().Flush()
	if code := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz %d after the first sync", code)
	}
}

func TestRunFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--source=nope"},
		{"--log-level=loud"},
		{"--log-format=xml"},
		{"extra"},
	} {
		if err := run(context.Background(), args, func(string) string { return "" }, io.Discard, nil); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestRunMissingDir: a configuration directory that does not exist stops the program with
// an error naming the source, instead of serving nothing.
func TestRunMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nope")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, []string{"--config-dir=" + dir, "--xds-address=127.0.0.1:0", "--metrics-address=127.0.0.1:0"},
		func(string) string { return "" }, io.Discard, nil)
	if err == nil || !strings.Contains(err.Error(), "file source") || ctx.Err() != nil {
		t.Fatalf("run: %v (ctx %v)", err, ctx.Err())
	}
}
