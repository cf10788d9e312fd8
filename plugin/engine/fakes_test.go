package engine

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
	"sync"
	"testing"

	hessian2 "github.com/apache/dubbo-go-hessian2"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/dubbo"
	"github.com/meltemi-mesh/meltemi/codecs/thrift"
)

// fakeDown is an in-memory downstream connection: it keeps what the engine writes.
type fakeDown struct {
	mu     sync.Mutex
	buf    []byte
	writes int
	closed int
}

func (d *fakeDown) Write(b []byte) {
	if len(b) == 0 {
		panic("empty downstream write")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.buf = append(d.buf, b...)
	d.writes++
}

func (d *fakeDown) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed++
}

func (d *fakeDown) isClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.closed > 0
}

func (d *fakeDown) bytes() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.buf)
}

// dial is one Dial call the fake dialer recorded.
type dial struct {
	addr string
	h    UpstreamHandler
}

// fakeDialer records dials; tests decide when they succeed or fail.
type fakeDialer struct {
	mu    sync.Mutex
	dials []dial
	// auto, when set, completes each dial on a goroutine of its own, as a host's worker
	// would.
	auto func(d dial)
}

func (f *fakeDialer) Dial(addr string, h UpstreamHandler) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dials = append(f.dials, dial{addr, h})
	if f.auto != nil {
		go f.auto(dial{addr, h})
	}
}

func (f *fakeDialer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.dials)
}

func (f *fakeDialer) get(t testing.TB, i int) dial {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.dials) {
		t.Fatalf("dial %d requested, %d made", i, len(f.dials))
	}
	return f.dials[i]
}

// ready completes dial i and returns the fake server at the other end.
func (f *fakeDialer) ready(t testing.TB, i int, c codecs.Codec) *fakeServer {
	t.Helper()
	d := f.get(t, i)
	s := &fakeServer{t: t, addr: d.addr, h: d.h, conn: c.NewConn()}
	d.h.OnReady(s)
	return s
}

// fakeServer is the upstream end of a connection: the engine's writes arrive in buf.
type fakeServer struct {
	t    testing.TB
	addr string
	h    UpstreamHandler

	mu     sync.Mutex
	buf    []byte
	writes int
	closed bool
	conn   codecs.Conn
}

