// Package plugin_test runs the plugin's shared library (the .so that Envoy loads) in
// abihost, the C host that drives it exactly as Envoy v1.36 does, against real Thrift peers.
package plugin_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/meltemi-mesh/meltemi/e2e/abihost"
	"github.com/meltemi-mesh/meltemi/e2e/interop/thrift/gen-go/echo"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

const callTimeout = 5 * time.Second

// Paths of the built artifacts, set by TestMain.
var (
	hostBin, pluginSO string
	buildErr          error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "meltemi-plugin-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hostBin, pluginSO, buildErr = build(dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build builds abihost and the plugin .so. MELTEMI_SO selects an already built library
// (make build's bin/meltemi.so).
func build(dir string) (host, so string, err error) {
	if host, err = abihost.Build(); err != nil {
		return "", "", err
	}
	if so = os.Getenv("MELTEMI_SO"); so != "" {
		return host, so, nil
	}
	so = filepath.Join(dir, "meltemi.so")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", so, "github.com/meltemi-mesh/meltemi/plugin")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("building the plugin: %w\n%s", err, out)
	}
	return host, so, nil
}

type echoHandler struct{ name string }

func (h echoHandler) Echo(_ context.Context, msg string) (string, error) {
	return h.name + ":" + msg, nil
}
func (echoHandler) Fire(context.Context, string) error        { return nil }
func (echoHandler) LastFired(context.Context) (string, error) { return "", nil }
func (echoHandler) Fail(_ context.Context, msg string) (string, error) {
	return "", &echo.EchoError{Message: msg}
}
func (echoHandler) Header(context.Context, string) (string, error) { return "", nil }

// startServer runs an apache/thrift framed binary Echo server that prefixes replies with name.
func startServer(t *testing.T, name string) string {
	t.Helper()
	conf := &thrift.TConfiguration{}
	sock, err := thrift.NewTServerSocket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := sock.Listen(); err != nil {
		t.Fatal(err)
	}
	srv := thrift.NewTSimpleServer4(echo.NewEchoProcessor(echoHandler{name}), sock,
		thrift.NewTFramedTransportFactoryConf(thrift.NewTTransportFactory(), conf),
		thrift.NewTBinaryProtocolFactoryConf(conf))
	go func() { _ = srv.Serve() }()
	// Stop waits for open connections, which the proxy keeps: the host is stopped first
	// (cleanups run last-in first-out), so they are closed by then.
	t.Cleanup(func() { _ = srv.Stop() })
	return sock.Addr().String()
}

// startHost runs the plugin in abihost with one listener per filter configuration (JSON).
func startHost(t *testing.T, configs ...string) *abihost.Host {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	var ls []abihost.Listener
	for _, js := range configs {
		b, err := apiv1alpha1.PluginConfigFromJSON([]byte(js))
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, abihost.Listener{Plugin: "meltemi", Config: b})
	}
	h, err := abihost.Start(abihost.Options{Binary: hostBin, Library: pluginSO, Listeners: ls,
		Stderr: testWriter{t}})
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

// testWriter sends the host's log to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func client(t *testing.T, addr string) *echo.EchoClient {
	t.Helper()
	conf := &thrift.TConfiguration{ConnectTimeout: callTimeout, SocketTimeout: callTimeout}
	trans := thrift.NewTFramedTransportConf(thrift.NewTSocketConf(addr, conf), conf)
	if err := trans.Open(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trans.Close() })
	p := thrift.NewTBinaryProtocolConf(trans, conf)
	return echo.NewEchoClient(thrift.NewTStandardClient(p, p))
}

