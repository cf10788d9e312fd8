package abihost_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
)

// The ten entry points Envoy's NetworkFilterDsoImpl resolves.
var entryPoints = []string{
	"envoyGoFilterOnDownstreamConnection",
	"envoyGoFilterOnDownstreamData",
	"envoyGoFilterOnDownstreamEvent",
	"envoyGoFilterOnDownstreamWrite",
	"envoyGoFilterOnNetworkFilterConfig",
	"envoyGoFilterOnSemaDec",
	"envoyGoFilterOnUpstreamConnectionFailure",
	"envoyGoFilterOnUpstreamConnectionReady",
	"envoyGoFilterOnUpstreamData",
	"envoyGoFilterOnUpstreamEvent",
}

func dynamicSymbols(t *testing.T, path, which string) []string {
	t.Helper()
	out, err := exec.Command("nm", "-D", which, path).Output()
	if err != nil {
		t.Fatalf("nm -D %s %s: %v", which, path, err)
	}
	var syms []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 0 {
			syms = append(syms, f[len(f)-1])
		}
	}
	return syms
}

func TestPluginExportsExactlyTheTenEntryPoints(t *testing.T) {
	if buildError != nil {
		t.Fatal(buildError)
	}
	var got []string
	for _, s := range dynamicSymbols(t, pluginSO, "--defined-only") {
		if strings.HasPrefix(s, "envoyGoFilterOn") {
			got = append(got, s)
		}
	}
	sort.Strings(got)
	if strings.Join(got, " ") != strings.Join(entryPoints, " ") {
		t.Errorf("plugin exports %v, want %v", got, entryPoints)
	}
	// Every envoyGo* function the plugin imports is exported by the host.
	hostSyms := map[string]bool{}
	for _, s := range dynamicSymbols(t, hostBin, "--defined-only") {
		hostSyms[s] = true
	}
	imports := 0
	for _, s := range dynamicSymbols(t, pluginSO, "--undefined-only") {
		if strings.HasPrefix(s, "envoyGo") {
			imports++
			if !hostSyms[s] {
				t.Errorf("plugin imports %s, which the host does not export", s)
			}
		}
	}
	// The 12 of the network API, and envoyGoFilterLog and LogLevel of api_impl.
	if imports != 14 {
		t.Errorf("plugin imports %d envoyGo* functions, want 14", imports)
	}
}

func TestLoadFailuresAreClear(t *testing.T) {
	if buildError != nil {
		t.Fatal(buildError)
	}
	for _, tc := range []struct{ lib, want string }{
		{missingSO, "cannot find symbol: envoyGoFilterOnSemaDec"},
		{missingSO + ".absent", "cannot load : " + missingSO + ".absent"},
	} {
		cmd := exec.Command(hostBin, "--library", tc.lib, "--plugin", "abitest", "--listen", "127.0.0.1:0")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() == 0 {
			t.Errorf("%s: want a non-zero exit, got %v", tc.lib, err)
		}
		if !strings.Contains(string(out), tc.want) || strings.Contains(string(out), "ready") {
			t.Errorf("%s: output %q does not say %q", tc.lib, out, tc.want)
		}
	}
}

func TestDownstreamSequenceAndInfo(t *testing.T) {
	h := startHost(t, 2, 0, listener{cfg: "prefix=>> "})
	c := dial(t, h.Listeners[0])
	// OnDownstreamConnection, then Connected (2) at once, then the data.
	if got := c.call("events"); got != "events new,event2,data" {
		t.Errorf("first callbacks: %q", got)
	}
	if got := c.call("echo hello"); got != ">> hello" {
		t.Errorf("echo: %q", got)
	}
	tid := fields(c.call("tid"))
	if tid["new"] != tid["connected"] || tid["new"] != tid["data"] || !contains(h.Workers, atoi(t, tid["data"])) {
		t.Errorf("downstream callbacks must all run on one worker %v: %v", h.Workers, tid)
	}
	info := fields(c.call("info"))
	if info["local"] != h.Listeners[0] || info["remote"] != c.c.LocalAddr().String() {
		t.Errorf("info %v, want local %s remote %s", info, h.Listeners[0], c.c.LocalAddr())
	}
	if got := c.call("cfg"); got != "cfg prefix=>> " {
		t.Errorf("config: %q", got)
	}
	if got := c.call("log hello from go"); got != "logged" || !h.waitStderr("abihost[info] [go] hello from go", 5*time.Second) {
		t.Errorf("api.LogInfo did not reach the host log\n%s", h.stderr)
	}
}

