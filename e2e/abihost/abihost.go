// Package abihost builds and runs abihost, a C test fixture that loads a Go
// network-filter shared library the way Envoy v1.36's contrib golang network
// filter does and serves real TCP connections with it (source in csrc/,
// behaviour spec in shared/reference/envoy-golang-network-abi.md).
//
// End-to-end tests use it to run a plugin .so without an Envoy binary:
//
//	bin, err := abihost.Build()
//	h, err := abihost.Start(abihost.Options{Binary: bin, Library: so,
//		Listeners: []abihost.Listener{{Plugin: "meltemi", Config: anyBytes}}})
//	defer h.Stop()
//	conn, err := net.Dial("tcp", h.Listeners[0])
package abihost

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SourceDir is the directory holding build.sh and csrc/.
func SourceDir() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("abihost: cannot locate the package source")
	}
	return filepath.Dir(file), nil
}

// CacheDir is where built artifacts go: $MELTEMI_CACHE or ~/.cache/meltemi.
func CacheDir() (string, error) {
	if d := os.Getenv("MELTEMI_CACHE"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("abihost: cache dir: %w", err)
	}
	return filepath.Join(home, ".cache", "meltemi"), nil
}

// Build compiles the host with build.sh unless a binary built from the same
// sources is cached, and returns its path.
func Build() (string, error) {
	src, err := SourceDir()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range []string{"build.sh", "csrc/abihost.c"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			return "", fmt.Errorf("abihost: hash sources: %w", err)
		}
		fmt.Fprintf(h, "%s %d\n", f, len(b))
		h.Write(b)
	}
	cache, err := CacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "abihost", "host-"+hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// build.sh writes to a temporary name and renames, so concurrent builds
	// never expose a partial binary.
	if out, err := exec.Command(filepath.Join(src, "build.sh"), bin).CombinedOutput(); err != nil {
		return "", fmt.Errorf("abihost: build.sh: %w\n%s", err, out)
	}
	return bin, nil
}

// Listener is one listening address with its own filter chain.
type Listener struct {
	// Address is IP:PORT; empty means 127.0.0.1:0 (any free port).
	Address string
	// Plugin is the plugin_name passed to envoyGoFilterOnDownstreamConnection.
	Plugin string
	// Config is the serialized google.protobuf.Any plugin_config; nil passes
	// zero bytes, as Envoy does for an absent plugin_config.
	Config []byte
}

// Options configure a host process.
type Options struct {
	Binary    string // from Build
	Library   string // the plugin .so
	LibraryID string // Envoy's library_id; default "abihost"
	Workers   int    // worker threads; default 2
	// ConnectTimeout is the upstream connect timeout (Envoy's cluster
	// connect_timeout); default 5s.
	ConnectTimeout time.Duration
	LogLevel       string // trace, debug, info (default), warn, error
	Listeners      []Listener
	// Stderr receives the host's log and the plugin's output; default os.Stderr.
	Stderr io.Writer
	// Dir is where config files are written; default a new temporary directory
	// removed by Stop.
	Dir string
	// Env is the host's environment; nil inherits this process's.
	Env []string
}

// Host is a running abihost process.
type Host struct {
	// Listeners are the bound IP:PORT addresses, in Options.Listeners order.
	Listeners []string
	// Workers are the Linux thread ids of the worker threads.
	Workers []int

	cmd     *exec.Cmd
	done    chan error
	tmpDir  string
	stopped bool
	stopErr error
}

