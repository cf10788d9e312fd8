package proxy_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// A peer that cannot be served loses its own connection and nothing else: the connections
// around it keep working and the host process lives.
func TestThriftAbusivePeers(t *testing.T) {
	backend := startThriftServer(t, "b")
	h := startHost(t, pluginSO,
		// Listener 0: small frames, a long idle timeout, so that only the bad bytes can be
		// why a connection closes.
		fmt.Sprintf(`{"protocol": "thrift", "max_frame_size": 1024, "idle_timeout": "30s",
		  "route_config": {"routes": [{"route": {"cluster": "b"}}]},
		  "clusters": [{"name": "b", "endpoints": [{"address": %q}]}]}`, backend.addr),
		// Listener 1: a short idle timeout, for the peer that stalls.
		fmt.Sprintf(`{"protocol": "thrift", "idle_timeout": "0.5s",
		  "route_config": {"routes": [{"route": {"cluster": "b"}}]},
		  "clusters": [{"name": "b", "endpoints": [{"address": %q}]}]}`, backend.addr))

	// Bystanders on both listeners, connected before the abuse. The one on listener 0 is
	// used after each case; the one on listener 1 calls every 100ms all along, which keeps
	// it from the idle timeout, until the test ends.
	bystander := newGoClient(t, h.Listeners[0], wireMode{"framed", "binary"})
	busy := newGoClient(t, h.Listeners[1], wireMode{"header", "compact"})
	stop, busyErr := make(chan struct{}), make(chan error, 1)
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			ctx, cancel := callCtx()
			msg := fmt.Sprint("busy-", i)
			got, err := busy.Echo(ctx, msg)
			cancel()
			if err != nil || got != "b:"+msg {
				busyErr <- fmt.Errorf("busy bystander: echo(%q) = %q, %v", msg, got, err)
				return
			}
			select {
			case <-stop:
				busyErr <- nil
				return
			case <-tick.C:
			}
		}
	}()
	defer func() {
		close(stop)
		if err := <-busyErr; err != nil {
			t.Error(err)
		}
	}()
	bystand := func(t *testing.T, round string) {
		t.Helper()
		ctx, cancel := callCtx()
		defer cancel()
		if got, err := bystander.Echo(ctx, round); err != nil || got != "b:"+round {
			t.Errorf("bystander after %s: echo = %q, %v", round, got, err)
		}
		assertAlive(t, h)
	}
	bystand(t, "start")

	// A strict-binary message header with message type 9, which does not exist.
	badType := []byte{0x80, 0x01, 0x00, 0x09, 0, 0, 0, 4, 'e', 'c', 'h', 'o', 0, 0, 0, 1, 0}
	cases := []garbageCase{
		{name: "garbage framed", send: append(binary.BigEndian.AppendUint32(nil, uint32(len(badType))), badType...),
			within: time.Second},
		{name: "garbage unframed", send: badType, within: time.Second},
		// The compact protocol id with version 31.
		{name: "garbage compact", send: []byte("\x82\x7f\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
			within: time.Second},
		// Declares 1 MiB on a listener that allows 1 KiB: refused on the length alone.
		{name: "oversized frame", send: append(binary.BigEndian.AppendUint32(nil, 1<<20), 0x80, 0x01, 0x00, 0x01),
			within: time.Second},
		// Half of a valid framed call, then nothing: the idle timeout (0.5s) closes it.
		{name: "half frame then stall", listener: 1, send: framedCall("echo", 1)[:10],
			within: 2 * time.Second, notBefore: 300 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.assertClosedSilently(t, h.Listeners[tc.listener])
			bystand(t, tc.name)
		})
	}
}

// A codec that panics on one request loses that connection only: the other connections of
// the same listener and the host process carry on.
func TestCodecPanicDuringTraffic(t *testing.T) {
	backend := startThriftServer(t, "b")
	h := startHost(t, boomSO, fmt.Sprintf(`{"protocol": "thrift-boom",
	  "route_config": {"routes": [{"route": {"cluster": "b"}}]},
	  "clusters": [{"name": "b", "endpoints": [{"address": %q}]}]}`, backend.addr))
	bystander := newGoClient(t, h.Listeners[0], wireMode{"framed", "binary"})
	echoOK := func(c *goClient, msg string) {
		t.Helper()
		ctx, cancel := callCtx()
		defer cancel()
		if got, err := c.Echo(ctx, msg); err != nil || got != "b:"+msg {
			t.Errorf("echo(%q) = %q, %v", msg, got, err)
		}
	}
	echoOK(bystander, "before")

	for round := range 3 {
		conn, err := net.DialTimeout("tcp", h.Listeners[0], callTimeout)
		if err != nil {
			t.Fatal(err)
		}
		// One good call on the connection first: the panic happens during traffic.
		if _, err := conn.Write(framedEcho("fine", 1)); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(callTimeout))
		if err := readFrame(conn); err != nil {
			t.Fatalf("round %d: reply to the call before boom: %v", round, err)
		}
		// The bystander's calls go on while the codec panics on the other connection.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := range 20 {
				echoOK(bystander, fmt.Sprintf("during-%d-%d", round, i))
			}
		}()
		if _, err := conn.Write(framedCall("boom", 2)); err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(conn); err != nil && !isReset(err) {
			t.Fatalf("round %d: the connection whose codec panicked is still open (read %q): %v", round, got, err)
		}
		<-done
		conn.Close()
	}
	echoOK(bystander, "after")
	echoOK(newGoClient(t, h.Listeners[0], wireMode{"header", "binary"}), "new")
	assertAlive(t, h)
}