func TestEachListenerHasItsOwnConfig(t *testing.T) {
	h := startHost(t, 1, 0, listener{cfg: "prefix=A:"}, listener{cfg: "prefix=B:"}, listener{noConfig: true})
	for i, want := range []string{"A:x", "B:x", "x"} {
		if got := dial(t, h.Listeners[i]).call("echo x"); got != want {
			t.Errorf("listener %d: %q, want %q", i, got, want)
		}
	}
	if got := dial(t, h.Listeners[2]).call("cfg"); got != "cfg " {
		t.Errorf("no plugin_config: %q", got)
	}
	// One envoyGoFilterOnNetworkFilterConfig call per listener, ids from 1.
	for i, id := range []string{"1", "2", "3"} {
		if want := fmt.Sprintf("listener 127.0.0.1:0 plugin abitest config_id %s", id); !strings.Contains(strings.Split(h.stderr.String(), "\n")[i], want) {
			t.Errorf("config call %d: want %q in\n%s", i, want, h.stderr)
		}
	}
}

func TestManyConnectionsOnSeveralWorkers(t *testing.T) {
	h := startHost(t, 3, 0, listener{cfg: "prefix=e:"})
	const conns, msgs = 120, 20
	var mu sync.Mutex
	seen := map[int]int{}
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", h.Listeners[0])
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			r := bufio.NewReader(c)
			var req strings.Builder
			for j := range msgs {
				fmt.Fprintf(&req, "echo %d-%d\n", i, j)
			}
			req.WriteString("tid\n")
			if _, err := c.Write([]byte(req.String())); err != nil {
				errs <- err
				return
			}
			for j := range msgs {
				l, err := r.ReadString('\n')
				if want := fmt.Sprintf("e:%d-%d\n", i, j); err != nil || l != want {
					errs <- fmt.Errorf("conn %d: got %q (%v), want %q", i, l, err, want)
					return
				}
			}
			l, err := r.ReadString('\n')
			if err != nil {
				errs <- err
				return
			}
			tid, _ := strconv.Atoi(fields(l)["data"])
			mu.Lock()
			seen[tid]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) < 2 {
		t.Errorf("all %d connections ran on one worker: %v", conns, seen)
	}
	for tid := range seen {
		if !contains(h.Workers, tid) {
			t.Errorf("callback on thread %d, not a worker %v", tid, h.Workers)
		}
	}
}

func TestMultiSliceDataAndLargeWrites(t *testing.T) {
	h := startHost(t, 2, 0, listener{cfg: ""})
	c := dial(t, h.Listeners[0])
	big := strings.Repeat("0123456789abcdef", 40000) // 640 KiB: many 16 KiB slices
	if got := c.call("echo " + big); got != big {
		t.Errorf("large echo: got %d bytes, want %d", len(got), len(big))
	}
}

func TestGoWritesGoThroughOnWrite(t *testing.T) {
	h := startHost(t, 2, 0, listener{cfg: "prefix=>"})
	c := dial(t, h.Listeners[0])
	c.call("echo a")
	c.call("echo bb")
	// Writes are posted: they reach OnWrite only after OnData returns, so
	// wstat sees the two replies above but not its own.
	if got := c.call("wstat"); got != "wstat calls=2 bytes=7" {
		t.Errorf("OnWrite saw %q, want the two echo replies", got)
	}
	c.send("dropnext", "echo dropped", "echo kept")
	if got := c.line(); got != ">kept" {
		t.Errorf("after a StopIteration from OnWrite: %q, want >kept", got)
	}
	if got := c.call("gecho from-goroutine"); got != ">from-goroutine" {
		t.Errorf("write from a goroutine: %q", got)
	}
	c.send("reuse")
	if a, b := c.line(), c.line(); a != "first" || b != "again" {
		t.Errorf("writes from one reused Go buffer: %q, %q; the host must copy at call time", a, b)
	}
}

