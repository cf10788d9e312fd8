package proxy_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// A raw Dubbo client: a 16-byte header written by hand and a hessian2 body encoded with
// dubbo-go-hessian2. Unlike dubbo-go's consumer it picks its own request ids.

const dubboHeaderLen = 16

// dubboEchoFrame is a two-way hessian2 request for echoService.Echo(msg) with request id id.
func dubboEchoFrame(id uint64, msg string) ([]byte, error) {
	e := hessian.NewEncoder()
	for _, v := range []any{"2.0.2", echoService, "", "Echo", "Ljava/lang/String;", msg,
		map[any]any{"path": echoService, "interface": echoService}} {
		if err := e.Encode(v); err != nil {
			return nil, fmt.Errorf("encode %T: %w", v, err)
		}
	}
	return dubboFrame(0x80|0x40|2, id, e.Buffer()), nil // request, two-way, hessian2
}

func dubboFrame(flags byte, id uint64, body []byte) []byte {
	b := make([]byte, dubboHeaderLen, dubboHeaderLen+len(body))
	b[0], b[1], b[2] = 0xda, 0xbb, flags
	binary.BigEndian.PutUint64(b[4:], id)
	binary.BigEndian.PutUint32(b[12:], uint32(len(body)))
	return append(b, body...)
}

// readDubboEcho reads one response and returns its id and its string value.
func readDubboEcho(c net.Conn) (uint64, string, error) {
	h := make([]byte, dubboHeaderLen)
	if _, err := io.ReadFull(c, h); err != nil {
		return 0, "", fmt.Errorf("read header: %w", err)
	}
	id := binary.BigEndian.Uint64(h[4:])
	body := make([]byte, binary.BigEndian.Uint32(h[12:]))
	if _, err := io.ReadFull(c, body); err != nil {
		return id, "", fmt.Errorf("read body: %w", err)
	}
	if h[3] != 20 {
		return id, "", fmt.Errorf("status %d: %q", h[3], body)
	}
	d := hessian.NewDecoder(body)
	// The response type (1: value, 4: value with attachments), then the value.
	if rt, err := d.Decode(); err != nil || (rt != int32(1) && rt != int32(4)) {
		return id, "", fmt.Errorf("response type %v, %v", rt, err)
	}
	v, err := d.Decode()
	if err != nil {
		return id, "", fmt.Errorf("decode value: %w", err)
	}
	s, ok := v.(string)
	if !ok {
		return id, "", fmt.Errorf("value is a %T", v)
	}
	return id, s, nil
}

// countingRelay is a TCP pipe in front of a backend that counts the connections it accepts:
// what the backend sees, for a backend in another process.
type countingRelay struct {
	addr string
	n    atomic.Int64
}

func startCountingRelay(t *testing.T, backend string) *countingRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &countingRelay{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			r.n.Add(1)
			out, err := net.DialTimeout("tcp", backend, callTimeout)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
			}
			wg.Go(func() { pipe(out, in) })
			wg.Go(func() { pipe(in, out) })
		}
	})
	return r
}

