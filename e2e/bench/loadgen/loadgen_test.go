package loadgen

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer answers every frame of p on a real socket the way the benchmark's backends
// do: a Thrift REPLY or a Dubbo OK response with the request's id and payload. It is a
// minimal peer for these unit tests only; the benchmark runs against real servers.
func echoServer(t *testing.T, protocol string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveEcho(c, protocol)
		}
	}()
	return l.Addr().String()
}

func serveEcho(c net.Conn, protocol string) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		switch protocol {
		case "thrift":
			var size [4]byte
			if _, err := io.ReadFull(r, size[:]); err != nil {
				return
			}
			b := make([]byte, 4+binary.BigEndian.Uint32(size[:]))
			copy(b, size[:])
			if _, err := io.ReadFull(r, b[4:]); err != nil {
				return
			}
			b[7] = 2 // CALL -> REPLY
			b[thriftSeqIDAt+4] = 11
			b[thriftSeqIDAt+6] = 0 // field id 0: the return value
			if _, err := c.Write(b); err != nil {
				return
			}
		case "dubbo":
			h := make([]byte, dubboHeader)
			if _, err := io.ReadFull(r, h); err != nil {
				return
			}
			body := make([]byte, binary.BigEndian.Uint32(h[12:]))
			if _, err := io.ReadFull(r, body); err != nil {
				return
			}
			h[2], h[3] = 2, dubboStatusOK
			if _, err := c.Write(append(h, body...)); err != nil {
				return
			}
		}
	}
}

func TestClosedAndOpenLoop(t *testing.T) {
	for _, name := range []string{"thrift", "dubbo"} {
		t.Run(name, func(t *testing.T) {
			p, err := ByName(name)
			if err != nil {
				t.Fatal(err)
			}
			l, err := Dial(Options{Addr: echoServer(t, name), Protocol: p, Conns: 2, Payload: 1024})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			r := l.Run(200*time.Millisecond, 0)
			if err := l.Err(); err != nil {
				t.Fatal(err)
			}
			if r.Requests == 0 || r.Latency.Count() != r.Requests || r.Latency.Quantile(0.5) <= 0 {
				t.Errorf("closed loop: %d requests, %d latencies, p50 %v", r.Requests, r.Latency.Count(), r.Latency.Quantile(0.5))
			}
			// Open loop at 1000/s for 300ms sends 301 requests (one at time 0 on each
			// connection, then every 2ms), all answered.
			r = l.Run(300*time.Millisecond, 1000)
			if err := l.Err(); err != nil {
				t.Fatal(err)
			}
			if r.Requests != 302 {
				t.Errorf("open loop: %d replies, want 302", r.Requests)
			}
			if q := r.QPS(); q < 800 || q > 1200 {
				t.Errorf("open loop: %.0f req/s, want about 1000", q)
			}
		})
	}
}

func TestThriftExceptionIsAnError(t *testing.T) {
	// A TApplicationException reply (message type 3) is not a successful echo.
	b := []byte{0, 0, 0, 0, 0x80, 1, 0, 3, 0, 0, 0, 4, 'e', 'c', 'h', 'o', 0, 0, 0, 1, 0}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	_, err := Thrift{}.ReadResponse(bufio.NewReader(strings.NewReader(string(b))), make([]byte, 64))
	if err == nil || !strings.Contains(err.Error(), "want a reply") {
		t.Errorf("err = %v, want a not-a-reply error", err)
	}
}

func TestDubboErrorStatusIsAnError(t *testing.T) {
	h := make([]byte, dubboHeader)
	h[0], h[1], h[2], h[3] = 0xda, 0xbb, 2, 70 // SERVICE_ERROR
	_, err := Dubbo{}.ReadResponse(bufio.NewReader(strings.NewReader(string(h))), make([]byte, 64))
	if err == nil || !strings.Contains(err.Error(), "status 70") {
		t.Errorf("err = %v, want a status error", err)
	}
}
