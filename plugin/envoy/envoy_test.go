package envoy

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/builtin"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/plugin/engine"
	"github.com/meltemi-mesh/meltemi/plugin/internal/xdsclient"
)

// fakeConn records what the adapter asks of Envoy's connection callbacks. Like Envoy's Go
// side, it panics on an empty write.
type fakeConn struct {
	mu     sync.Mutex
	writes [][]byte
	closes []api.ConnectionCloseType
}

func (c *fakeConn) StreamInfo() api.StreamInfo { return nil }
func (c *fakeConn) EnableHalfClose(bool)       { panic("EnableHalfClose must not be used") }

func (c *fakeConn) Write(b []byte, endStream bool) {
	if len(b) == 0 {
		panic("empty write: Envoy's Go side indexes b[0]")
	}
	if endStream {
		panic("end_stream write on a connection without half-close")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, bytes.Clone(b))
}

func (c *fakeConn) Close(t api.ConnectionCloseType) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closes = append(c.closes, t)
}

func (c *fakeConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Join(c.writes, nil)
}

func (c *fakeConn) closeCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.closes)
}

// fakeEnvoy stands for network.CreateUpstreamConn: it records the dials.
type fakeEnvoy struct {
	mu    sync.Mutex
	dials []dial
}

type dial struct {
	addr string
	f    api.UpstreamFilter
}

func (e *fakeEnvoy) Dial(addr string, f api.UpstreamFilter) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dials = append(e.dials, dial{addr, f})
}

func (e *fakeEnvoy) waitDial(t *testing.T, n int) dial {
	t.Helper()
	var d dial
	waitFor(t, "dial", func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		if len(e.dials) > n {
			d = e.dials[n]
			return true
		}
		return false
	})
	return d
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func newParser(t *testing.T, env *fakeEnvoy) *Parser {
	t.Helper()
	reg, err := builtin.Registry()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p := &Parser{Registry: reg, Dial: env.Dial, Log: log, InitialFetchTimeout: 300 * time.Millisecond, XDS: xdsclient.Options{
		Logger: log, MissingTimeout: 300 * time.Millisecond,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	}}
	t.Cleanup(p.Close)
	return p
}