func TestCloseTypes(t *testing.T) {
	h := startHost(t, 2, 0, listener{cfg: ""})
	// The values of Envoy's Go API are what the host must interpret.
	for _, typ := range []api.ConnectionCloseType{api.FlushWrite, api.NoFlush, api.FlushWriteAndDelay, api.Abort, api.AbortReset} {
		name := fmt.Sprintf("close%d", typ)
		c := dial(t, h.Listeners[0])
		c.send("id "+name, fmt.Sprintf("close %d", typ))
		_, err := c.expectEOF()
		if typ == api.AbortReset {
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("AbortReset: want a reset, got %v", err)
			}
		} else if err != nil {
			t.Errorf("close type %d: %v", typ, err)
		}
		if got := trace(t, h.Listeners[0], name); got != "new,event2,data,event1" {
			t.Errorf("close type %d: trace %q, want LocalClose last", typ, got)
		}
	}
}

func TestWriteManyThenClose(t *testing.T) {
	h := startHost(t, 2, 0, listener{cfg: ""})
	for _, typ := range []int{0, 2} {
		c := dial(t, h.Listeners[0])
		c.send(fmt.Sprintf("writeclose %d 500 2000", typ))
		got, err := c.expectEOF()
		if err != nil || len(got) != 500*2000 {
			t.Errorf("close type %d after 500 writes: %d bytes, %v; want %d then EOF", typ, len(got), err, 500*2000)
		}
	}
}