// A codec that panics on a response, on the shared upstream connection: the client that
// made the call gets an error rather than a hang, and the proxy serves the next calls.
func TestCodecPanicOnResponse(t *testing.T) {
	backend := startThriftServer(t, "b")
	h := startHost(t, boomSO, fmt.Sprintf(`{"protocol": "thrift-boom",
	  "route_config": {"routes": [{"route": {"cluster": "b"}}]},
	  "clusters": [{"name": "b", "connections_per_endpoint": 1, "endpoints": [{"address": %q}]}]}`, backend.addr))
	bystander := newGoClient(t, h.Listeners[0], wireMode{"framed", "binary"})
	echoOK := func(msg string) {
		t.Helper()
		ctx, cancel := callCtx()
		defer cancel()
		if got, err := bystander.Echo(ctx, msg); err != nil || got != "b:"+msg {
			t.Errorf("echo(%q) = %q, %v", msg, got, err)
		}
	}
	echoOK("before")
	conn, err := net.DialTimeout("tcp", h.Listeners[0], callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server answers the unknown method with an exception named boom_reply, on which
	// the codec panics while decoding the upstream's bytes.
	if _, err := conn.Write(framedCall("boom_reply", 5)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	reply, err := readFramed(conn)
	switch {
	case err == nil:
		if !bytes.Contains(reply, []byte("meltemi")) {
			t.Errorf("the call whose response panicked got %q; want the proxy's error reply", reply)
		}
		t.Logf("error reply: %q", reply)
	case errors.Is(err, io.EOF) || isReset(err):
		t.Logf("connection closed: %v", err)
	default:
		t.Fatalf("the call whose response panicked got no answer: %v", err)
	}
	echoOK("after")
	assertAlive(t, h)
}

// framedCall is a framed strict-binary CALL of method with seqid seq and no arguments.
func framedCall(method string, seq uint32) []byte {
	return framed(callHeader(method, seq), 0) // STOP: no arguments
}

// framedEcho is a framed strict-binary call of echo(msg).
func framedEcho(msg string, seq uint32) []byte {
	m := callHeader("echo", seq)
	m = append(m, 11, 0, 1) // field 1, string
	m = binary.BigEndian.AppendUint32(m, uint32(len(msg)))
	m = append(m, msg...)
	return framed(m, 0) // STOP: end of the arguments
}

func callHeader(method string, seq uint32) []byte {
	m := []byte{0x80, 0x01, 0, 1}
	m = binary.BigEndian.AppendUint32(m, uint32(len(method)))
	m = append(m, method...)
	return binary.BigEndian.AppendUint32(m, seq)
}

func framed(m []byte, tail ...byte) []byte {
	m = append(m, tail...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(m))), m...)
}

// readFrame reads one framed message.
func readFrame(conn net.Conn) error {
	_, err := readFramed(conn)
	return err
}

// readFramed reads one framed message and returns it without its length.
func readFramed(conn net.Conn) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > 1<<20 {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	m := make([]byte, n)
	_, err := io.ReadFull(conn, m)
	return m, err
}

// garbageCase is what an abusive peer sends on a new connection: bytes the proxy cannot
// decode into a request.
type garbageCase struct {
	name     string
	listener int
	send     []byte
	// within is how long the proxy may take to close the connection; notBefore, how long it
	// must keep it open.
	within, notBefore time.Duration
}

// assertClosedSilently sends tc's bytes to addr and asserts that the proxy closes the
// connection without writing anything, within tc.within and not before tc.notBefore.
func (tc garbageCase) assertClosedSilently(t *testing.T, addr string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	if _, err := conn.Write(tc.send); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(start.Add(tc.within))
	// Neither Thrift nor Dubbo can address a reply without a decoded request, so the proxy
	// closes without writing.
	got, err := io.ReadAll(conn)
	took := time.Since(start)
	if err != nil && !isReset(err) {
		t.Fatalf("connection still open after %v (read %q): %v", took, got, err)
	}
	if len(got) > 0 {
		t.Errorf("the proxy answered %q before closing; want no bytes", got)
	}
	if took < tc.notBefore {
		t.Errorf("closed after %v; want the idle timeout first", took)
	}
	t.Logf("closed after %v", took)
}

// isReset reports whether err is a connection reset: closing with unread bytes resets.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
