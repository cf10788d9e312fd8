// Package abihost_test builds the abihost C fixture and a test plugin and
// checks that the host drives a Go network filter the way Envoy v1.36 does
// (shared/reference/envoy-golang-network-abi.md).
package abihost_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meltemi-mesh/meltemi/e2e/abihost"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Paths of the built artifacts, set by TestMain.
var (
	hostBin    string
	pluginSO   string
	missingSO  string
	buildError error
)

func TestMain(m *testing.M) {
	buildError = buildAll()
	os.Exit(m.Run())
}

// buildAll builds the host, the test plugin and the fake library, the last
// two into a cache directory keyed by the hash of their sources so that
// reruns skip the slow c-shared link.
func buildAll() error {
	var err error
	// ABIHOST_BIN runs the tests against another build, e.g. with sanitizers.
	if hostBin = os.Getenv("ABIHOST_BIN"); hostBin == "" {
		if hostBin, err = abihost.Build(); err != nil {
			return err
		}
	}
	h := sha256.New()
	for _, f := range []string{"testdata/plugin/main.go", "testdata/missing/missing.c", "../go.sum"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("hash sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	fmt.Fprintln(h, runtime.Version())
	cache, err := abihost.CacheDir()
	if err != nil {
		return err
	}
	dir := filepath.Join(cache, "abihost", "testplugin-"+hex.EncodeToString(h.Sum(nil))[:16])
	pluginSO = filepath.Join(dir, "plugin.so")
	missingSO = filepath.Join(dir, "missing.so")
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cache dir: %w", err)
	}
	steps := [][]string{
		{"go", "build", "-buildmode=c-shared", "-o", pluginSO, "./testdata/plugin"},
		{"gcc", "-shared", "-fPIC", "-o", missingSO, "testdata/missing/missing.c"},
	}
	for _, s := range steps {
		cmd := exec.Command(s[0], s[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(s, " "), err, out)
		}
	}
	return os.WriteFile(filepath.Join(dir, "done"), nil, 0o644)
}

// host is a running abihost process with its log.
type host struct {
	*abihost.Host
	t      testing.TB
	stderr *syncBuffer
}

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

// listener is one listener's plugin config string; noConfig passes no
// plugin_config at all.
type listener struct {
	cfg      string
	noConfig bool
}

// anyConfig serializes the google.protobuf.Any the way Envoy serializes
// plugin_config.
func anyConfig(t testing.TB, s string) []byte {
	t.Helper()
	a, err := anypb.New(wrapperspb.String(s))
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// environ returns the test's environment without GODEBUG, so that every
// host run also exercises the re-exec that sets cgocheck=0.
func environ() []string {
	var env []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GODEBUG=") && !strings.HasPrefix(e, "ABIHOST_REEXEC=") {
			env = append(env, e)
		}
	}
	return env
}

func startHost(t testing.TB, workers int, connectTimeout time.Duration, ls ...listener) *host {
	t.Helper()
	if buildError != nil {
		t.Fatalf("build: %v", buildError)
	}
	o := abihost.Options{
		Binary: hostBin, Library: pluginSO, Workers: workers, ConnectTimeout: connectTimeout,
		LogLevel: "debug", Dir: t.TempDir(), Env: environ(),
	}
	for _, l := range ls {
		al := abihost.Listener{Plugin: "abitest"}
		if !l.noConfig {
			al.Config = anyConfig(t, l.cfg)
		}
		o.Listeners = append(o.Listeners, al)
	}
	h := &host{t: t, stderr: &syncBuffer{}}
	o.Stderr = h.stderr
	var err error
	if h.Host, err = abihost.Start(o); err != nil {
		t.Fatalf("%v\n%s", err, h.stderr)
	}
	if len(h.Workers) != workers {
		t.Fatalf("workers %v, want %d", h.Workers, workers)
	}
	t.Cleanup(func() { h.stop(syscall.SIGTERM) })
	return h
}

// stop signals the host and checks that it shut down cleanly and that
// nothing panicked in Go along the way.
func (h *host) stop(sig os.Signal) {
	if err := h.Signal(sig); err != nil {
		h.t.Errorf("%v\n%s", err, h.stderr)
	}
	if s := h.stderr.String(); strings.Contains(s, "panic") || strings.Contains(s, "fatal error") {
		h.t.Errorf("host stderr shows a Go failure:\n%s", s)
	}
}

// alive fails the test if the host process has exited.
func (h *host) alive() {
	h.t.Helper()
	if exited, err := h.Exited(); exited {
		h.t.Fatalf("host exited: %v\n%s", err, h.stderr)
	}
}

// waitStderr waits until the host's log contains s.
func (h *host) waitStderr(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(h.stderr.String(), s) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// client is a line-oriented connection to a listener.
type client struct {
	t *testing.T
	c *net.TCPConn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c.(*net.TCPConn), r: bufio.NewReaderSize(c, 1<<20)}
}

func (c *client) send(lines ...string) {
	c.t.Helper()
	if _, err := c.c.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) line() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

// call sends one command and returns the reply line.
func (c *client) call(cmd string) string {
	c.t.Helper()
	c.send(cmd)
	return c.line()
}

// expectEOF reads until EOF and returns what came before it.
func (c *client) expectEOF() ([]byte, error) {
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return io.ReadAll(c.r)
}

// fields parses "word k=v k=v ..." replies.
func fields(s string) map[string]string {
	m := map[string]string{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			m[k] = v
		}
	}
	return m
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

// trace polls another connection for the stored event trace of a closed one.
func trace(t *testing.T, addr, name string) string {
	t.Helper()
	c := dial(t, addr)
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := strings.TrimPrefix(c.call("trace "+name), "trace ")
		if got != "none" || time.Now().After(deadline) {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func contains(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}