// Sixty raw Dubbo clients all use request id 1 for every call, at the same time, through one
// upstream connection: the proxy gives each request its own upstream id and each response
// must come back to its client with id 1 and the client's own token.
func TestDubboSharedUpstreamCollidingIDs(t *testing.T) {
	p := startDubboProviders(t, "p")[0]
	relay := startCountingRelay(t, p.addr)
	h := startHost(t, pluginSO, fmt.Sprintf(`{"protocol": "dubbo",
	  "route_config": {"routes": [{"route": {"cluster": "p"}}]},
	  "clusters": [{"name": "p", "connections_per_endpoint": 1, "endpoints": [{"address": %q}]}]}`, relay.addr))
	const clients, calls = 60, 5
	conns := make([]net.Conn, clients)
	for i := range conns {
		c, err := net.DialTimeout("tcp", h.Listeners[0], callTimeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := make(chan struct{})
	for i, c := range conns {
		wg.Go(func() {
			<-start
			_ = c.SetDeadline(time.Now().Add(2 * callTimeout))
			for j := range calls {
				msg := fmt.Sprintf("client-%d-call-%d", i, j)
				req, err := dubboEchoFrame(1, msg)
				if err == nil {
					_, err = c.Write(req)
				}
				var id uint64
				var got string
				if err == nil {
					id, got, err = readDubboEcho(c)
				}
				if err != nil || id != 1 || got != "p:"+msg {
					errs <- fmt.Errorf("client %d: Echo(%q) = id %d %q, %v; want id 1 %q", i, msg, id, got, err, "p:"+msg)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := relay.n.Load(); n != 1 {
		t.Errorf("the provider saw %d connections; want 1 shared by %d clients", n, clients)
	}
}

// Dubbo streams that cannot be served are closed; the others carry on.
func TestDubboAbusivePeers(t *testing.T) {
	p := startDubboProviders(t, "p")[0]
	h := startHost(t, pluginSO,
		fmt.Sprintf(`{"protocol": "dubbo", "max_frame_size": 4096, "idle_timeout": "30s",
		  "route_config": {"routes": [{"route": {"cluster": "p"}}]},
		  "clusters": [{"name": "p", "endpoints": [{"address": %q}]}]}`, p.addr),
		// A short idle timeout, for the peer that stalls.
		fmt.Sprintf(`{"protocol": "dubbo", "idle_timeout": "0.5s",
		  "route_config": {"routes": [{"route": {"cluster": "p"}}]},
		  "clusters": [{"name": "p", "endpoints": [{"address": %q}]}]}`, p.addr))
	half, err := dubboEchoFrame(3, "never finished")
	if err != nil {
		t.Fatal(err)
	}
	bystander := dubboConn(t, h.Listeners[0], echoService, "")
	var got string
	if err := dubboCall(bystander, nil, "Echo", "start", &got, callTimeout); err != nil || got != "p:start" {
		t.Fatalf("Echo = %q, %v", got, err)
	}
	cases := []garbageCase{
		{name: "bad magic", send: []byte("GET / HTTP/1.1\r\nHost: meltemi\r\n\r\n"), within: time.Second},
		// A header that declares a 1 MiB body on a listener that allows 4 KiB.
		{name: "oversized frame", send: binary.BigEndian.AppendUint32(
			[]byte{0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 9}, 1<<20), within: time.Second},
		// The header and half the body of a request, then nothing: the idle timeout (0.5s)
		// closes it.
		{name: "half frame then stall", listener: 1, send: half[:dubboHeaderLen+(len(half)-dubboHeaderLen)/2],
			within: 2 * time.Second, notBefore: 300 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.assertClosedSilently(t, h.Listeners[tc.listener])
			var got string
			if err := dubboCall(bystander, nil, "Echo", tc.name, &got, callTimeout); err != nil || got != "p:"+tc.name {
				t.Errorf("bystander after %s: Echo = %q, %v", tc.name, got, err)
			}
			assertAlive(t, h)
		})
	}

	// A valid header and a body that is not hessian2: routing here needs only the header, so
	// the proxy forwards it, the provider closes its connection, and the client gets an
	// error reply for its request instead of a hang.
	t.Run("garbage body", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", h.Listeners[0], callTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if _, err := conn.Write(dubboFrame(0xc2, 9, []byte{0xff, 0xfe, 0xfd, 0xfc, 0xfb, 0xfa})); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(callTimeout))
		id, v, err := readDubboEcho(conn)
		if id != 9 || err == nil {
			t.Errorf("reply id %d, value %q, %v; want an error response to request 9", id, v, err)
		}
		t.Logf("reply: %v", err)
		var got string
		if err := dubboCall(bystander, nil, "Echo", "after garbage body", &got, callTimeout); err != nil || got != "p:after garbage body" {
			t.Errorf("bystander after the garbage body: Echo = %q, %v", got, err)
		}
		assertAlive(t, h)
	})
}