// Start runs the host and waits until it listens. The environment must not
// matter: the host re-executes itself with GODEBUG=cgocheck=0.
func Start(o Options) (*Host, error) {
	if o.Binary == "" || o.Library == "" || len(o.Listeners) == 0 {
		return nil, errors.New("abihost: Binary, Library and Listeners are required")
	}
	h := &Host{done: make(chan error, 1)}
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "abihost-")
		if err != nil {
			return nil, fmt.Errorf("abihost: %w", err)
		}
		dir, h.tmpDir = d, d
	}
	args := []string{"--library", o.Library}
	if o.LibraryID != "" {
		args = append(args, "--library-id", o.LibraryID)
	}
	if o.Workers > 0 {
		args = append(args, "--workers", strconv.Itoa(o.Workers))
	}
	if o.ConnectTimeout > 0 {
		args = append(args, "--connect-timeout-ms", strconv.FormatInt(o.ConnectTimeout.Milliseconds(), 10))
	}
	if o.LogLevel != "" {
		args = append(args, "--log-level", o.LogLevel)
	}
	for i, l := range o.Listeners {
		addr := l.Address
		if addr == "" {
			addr = "127.0.0.1:0"
		}
		args = append(args, "--listen", addr, "--plugin", l.Plugin)
		if l.Config != nil {
			p := filepath.Join(dir, fmt.Sprintf("listener%d.any.bin", i))
			if err := os.WriteFile(p, l.Config, 0o644); err != nil {
				h.cleanup()
				return nil, fmt.Errorf("abihost: config file: %w", err)
			}
			args = append(args, "--config-file", p)
		}
	}
	cmd := exec.Command(o.Binary, args...)
	cmd.Env = o.Env
	cmd.Stderr = o.Stderr
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		h.cleanup()
		return nil, fmt.Errorf("abihost: %w", err)
	}
	if err := cmd.Start(); err != nil {
		h.cleanup()
		return nil, fmt.Errorf("abihost: start: %w", err)
	}
	h.cmd = cmd
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		ready <- line
		_, _ = io.Copy(io.Discard, stdout)
		h.done <- cmd.Wait()
	}()
	select {
	case line := <-ready:
		if err := h.parseReady(line, len(o.Listeners)); err != nil {
			_ = cmd.Process.Kill()
			<-h.done
			h.cleanup()
			return nil, err
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-h.done
		h.cleanup()
		return nil, errors.New("abihost: not ready after 60s")
	}
	return h, nil
}

// parseReady reads "ready listeners=A,B workers=T1,T2".
func (h *Host) parseReady(line string, listeners int) error {
	if !strings.HasPrefix(line, "ready ") {
		return fmt.Errorf("abihost: exited before ready (stdout %q); see its stderr", line)
	}
	for _, f := range strings.Fields(line)[1:] {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "listeners":
			h.Listeners = strings.Split(v, ",")
		case "workers":
			for _, s := range strings.Split(v, ",") {
				n, err := strconv.Atoi(s)
				if err != nil {
					return fmt.Errorf("abihost: ready line %q: %w", line, err)
				}
				h.Workers = append(h.Workers, n)
			}
		}
	}
	if len(h.Listeners) != listeners {
		return fmt.Errorf("abihost: ready line %q: want %d listeners", line, listeners)
	}
	return nil
}

// Exited reports whether the process has ended, and how.
func (h *Host) Exited() (bool, error) {
	select {
	case err := <-h.done:
		h.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Pid is the host's process id.
func (h *Host) Pid() int { return h.cmd.Process.Pid }

// Stop sends sig (SIGTERM if nil) and waits up to 10s for a clean exit; an
// error means the host had crashed, exited non-zero or had to be killed.
func (h *Host) Stop() error { return h.Signal(syscall.SIGTERM) }

// Signal is Stop with a chosen signal. Later calls return the first result.
func (h *Host) Signal(sig os.Signal) error {
	if h.stopped {
		return h.stopErr
	}
	h.stopped = true
	h.stopErr = h.signal(sig)
	h.cleanup()
	return h.stopErr
}

func (h *Host) signal(sig os.Signal) error {
	if exited, err := h.Exited(); exited {
		return fmt.Errorf("abihost: exited before stop: %v", err)
	}
	_ = h.cmd.Process.Signal(sig)
	select {
	case err := <-h.done:
		h.done <- err
		if err != nil {
			return fmt.Errorf("abihost: exit after %v: %w", sig, err)
		}
		return nil
	case <-time.After(10 * time.Second):
		_ = h.cmd.Process.Kill()
		return fmt.Errorf("abihost: no exit 10s after %v; killed", sig)
	}
}

func (h *Host) cleanup() {
	if h.tmpDir != "" {
		_ = os.RemoveAll(h.tmpDir)
		h.tmpDir = ""
	}
}
