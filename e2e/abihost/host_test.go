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

// buildAll builds the host, the test plugin and the fake library into a
// cache directory keyed by the hash of their sources, so that reruns skip
// the slow c-shared link.
func buildAll() error {
	h := sha256.New()
	for _, f := range []string{"csrc/abihost.c", "build.sh", "testdata/plugin/main.go", "testdata/missing/missing.c", "../go.sum"} {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("hash sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	fmt.Fprintln(h, runtime.Version())
	cache := os.Getenv("MELTEMI_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("cache dir: %w", err)
		}
		cache = filepath.Join(home, ".cache", "meltemi")
	}
	dir := filepath.Join(cache, "abihost", hex.EncodeToString(h.Sum(nil))[:16])
	hostBin = filepath.Join(dir, "abihost")
	pluginSO = filepath.Join(dir, "plugin.so")
	missingSO = filepath.Join(dir, "missing.so")
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cache dir: %w", err)
	}
	steps := [][]string{
		{"./build.sh", hostBin},
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

// host is a running abihost process.
type host struct {
	t         *testing.T
	cmd       *exec.Cmd
	listeners []string
	workers   []int
	stderr    *syncBuffer
	done      chan error
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

// listener describes one --listen with its plugin config; cfg "" with
// noConfig true passes no config file at all.
type listener struct {
	cfg      string
	noConfig bool
}

// configFile writes the serialized google.protobuf.Any the way Envoy
// serializes plugin_config.
func configFile(t *testing.T, s string) string {
	t.Helper()
	a, err := anypb.New(wrapperspb.String(s))
	if err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "cfg.bin")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
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

func startHost(t *testing.T, workers int, extra []string, ls ...listener) *host {
	t.Helper()
	if buildError != nil {
		t.Fatalf("build: %v", buildError)
	}
	args := []string{"--library", pluginSO, "--plugin", "abitest", "--workers", strconv.Itoa(workers), "--log-level", "debug"}
	args = append(args, extra...)
	for _, l := range ls {
		args = append(args, "--listen", "127.0.0.1:0")
		if !l.noConfig {
			args = append(args, "--config-file", configFile(t, l.cfg))
		}
	}
	cmd := exec.Command(hostBin, args...)
	cmd.Env = environ()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h := &host{t: t, cmd: cmd, stderr: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stderr = h.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
		h.done <- cmd.Wait()
	}()
	select {
	case line := <-ready:
		if !strings.HasPrefix(line, "ready ") {
			_ = cmd.Process.Kill()
			t.Fatalf("host did not get ready: %q\n%s", line, h.stderr)
		}
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "listeners":
				h.listeners = strings.Split(v, ",")
			case "workers":
				for _, s := range strings.Split(v, ",") {
					n, _ := strconv.Atoi(s)
					h.workers = append(h.workers, n)
				}
			}
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("host not ready after 30s\n%s", h.stderr)
	}
	if len(h.listeners) != len(ls) || len(h.workers) != workers {
		t.Fatalf("ready line: listeners %v workers %v", h.listeners, h.workers)
	}
	t.Cleanup(func() { h.stop(syscall.SIGTERM) })
	return h
}

// stop signals the host and checks that it shut down cleanly and that
// nothing panicked in Go along the way.
func (h *host) stop(sig os.Signal) {
	if h.cmd.ProcessState != nil {
		return
	}
	_ = h.cmd.Process.Signal(sig)
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("host exit after %v: %v\n%s", sig, err, h.stderr)
		}
	case <-time.After(10 * time.Second):
		_ = h.cmd.Process.Kill()
		h.t.Errorf("host did not exit after %v\n%s", sig, h.stderr)
	}
	if s := h.stderr.String(); strings.Contains(s, "panic") || strings.Contains(s, "fatal error") {
		h.t.Errorf("host stderr shows a Go failure:\n%s", s)
	}
}

// alive fails the test if the host process has exited.
func (h *host) alive() {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err
		h.t.Fatalf("host exited: %v\n%s", err, h.stderr)
	default:
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