func configAny(t *testing.T, js string) *anypb.Any {
	t.Helper()
	a, err := apiv1alpha1.TypedStructAnyFromJSON([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// filterConfig parses js the way Envoy's Go side does: parser, then factory.
func filterConfig(t *testing.T, p *Parser, a *anypb.Any) *FilterConfig {
	t.Helper()
	fc, ok := Factory{}.CreateFactoryFromConfig(p.ParseConfig(a)).(*FilterConfig)
	if !ok {
		t.Fatal("the factory did not return a *FilterConfig")
	}
	return fc
}

// Thrift framed binary messages, as apache/thrift's Go library writes them.
const (
	thriftCall      = 1
	thriftReply     = 2
	thriftException = 3
)

func framed(typ byte, name string, seq uint32, body []byte) []byte {
	var m []byte
	m = append(m, 0x80, 0x01, 0, typ)
	m = binary.BigEndian.AppendUint32(m, uint32(len(name)))
	m = append(m, name...)
	m = binary.BigEndian.AppendUint32(m, seq)
	m = append(m, body...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(m))), m...)
}

// stringStruct is a struct whose field id holds s, as echo's args (1) and result (0).
func stringStruct(id byte, s string) []byte {
	b := []byte{11, 0, id}
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(append(b, s...), 0)
}

// parseFramed returns the type, name and seqid of one framed binary message.
func parseFramed(t *testing.T, b []byte) (typ byte, name string, seq uint32, rest []byte) {
	t.Helper()
	if len(b) < 12 || int(binary.BigEndian.Uint32(b)) != len(b)-4 {
		t.Fatalf("not one framed message: % x", b)
	}
	n := binary.BigEndian.Uint32(b[8:])
	name = string(b[12 : 12+n])
	return b[7], name, binary.BigEndian.Uint32(b[12+n:]), b[16+n:]
}

const routedConfig = `{"protocol": "thrift",
  "route_config": {"routes": [{"match": {"attributes": [{"name": "method", "exact": "echo"}]},
                               "route": {"cluster": "echo"}}]},
  "clusters": [{"name": "echo", "endpoints": [{"address": "127.0.0.1:9091"}]}]}`

func TestRoutedCall(t *testing.T) {
	env := &fakeEnvoy{}
	fc := filterConfig(t, newParser(t, env), configAny(t, routedConfig))
	if fc.Err() != nil || fc.Engine() == nil {
		t.Fatalf("valid config rejected: %v", fc.Err())
	}
	down := &fakeConn{}
	f := fc.CreateFilter(down)
	if f == fc.CreateFilter(down) {
		t.Fatal("CreateFilter returned the same filter twice: Envoy's finalizer would panic")
	}
	f.OnNewConnection()
	f.OnEvent(api.Connected)
	req := framed(thriftCall, "echo", 7, stringStruct(1, "hi"))
	// Split across reads, as TCP may deliver it.
	f.OnData(req[:5], false)
	f.OnData(req[5:], false)

	d := env.waitDial(t, 0)
	if d.addr != "127.0.0.1:9091" {
		t.Fatalf("dialed %q, want the endpoint", d.addr)
	}
	up := &fakeConn{}
	d.f.OnPoolReady(up)
	var upSeq uint32
	waitFor(t, "request upstream", func() bool { return len(up.written()) == len(req) })
	typ, name, upSeq, body := parseFramed(t, up.written())
	if typ != thriftCall || name != "echo" || !bytes.Equal(body, stringStruct(1, "hi")) {
		t.Fatalf("upstream got type %d name %q body % x", typ, name, body)
	}
	resp := framed(thriftReply, "echo", upSeq, stringStruct(0, "hi back"))
	d.f.OnData(resp, false)
	waitFor(t, "response downstream", func() bool { return len(down.written()) > 0 })
	typ, name, seq, body := parseFramed(t, down.written())
	if typ != thriftReply || name != "echo" || seq != 7 || !bytes.Equal(body, stringStruct(0, "hi back")) {
		t.Fatalf("client got type %d name %q seq %d body % x", typ, name, seq, body)
	}
	if f.OnWrite(down.written(), false) != api.NetworkFilterContinue {
		t.Error("OnWrite must let the filter's own writes through")
	}

	// The client leaves; later upstream traffic and the upstream's close reach nobody.
	f.OnEvent(api.RemoteClose)
	d.f.OnEvent(api.RemoteClose)
	if n := down.closeCount(); n != 0 {
		t.Errorf("Close called %d times on a connection the peer closed", n)
	}
	if fc.Panics() != 0 {
		t.Errorf("%d panics", fc.Panics())
	}
}

func TestRDSAnswersNoRoute(t *testing.T) {
	t.Setenv("MELTEMI_XDS_ADDRESS", "127.0.0.1:1") // no control plane
	fc := filterConfig(t, newParser(t, &fakeEnvoy{}), configAny(t, `{"protocol": "thrift",
	  "rds": {"route_config_name": "echo"}, "clusters": [{"name": "echo"}]}`))
	if fc.Err() != nil {
		t.Fatalf("rds config rejected: %v", fc.Err())
	}
	down := &fakeConn{}
	f := fc.CreateFilter(down)
	f.OnNewConnection()
	f.OnData(framed(thriftCall, "echo", 3, stringStruct(1, "x")), false)
	waitFor(t, "reply", func() bool { return len(down.written()) > 0 })
	typ, _, seq, body := parseFramed(t, down.written())
	if typ != thriftException || seq != 3 || !bytes.Contains(body, []byte("no_route")) {
		t.Errorf("got type %d seq %d body %q, want a no_route exception for seq 3", typ, seq, body)
	}
	if down.closeCount() != 0 {
		t.Error("a no-route reply closed the connection")
	}
}

func TestInvalidConfigAnswersWithErrorAndCloses(t *testing.T) {
	env := &fakeEnvoy{}
	p := newParser(t, env)
	// Valid JSON, invalid configuration: the route names a cluster that does not exist.
	fc := filterConfig(t, p, configAny(t, `{"protocol": "thrift",
	  "route_config": {"routes": [{"route": {"cluster": "nowhere"}}]}}`))
	if fc.Err() == nil || fc.Engine() != nil {
		t.Fatal("invalid config accepted")
	}
	if !strings.Contains(fc.Err().Error(), "nowhere") {
		t.Errorf("error %q does not name the culprit", fc.Err())
	}
	for conn := range 2 {
		down := &fakeConn{}
		f := fc.CreateFilter(down)
		f.OnNewConnection()
		req := framed(thriftCall, "echo", 41, stringStruct(1, "hi"))
		f.OnData(req[:9], false)
		if down.closeCount() != 0 || len(down.written()) != 0 {
			t.Fatalf("conn %d: answered before the request was complete", conn)
		}
		f.OnData(req[9:], false)
		typ, name, seq, body := parseFramed(t, down.written())
		if typ != thriftException || name != "echo" || seq != 41 || !bytes.Contains(body, []byte(rejectMessage)) {
			t.Errorf("conn %d: got type %d name %q seq %d body %q", conn, typ, name, seq, body)
		}
		if got := down.closes; len(got) != 1 || got[0] != api.FlushWrite {
			t.Errorf("conn %d: closes %v, want one FlushWrite", conn, got)
		}
		f.OnEvent(api.LocalClose)
	}
	if fc.Rejected() != 2 {
		t.Errorf("Rejected() = %d, want 2", fc.Rejected())
	}
	if len(env.dials) != 0 {
		t.Error("an invalid configuration dialed upstream")
	}
}

func TestInvalidConfigGarbageGetsCloseOnly(t *testing.T) {
	fc := filterConfig(t, newParser(t, &fakeEnvoy{}), configAny(t, `{"protocol": "thrift", "bogus": 1}`))
	if fc.Err() == nil {
		t.Fatal("unknown field accepted")
	}
	down := &fakeConn{}
	f := fc.CreateFilter(down)
	f.OnNewConnection()
	f.OnData([]byte("GET / HTTP/1.1\r\n\r\n"), false)
	if down.closeCount() != 1 {
		t.Errorf("closes %d, want 1", down.closeCount())
	}
	// Thrift cannot address a reply without a decoded request: nothing is written.
	if w := down.written(); len(w) != 0 {
		t.Errorf("wrote % x", w)
	}
}

func TestUnknownProtocolClosesAtOnce(t *testing.T) {
	for name, a := range map[string]*anypb.Any{
		"unknown protocol": configAny(t, `{"protocol": "smtp", "route_config": {}}`),
		"no config":        {},
		"wrong type":       {TypeUrl: "type.googleapis.com/google.protobuf.Duration"},
		"corrupt":          {TypeUrl: "type.googleapis.com/xds.type.v3.TypedStruct", Value: []byte{0xff, 0xff}},
		"nil":              nil,
	} {
		fc := filterConfig(t, newParser(t, &fakeEnvoy{}), a)
		if fc.Err() == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		down := &fakeConn{}
		f := fc.CreateFilter(down)
		f.OnNewConnection()
		if down.closeCount() != 1 {
			t.Errorf("%s: closes %d, want 1 at connection time", name, down.closeCount())
		}
		f.OnData([]byte{0, 0, 0, 1, 0}, false)
		f.OnEvent(api.LocalClose)
		if down.closeCount() != 1 || len(down.written()) != 0 {
			t.Errorf("%s: %d closes and %d bytes after the close", name, down.closeCount(), len(down.written()))
		}
	}
}

func TestForeignConfigIsRejected(t *testing.T) {
	fc, ok := Factory{}.CreateFactoryFromConfig(&anypb.Any{}).(*FilterConfig)
	if !ok || fc.Err() == nil {
		t.Fatal("a configuration that did not come from Parser was used")
	}
	down := &fakeConn{}
	fc.CreateFilter(down).OnNewConnection()
	if down.closeCount() != 1 {
		t.Errorf("closes %d, want 1", down.closeCount())
	}
}

// panicFactory is a codec whose every use panics.
type panicFactory struct{}

func (panicFactory) Name() string                             { return "boom" }
func (panicFactory) New(codecs.Options) (codecs.Codec, error) { return panicCodec{}, nil }

type panicCodec struct{}

func (panicCodec) Name() string         { return "boom" }
func (panicCodec) NewConn() codecs.Conn { panic("codec bug") }

func TestPanicsAreContained(t *testing.T) {
	reg, err := codecs.NewRegistry(panicFactory{})
	if err != nil {
		t.Fatal(err)
	}
	p := &Parser{Registry: reg, Dial: (&fakeEnvoy{}).Dial, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	// An invalid configuration naming the panicking codec: the reject path panics in
	// OnNewConnection; the connection is closed and the panic counted.
	fc := filterConfig(t, p, configAny(t, `{"protocol": "boom", "route_config": {"routes": [{"route": {"cluster": "x"}}]}}`))
	if fc.Err() == nil {
		t.Fatal("invalid config accepted")
	}
	down := &fakeConn{}
	f := fc.CreateFilter(down)
	f.OnNewConnection()
	if fc.Panics() != 1 || down.closeCount() != 1 {
		t.Errorf("after a panic: panics %d closes %d, want 1 and 1", fc.Panics(), down.closeCount())
	}
	f.OnData([]byte("x"), false)
	f.OnEvent(api.LocalClose)

	// An upstream handler that panics: the upstream connection is closed.
	up := &fakeConn{}
	u := &upstream{h: panicHandler{}, fc: fc}
	u.OnPoolReady(up)
	if fc.Panics() != 2 || up.closeCount() != 1 {
		t.Errorf("after an upstream panic: panics %d closes %d, want 2 and 1", fc.Panics(), up.closeCount())
	}
	u.OnData([]byte("x"), false)
	u.OnEvent(api.RemoteClose)
	if fc.Panics() != 4 {
		t.Errorf("panics %d, want 4", fc.Panics())
	}

	// A parser that panics still returns a rejecting configuration.
	p.Registry = nil
	p.registryErr = nil
	if out := p.ParseConfig(configAny(t, routedConfig)); out.(*FilterConfig).Err() == nil {
		t.Error("a panic while parsing gave a valid configuration")
	}
}

type panicHandler struct{}

func (panicHandler) OnReady(engine.UpstreamConn)     { panic("ready") }
func (panicHandler) OnFailure(engine.ConnectFailure) { panic("failure") }
func (panicHandler) OnData([]byte)                   { panic("data") }
func (panicHandler) OnClose()                        { panic("close") }

// recordHandler records an upstream's events.
type recordHandler struct {
	conn    engine.UpstreamConn
	failure engine.ConnectFailure
	data    []byte
	closed  int
}

func (h *recordHandler) OnReady(c engine.UpstreamConn)     { h.conn = c }
func (h *recordHandler) OnFailure(f engine.ConnectFailure) { h.failure = f }
func (h *recordHandler) OnData(b []byte)                   { h.data = append(h.data, b...) }
func (h *recordHandler) OnClose()                          { h.closed++ }

func TestUpstreamFailureReasons(t *testing.T) {
	for reason, want := range map[api.PoolFailureReason]engine.ConnectFailure{
		api.Overflow:                engine.FailureOverflow,
		api.LocalConnectionFailure:  engine.FailureLocal,
		api.RemoteConnectionFailure: engine.FailureRemote,
		api.Timeout:                 engine.FailureTimeout,
	} {
		h := &recordHandler{failure: 99}
		(&upstream{h: h, fc: unusable}).OnPoolFailure(reason, "")
		if h.failure != want {
			t.Errorf("%v: engine got %v, want %v", reason, h.failure, want)
		}
	}
}

func TestUpstreamNeverWritesOutsideItsLife(t *testing.T) {
	h := &recordHandler{}
	u := &upstream{h: h, fc: unusable}
	u.Write([]byte("early")) // the engine cannot, having no UpstreamConn yet; still dropped
	u.Close()
	c := &fakeConn{}
	u.OnPoolReady(c)
	if h.conn == nil {
		t.Fatal("OnReady not called")
	}
	h.conn.Write(nil)
	h.conn.Write([]byte("ok"))
	u.OnData([]byte("resp"), false)
	u.OnEvent(api.Connected)
	u.OnEvent(api.RemoteClose)
	h.conn.Write([]byte("late"))
	h.conn.Close()
	if got := string(c.written()); got != "ok" {
		t.Errorf("upstream got %q, want only the write between ready and close", got)
	}
	if c.closeCount() != 0 || h.closed != 1 || string(h.data) != "resp" {
		t.Errorf("closes %d, OnClose %d, data %q", c.closeCount(), h.closed, h.data)
	}
}

func TestDownstreamWriteAndClose(t *testing.T) {
	fc := filterConfig(t, newParser(t, &fakeEnvoy{}), configAny(t, routedConfig))
	c := &fakeConn{}
	d := fc.CreateFilter(c).(*downstream)
	d.OnNewConnection()
	d.Write(nil)
	d.Write([]byte("a"))
	d.Close()
	d.Close()
	d.OnEvent(api.LocalClose)
	d.Write([]byte("b"))
	if string(c.written()) != "a" || len(c.closes) != 1 || c.closes[0] != api.FlushWrite {
		t.Errorf("wrote %q, closes %v", c.written(), c.closes)
	}
}