func (s *fakeServer) Write(b []byte) {
	if len(b) == 0 {
		panic("empty upstream write")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(s.buf, b...)
	s.writes++
}

func (s *fakeServer) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

// requests decodes and consumes the frames written so far.
func (s *fakeServer) requests() []codecs.Frame {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	fs, rest := decodeAll(s.t, s.conn, s.buf)
	s.buf = rest
	return fs
}

// decodeAll decodes every complete frame of b and returns them with the remaining bytes.
func decodeAll(t testing.TB, c codecs.Conn, b []byte) ([]codecs.Frame, []byte) {
	t.Helper()
	var fs []codecs.Frame
	for len(b) > 0 {
		f, n, err := c.Decode(b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if f == nil {
			break
		}
		fs = append(fs, f)
		b = b[n:]
	}
	return fs, slices.Clone(b)
}

// client is a session with its fake connection and a codec to read what it receives.
type client struct {
	t    testing.TB
	s    *Session
	down *fakeDown
	conn codecs.Conn
	seen int // bytes of down.buf already decoded
}

func newClient(t testing.TB, e *Engine) *client {
	d := &fakeDown{}
	return &client{t: t, s: e.NewSession(d), down: d, conn: e.codec.NewConn()}
}

func (c *client) send(b ...[]byte) { c.s.OnData(bytes.Join(b, nil)) }

// replies decodes the frames the client received since the last call.
func (c *client) replies() []codecs.Frame {
	c.t.Helper()
	b := c.down.bytes()[c.seen:]
	fs, rest := decodeAll(c.t, c.conn, b)
	c.seen += len(b) - len(rest)
	return fs
}

// one expects exactly one new reply.
func (c *client) one() codecs.Frame {
	c.t.Helper()
	fs := c.replies()
	if len(fs) != 1 {
		c.t.Fatalf("client got %d replies, want 1", len(fs))
	}
	return fs[0]
}

// wantError expects exactly one new reply: an error response with id and reason.
func (c *client) wantError(id uint64, reason codecs.Reason) {
	c.t.Helper()
	f := c.one()
	if f.Kind() != codecs.KindErrorResponse || f.RequestID() != id {
		c.t.Fatalf("reply %v id %d, want an error response with id %d", f.Kind(), f.RequestID(), id)
	}
	b, _ := f.AppendTo(nil)
	// Thrift names the reason as is, Dubbo in words.
	if !bytes.Contains(b, []byte(reason.String())) && !bytes.Contains(b, []byte(strings.ReplaceAll(reason.String(), "_", " "))) {
		c.t.Fatalf("error reply %q does not name reason %v", b, reason)
	}
}

func mustCodec(t testing.TB, f codecs.Factory) codecs.Codec {
	t.Helper()
	c, err := f.New(codecs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func thriftCodec(t testing.TB) codecs.Codec { return mustCodec(t, thrift.Factory{}) }
func dubboCodec(t testing.TB) codecs.Codec  { return mustCodec(t, dubbo.Factory{}) }

func newEngine(t testing.TB, cfg Config) (*Engine, *fakeDialer) {
	t.Helper()
	d := &fakeDialer{}
	e, err := New(cfg, Options{Dialer: d})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(e.Close)
	return e, d
}

// oneCluster is a config with one route to one cluster.
func oneCluster(c codecs.Codec, r Route, cl Cluster) Config {
	if cl.Name == "" {
		cl.Name = "c"
	}
	if len(cl.Endpoints) == 0 {
		cl.Endpoints = []Endpoint{{Address: "10.0.0.1:9090"}}
	}
	if r.Cluster == "" && len(r.WeightedClusters) == 0 {
		r.Cluster = cl.Name
	}
	return Config{Codec: c, Routes: []Route{r}, Clusters: []Cluster{cl}}
}

// Thrift framed binary messages.
const (
	tCall      = 1
	tReply     = 2
	tException = 3
	tOneway    = 4
)

func thriftMsg(typ byte, name string, seq uint32, body []byte) []byte {
	m := []byte{0x80, 0x01, 0, typ}
	m = binary.BigEndian.AppendUint32(m, uint32(len(name)))
	m = append(m, name...)
	m = binary.BigEndian.AppendUint32(m, seq)
	m = append(m, body...)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(m))), m...)
}

// stringField is a struct with one string field id and a stop byte.
func stringField(id int16, v string) []byte {
	b := []byte{11, byte(id >> 8), byte(id)}
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(append(b, v...), 0)
}

func call(name string, seq uint32) []byte {
	return thriftMsg(tCall, name, seq, stringField(1, "hello"))
}

func reply(name string, seq uint32, v string) []byte {
	return thriftMsg(tReply, name, seq, stringField(0, v))
}

// replyTo builds the server's reply to a decoded request, echoing its method and id.
func replyTo(t testing.TB, req codecs.Frame, v string) []byte {
	t.Helper()
	m, _ := req.Attribute("method")
	if svc, ok := req.Attribute("service"); ok {
		m = svc + ":" + m
	}
	return reply(m, uint32(req.RequestID()), v)
}

// payload returns the string result of a Thrift reply.
func payload(t testing.TB, f codecs.Frame) string {
	t.Helper()
	b, err := f.AppendTo(nil)
	if err != nil {
		t.Fatal(err)
	}
	// framed: len(4) version(4) namelen(4) name seq(4) field(3) strlen(4) str stop
	nameLen := binary.BigEndian.Uint32(b[8:12])
	off := 12 + int(nameLen) + 4 + 3
	n := binary.BigEndian.Uint32(b[off:])
	return string(b[off+4 : off+4+int(n)])
}

// Dubbo frames, bodies written by dubbo-go-hessian2.
func dubboFrame(t testing.TB, flags, status byte, id uint64, vals ...any) []byte {
	t.Helper()
	e := hessian2.NewEncoder()
	for _, v := range vals {
		if err := e.Encode(v); err != nil {
			t.Fatal(err)
		}
	}
	body := e.Buffer()
	b := []byte{0xda, 0xbb, flags, status}
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

func dubboRequest(t testing.TB, id uint64, service, version, method string, atts map[string]string) []byte {
	if atts == nil {
		atts = map[string]string{}
	}
	return dubboFrame(t, 0xc2, 0, id, "2.0.2", service, version, method, "Ljava/lang/String;", "hi", atts)
}

func dubboResponse(t testing.TB, id uint64, v string, atts map[string]string) []byte {
	if atts == nil {
		return dubboFrame(t, 0x02, 20, id, int32(1), v)
	}
	return dubboFrame(t, 0x02, 20, id, int32(4), v, atts)
}

func dubboHeartbeat(id uint64) []byte {
	b := []byte{0xda, 0xbb, 0xe2, 0}
	b = binary.BigEndian.AppendUint64(b, id)
	return append(binary.BigEndian.AppendUint32(b, 1), 'N')
}

// testCluster returns the engine's cluster named name in its current route table.
func (e *Engine) testCluster(name string) *cluster { return e.table.Load().clusters[name] }