func TestWriteDuringFlushingClose(t *testing.T) {
	h := startHost(t, 1, 0, listener{cfg: ""})
	c := dial(t, h.Listeners[0])
	// All three are posted and run in one loop iteration: the close waits for
	// the buffered "before", and ConnectionImpl::write still takes "after".
	c.send("closewrite")
	if got, err := c.expectEOF(); err != nil || string(got) != "before\nafter\n" {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestWriteEndStream(t *testing.T) {
	h := startHost(t, 1, 0, listener{cfg: ""})
	c := dial(t, h.Listeners[0])
	c.send("id wend", "writeend")
	got, err := c.expectEOF()
	if err != nil || string(got) != "end\n" {
		t.Errorf("end_stream write: %q %v", got, err)
	}
	c.c.Close()
	if got := trace(t, h.Listeners[0], "wend"); got != "new,event2,data,event0" {
		t.Errorf("trace %q", got)
	}
}

func TestPeerFinAndReset(t *testing.T) {
	h := startHost(t, 2, 0, listener{cfg: ""})
	// FIN: data arrives with end_stream=false, then RemoteClose; the posted
	// reply is dropped because the connection is closed by then.
	c := dial(t, h.Listeners[0])
	c.send("id fin", "echo x")
	_ = c.c.CloseWrite()
	if got := trace(t, h.Listeners[0], "fin"); got != "new,event2,data,event0" {
		t.Errorf("FIN: trace %q", got)
	}
	// RST while the host is writing to us.
	r := dial(t, h.Listeners[0])
	r.send("id rst", "writeclose 0 200 10000")
	time.Sleep(20 * time.Millisecond)
	_ = r.c.SetLinger(0)
	r.c.Close()
	if got := trace(t, h.Listeners[0], "rst"); !strings.HasPrefix(got, "new,event2,data") || !strings.HasSuffix(got, "event0") && !strings.HasSuffix(got, "event1") {
		t.Errorf("RST: trace %q", got)
	}
	h.alive()
	if got := dial(t, h.Listeners[0]).call("echo alive"); got != "alive" {
		t.Errorf("after a reset: %q", got)
	}
}

func TestCallsAfterTheFilterIsGone(t *testing.T) {
	h := startHost(t, 1, 0, listener{cfg: ""})
	c := dial(t, h.Listeners[0])
	c.send("id gone", "late")
	c.call("echo sync")
	c.c.Close()
	if got := trace(t, h.Listeners[0], "gone-closed"); got != "write=0 getfs=-2" {
		t.Errorf("calls during the close event: %q, want a write accepted (then dropped) and CAPIFilterIsDestroy", got)
	}
	if got := trace(t, h.Listeners[0], "gone-late"); got != "write=-1 close=-1 info=-1 getfs=-1" {
		t.Errorf("calls after the filter is destroyed: %q, want CAPIFilterIsGone everywhere", got)
	}
}

func TestFilterState(t *testing.T) {
	h := startHost(t, 2, 0, listener{cfg: ""})
	c := dial(t, h.Listeners[0])
	c.send("setfs k v1")
	if got := c.call("getfs k"); got != "fs k=v1 rc=0" {
		t.Errorf("get on the worker: %q", got)
	}
	if got := c.call("ggetfs k"); got != "gfs k=v1 rc=-6" {
		t.Errorf("get off the worker must yield and be released by OnSemaDec: %q", got)
	}
	if got := c.call("gsetfs k v2"); got != "gsetfs done" {
		t.Fatalf("set off the worker: %q", got)
	}
	if got := c.call("getfs k"); got != "fs k=v2 rc=0" {
		t.Errorf("posted set then get: %q", got)
	}
	c.send("setfsro ro first", "setfsro ro second")
	if got := c.call("getfs ro"); got != "fs ro=first rc=0" {
		t.Errorf("a read-only key must keep its first value: %q", got)
	}
	if got := c.call("getfs absent"); got != "fs absent= rc=0" {
		t.Errorf("absent key: %q", got)
	}
	// Filter state belongs to the connection.
	if got := dial(t, h.Listeners[0]).call("getfs k"); got != "fs k= rc=0" {
		t.Errorf("another connection sees %q", got)
	}
}

func TestDownstreamFinalize(t *testing.T) {
	h := startHost(t, 1, 0, listener{cfg: ""})
	c := dial(t, h.Listeners[0])
	c.call("echo x")
	local := c.c.LocalAddr().String()
	c.c.Close()
	if !h.waitStderr("downstream "+local+" filter destroyed", 5*time.Second) {
		t.Fatalf("filter not destroyed after close\n%s", h.stderr)
	}
	wrapper := ""
	for _, l := range strings.Split(h.stderr.String(), "\n") {
		if strings.Contains(l, "downstream "+local+" accepted") {
			wrapper = fields(l)["wrapper"]
		}
	}
	// The filter is gone, so Go's finalizer deletes the wrapper inline.
	g := dial(t, h.Listeners[0])
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(h.stderr.String(), "downstream finalize wrapper="+wrapper+" inline") {
		if time.Now().After(deadline) {
			t.Fatalf("wrapper %s never finalized\n%s", wrapper, h.stderr)
		}
		if got := g.call("gc"); got != "gc done" {
			t.Fatalf("gc: %q", got)
		}
	}
}

// backend is a line server: "fin" makes it half-close, "close" closes,
// anything else is answered with "srv:" and the line. It records what it
// got per connection.
type backend struct {
	ln   net.Listener
	mu   sync.Mutex
	got  []string
	eofs int
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c.(*net.TCPConn))
		}
	}()
	return b
}

func (b *backend) serve(c *net.TCPConn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			b.mu.Lock()
			b.eofs++
			b.mu.Unlock()
			return
		}
		l = strings.TrimSuffix(l, "\n")
		b.mu.Lock()
		b.got = append(b.got, l)
		b.mu.Unlock()
		switch l {
		case "fin":
			_, _ = c.Write([]byte("srv:fin\n"))
			_ = c.CloseWrite()
		case "close":
			return
		default:
			_, _ = c.Write([]byte("srv:" + l + "\n"))
		}
	}
}