func TestThriftRoutedThroughPlugin(t *testing.T) {
	v1, v2 := startServer(t, "v1"), startServer(t, "v2")
	h := startHost(t, fmt.Sprintf(`{"protocol": "thrift",
	  "route_config": {"routes": [
	    {"match": {"attributes": [{"name": "method", "exact": "echo"}]}, "route": {"cluster": "v1"}},
	    {"match": {"attributes": [{"name": "method", "exact": "fail"}]}, "route": {"cluster": "v2"}}]},
	  "clusters": [{"name": "v1", "endpoints": [{"address": %q}]},
	               {"name": "v2", "endpoints": [{"address": %q}]}]}`, v1, v2))
	c := client(t, h.Listeners[0])
	ctx := context.Background()
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		got, err := c.Echo(ctx, msg)
		if err != nil || got != "v1:"+msg {
			t.Fatalf("echo(%q) = %q, %v; want %q from v1", msg, got, err, "v1:"+msg)
		}
	}
	// A declared exception from the other cluster comes back as it was thrown.
	var ee *echo.EchoError
	if _, err := c.Fail(ctx, "boom"); !errors.As(err, &ee) || ee.Message != "boom" {
		t.Errorf("fail(boom): %v, want EchoError boom", err)
	}
	// No route: the client gets a TApplicationException and the connection stays usable.
	var ae thrift.TApplicationException
	if _, err := c.LastFired(ctx); !errors.As(err, &ae) || !strings.Contains(ae.Error(), "no_route") {
		t.Errorf("lastFired: %v, want a no_route TApplicationException", err)
	}
	if got, err := c.Echo(ctx, "again"); err != nil || got != "v1:again" {
		t.Errorf("echo after no-route = %q, %v", got, err)
	}
}

// Many clients at once: their connections sit on both workers of the host, the upstream
// connection's callbacks on whichever worker the host chose, and every reply must reach the
// client that asked.
func TestConcurrentClients(t *testing.T) {
	v1 := startServer(t, "v1")
	h := startHost(t, fmt.Sprintf(`{"protocol": "thrift",
	  "route_config": {"routes": [{"route": {"cluster": "v1"}}]},
	  "clusters": [{"name": "v1", "endpoints": [{"address": %q}]}]}`, v1))
	const clients, calls = 16, 50
	errs := make(chan error, clients)
	for i := range clients {
		c := client(t, h.Listeners[0])
		go func() {
			for j := range calls {
				msg := fmt.Sprintf("client %d call %d", i, j)
				got, err := c.Echo(context.Background(), msg)
				if err != nil || got != "v1:"+msg {
					errs <- fmt.Errorf("echo(%q) = %q, %v", msg, got, err)
					return
				}
			}
			errs <- nil
		}()
	}
	for range clients {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestInvalidConfigAnswersErrorAndCloses(t *testing.T) {
	v1 := startServer(t, "v1")
	h := startHost(t,
		// Invalid: the route names a cluster that does not exist.
		`{"protocol": "thrift", "route_config": {"routes": [{"route": {"cluster": "nowhere"}}]}}`,
		// The valid listener next to it is unaffected.
		fmt.Sprintf(`{"protocol": "thrift", "route_config": {"routes": [{"route": {"cluster": "v1"}}]},
		  "clusters": [{"name": "v1", "endpoints": [{"address": %q}]}]}`, v1))

	conn, err := net.DialTimeout("tcp", h.Listeners[0], callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(callTimeout))
	if _, err := conn.Write(framedCall("echo", 77)); err != nil {
		t.Fatal(err)
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		t.Fatalf("reading the error reply: %v", err)
	}
	reply := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(conn, reply); err != nil {
		t.Fatalf("reading the error reply: %v", err)
	}
	// Strict binary: version and type, name, seqid.
	nameLen := int(binary.BigEndian.Uint32(reply[4:]))
	if typ, name, seq := reply[3], string(reply[8:8+nameLen]), binary.BigEndian.Uint32(reply[8+nameLen:]); typ != 3 ||
		name != "echo" || seq != 77 || !strings.Contains(string(reply), "configuration is invalid") {
		t.Errorf("reply type %d name %q seq %d (%q), want an EXCEPTION for echo/77", typ, name, seq, reply)
	}
	if n, err := conn.Read(size[:]); err != io.EOF {
		t.Errorf("after the error reply: read %d, %v; want EOF", n, err)
	}

	if got, err := client(t, h.Listeners[1]).Echo(context.Background(), "ok"); err != nil || got != "v1:ok" {
		t.Errorf("valid listener: echo = %q, %v", got, err)
	}
}

// framedCall is a framed strict-binary CALL of method with seqid seq and empty arguments.
func framedCall(method string, seq uint32) []byte {
	m := []byte{0x80, 0x01, 0, 1}
	m = binary.BigEndian.AppendUint32(m, uint32(len(method)))
	m = append(m, method...)
	m = binary.BigEndian.AppendUint32(m, seq)
	m = append(m, 0) // STOP: no arguments
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(m))), m...)
}