func (b *backend) received(s string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		for _, g := range b.got {
			if g == s {
				b.mu.Unlock()
				return true
			}
		}
		b.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func TestUpstreamRoundRobinAndData(t *testing.T) {
	h := startHost(t, 2, 0, listener{cfg: ""})
	be := startBackend(t)
	c := dial(t, h.Listeners[0])
	down := atoi(t, fields(c.call("tid"))["data"])
	var tids []int
	for i := range 4 {
		r := c.call("up " + be.ln.Addr().String())
		if !strings.HasPrefix(r, fmt.Sprintf("uready %d ", i)) {
			t.Fatalf("connect %d: %q", i, r)
		}
		tids = append(tids, atoi(t, fields(r)["tid"]))
	}
	other := false
	for i, tid := range tids {
		if !contains(h.Workers, tid) {
			t.Errorf("upstream callback on %d, not a worker %v", tid, h.Workers)
		}
		if i > 0 && tid == tids[i-1] {
			t.Errorf("upstreams %v are not round-robin over workers %v", tids, h.Workers)
		}
		other = other || tid != down
	}
	if !other {
		t.Errorf("no upstream ran on a worker other than the downstream's %d: %v", down, tids)
	}
	r := c.call("u hello")
	if f := fields(r); !strings.HasPrefix(r, "udata 3 eos=0 ") || f["tid"] != strconv.Itoa(tids[3]) || !strings.HasSuffix(r, `"srv:hello\n"`) {
		t.Errorf("upstream data: %q", r)
	}
	info := fields(c.call("uinfo"))
	if info["local"] != be.ln.Addr().String() || info["remote"] != be.ln.Addr().String() {
		t.Errorf("upstream info %v: local is the dial target, remote the peer", info)
	}
	if got := c.call("uclose 1"); got != "uevent 3 e=1" {
		t.Errorf("upstream local close: %q", got)
	}
	// The backend closes the next one: RemoteClose, and never a Connected event.
	c.call("up " + be.ln.Addr().String())
	c.send("u close")
	if got := c.line(); got != "uevent 4 e=0" {
		t.Errorf("upstream remote close: %q", got)
	}
	// Closed upstreams are finalized by Go's GC and the host deletes their
	// wrappers on their workers; open ones must not be. Go sets the finalizer
	// on a tiny new(int), which the runtime may never finalize while its
	// 16-byte block is shared, so only "at least one" is certain.
	var wrappers []string
	for _, l := range strings.Split(h.stderr.String(), "\n") {
		if strings.Contains(l, "upstream "+be.ln.Addr().String()+" ready") {
			wrappers = append(wrappers, fields(l)["wrapper"])
		}
	}
	closed := map[string]bool{wrappers[3]: true, wrappers[4]: true}
	finalized := func() []string {
		var ws []string
		for _, l := range strings.Split(h.stderr.String(), "\n") {
			if strings.Contains(l, "upstream finalize wrapper=") {
				ws = append(ws, fields(l)["wrapper"])
			}
		}
		return ws
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(finalized()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no closed upstream finalized\n%s", h.stderr)
		}
		if got := c.call("gc"); got != "gc done" {
			t.Fatalf("gc: %q", got)
		}
	}
	for _, w := range finalized() {
		if !closed[w] {
			t.Errorf("upstream wrapper %s finalized while open", w)
		}
	}
}

func TestUpstreamHalfClose(t *testing.T) {
	h := startHost(t, 2, 0, listener{cfg: ""})
	be := startBackend(t)
	c := dial(t, h.Listeners[0])
	// Without half-close a FIN is data then RemoteClose.
	c.call("up " + be.ln.Addr().String())
	c.send("u fin")
	if got := c.line(); !strings.HasPrefix(got, "udata 0 eos=0 ") {
		t.Errorf("FIN without half-close: %q", got)
	}
	if got := c.line(); got != "uevent 0 e=0" {
		t.Errorf("FIN without half-close: %q, want RemoteClose", got)
	}
	// With half-close the FIN is end_stream and the connection stays writable.
	c.call("uph " + be.ln.Addr().String())
	c.send("u fin")
	var lines []string
	for !strings.Contains(strings.Join(lines, "|"), "eos=1") {
		lines = append(lines, c.line())
	}
	if strings.Contains(strings.Join(lines, "|"), "uevent") {
		t.Errorf("half-closed upstream closed: %v", lines)
	}
	c.send("uend after")
	if !be.received("after") {
		t.Errorf("write after the upstream's FIN did not arrive")
	}
	// Our end_stream write completes the close: onWriteReady raises LocalClose.
	if got := c.line(); got != "uevent 1 e=1" {
		t.Errorf("both sides closed: %q, want LocalClose", got)
	}
}

func TestUpstreamConnectFailures(t *testing.T) {
	h := startHost(t, 2, 300*time.Millisecond, listener{cfg: ""})
	c := dial(t, h.Listeners[0])
	// Refused: a port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	if got := c.call("up " + refused); !strings.HasPrefix(got, fmt.Sprintf("ufail 0 reason=%d ", api.RemoteConnectionFailure)) {
		t.Errorf("refused: %q, want RemoteConnectionFailure", got)
	}
	// Malformed: Envoy would crash; the fixture reports LocalConnectionFailure.
	if got := c.call("up not-an-address"); !strings.HasPrefix(got, fmt.Sprintf("ufail 1 reason=%d ", api.LocalConnectionFailure)) {
		t.Errorf("malformed: %q, want LocalConnectionFailure", got)
	}
	if !h.waitStderr("malformed IP address: not-an-address", 5*time.Second) {
		t.Errorf("malformed address not logged")
	}
	// Timeout: a listener whose accept queue is full drops our SYN.
	full := fullListener(t)
	if got := c.call("up " + full); !strings.HasPrefix(got, fmt.Sprintf("ufail 2 reason=%d ", api.Timeout)) {
		t.Errorf("connect timeout: %q, want Timeout", got)
	}
	h.alive()
}

// fullListener returns the address of a socket that listens with a backlog of
// zero and already has one connection queued, so that further SYNs are dropped.
func fullListener(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	filler, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { filler.Close() })
	if probe, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
		probe.Close()
		t.Fatalf("backlog is not full: a second connection to %s succeeded", addr)
	}
	return addr
}

func TestRelay(t *testing.T) {
	be := startBackend(t)
	h := startHost(t, 2, 0, listener{cfg: "mode=relay;upstream=" + be.ln.Addr().String()})
	// Twenty connections open at once, relayed through upstreams on both workers.
	var cs []*client
	for range 20 {
		cs = append(cs, dial(t, h.Listeners[0]))
	}
	for j := range 10 {
		for i, c := range cs {
			c.send(fmt.Sprintf("m%d-%d", i, j))
		}
		for i, c := range cs {
			if got, want := c.line(), fmt.Sprintf("srv:m%d-%d", i, j); got != want {
				t.Fatalf("relay: %q, want %q", got, want)
			}
		}
	}
	// The backend closing ends the downstream too.
	for _, c := range cs {
		c.send("close")
		if rest, err := c.expectEOF(); err != nil || len(rest) != 0 {
			t.Errorf("after upstream close: %q %v", rest, err)
		}
	}
}

func TestSIGINTShutsDownCleanly(t *testing.T) {
	h := startHost(t, 2, 0, listener{cfg: ""})
	dial(t, h.Listeners[0]).call("echo x")
	h.stop(syscall.SIGINT)
}

// BenchmarkRelayPingPong measures one 1 KiB request and reply relayed through
// the host and the test plugin (downstream -> upstream on another worker ->
// backend echo and back), per connection in parallel.
func BenchmarkRelayPingPong(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	h := startHost(b, 2, 0, listener{cfg: "mode=relay;upstream=" + ln.Addr().String()})
	msg := make([]byte, 1024)
	b.SetBytes(int64(len(msg)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c, err := net.Dial("tcp", h.Listeners[0])
		if err != nil {
			b.Error(err)
			return
		}
		defer c.Close()
		buf := make([]byte, len(msg))
		for pb.Next() {
			if _, err := c.Write(msg); err != nil {
				b.Error(err)
				return
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
