package proxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/meltemi-mesh/meltemi/e2e/interop/thrift/gen-go/echo"
)

// thriftServer is an apache/thrift Go Echo server that names itself in every reply
// ("name:msg"). It speaks every transport and protocol the proxy does: Go's THeader server
// transport detects framed, unframed and THeader clients, binary and compact, and answers
// each in kind.
//
// Two messages make it misbehave: echo("sleep:<duration>") answers after that long, and
// echo("hang") answers only when the server is killed.
type thriftServer struct {
	name string
	addr string

	sock     *countingServerSocket
	srv      *thrift.TSimpleServer
	entered  chan struct{} // one value each time a handler starts to hang
	killed   chan struct{}
	killOnce sync.Once
	calls    atomic.Int64 // echo calls received
}

func startThriftServer(t *testing.T, name string) *thriftServer {
	t.Helper()
	conf := &thrift.TConfiguration{}
	inner, err := thrift.NewTServerSocket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &thriftServer{name: name, sock: &countingServerSocket{TServerSocket: inner},
		entered: make(chan struct{}, 16), killed: make(chan struct{})}
	if err := s.sock.Listen(); err != nil {
		t.Fatal(err)
	}
	s.addr = inner.Addr().String()
	s.srv = thrift.NewTSimpleServer4(echo.NewEchoProcessor(echoHandler{s}), s.sock,
		thrift.NewTHeaderTransportFactoryConf(nil, conf), thrift.NewTHeaderProtocolFactoryConf(conf))
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.srv.Serve()
	}()
	// The host is stopped before (cleanups run last-in first-out), so the proxy's upstream
	// connections are closed by now and Stop, which waits for them, returns.
	t.Cleanup(func() {
		s.kill()
		stopped := make(chan struct{})
		go func() {
			_ = s.srv.Stop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(callTimeout):
			t.Errorf("thrift server %s did not stop", name)
		}
		<-served
	})
	return s
}

// kill makes the server go away as a killed process does: the listener and every accepted
// connection are closed, whatever calls are in flight.
func (s *thriftServer) kill() {
	s.killOnce.Do(func() {
		close(s.killed)
		_ = s.sock.Close()
		s.sock.closeAccepted()
	})
}

// accepted is the number of connections the server has accepted.
func (s *thriftServer) accepted() int64 { return s.sock.n.Load() }

// countingServerSocket counts and keeps the connections it accepts.
type countingServerSocket struct {
	*thrift.TServerSocket
	n     atomic.Int64
	mu    sync.Mutex
	conns []thrift.TTransport
}

func (s *countingServerSocket) Accept() (thrift.TTransport, error) {
	c, err := s.TServerSocket.Accept()
	if err == nil {
		s.n.Add(1)
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
	}
	return c, err
}

func (s *countingServerSocket) closeAccepted() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
}

type echoHandler struct{ s *thriftServer }

func (h echoHandler) Echo(ctx context.Context, msg string) (string, error) {
	h.s.calls.Add(1)
	switch {
	case msg == "hang":
		h.s.entered <- struct{}{}
		<-h.s.killed
		return "", errors.New("killed")
	case strings.HasPrefix(msg, "sleep:"):
		d, err := time.ParseDuration(strings.TrimPrefix(msg, "sleep:"))
		if err != nil {
			return "", err
		}
		time.Sleep(d)
	}
	return h.s.name + ":" + msg, nil
}

func (echoHandler) Fire(context.Context, string) error        { return nil }
func (echoHandler) LastFired(context.Context) (string, error) { return "", nil }

// Fail throws a declared exception that names the server.
func (h echoHandler) Fail(_ context.Context, msg string) (string, error) {
	return "", &echo.EchoError{Message: h.s.name + ":" + msg}
}

// Header returns the THeader header key as the server received it, naming the server.
func (h echoHandler) Header(ctx context.Context, key string) (string, error) {
	v, _ := thrift.GetHeader(ctx, key)
	return h.s.name + ":" + v, nil
}

// wireMode is a Thrift transport and protocol a client speaks.
type wireMode struct{ transport, protocol string } // framed|buffered|header, binary|compact

func (m wireMode) String() string { return m.transport + "/" + m.protocol }

var wireModes = []wireMode{{"framed", "binary"}, {"buffered", "compact"}, {"header", "binary"}, {"header", "compact"}}

// goClient is an apache/thrift Go Echo client on one connection.
type goClient struct {
	*echo.EchoClient
	trans thrift.TTransport
}

func newGoClient(t *testing.T, addr string, m wireMode) *goClient {
	t.Helper()
	c, err := dialGoClient(addr, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

func dialGoClient(addr string, m wireMode) (*goClient, error) {
	conf := &thrift.TConfiguration{ConnectTimeout: callTimeout, SocketTimeout: callTimeout}
	sock := thrift.NewTSocketConf(addr, conf)
	var trans thrift.TTransport
	var proto thrift.TProtocol
	switch m.transport {
	case "framed":
		trans = thrift.NewTFramedTransportConf(sock, conf)
	case "buffered":
		trans = thrift.NewTBufferedTransport(sock, 4096)
	case "header":
		if m.protocol == "compact" {
			conf.THeaderProtocolID = thrift.THeaderProtocolIDPtrMust(thrift.THeaderProtocolCompact)
		}
		hp := thrift.NewTHeaderProtocolConf(sock, conf)
		trans, proto = hp.Transport(), hp
	default:
		return nil, fmt.Errorf("unknown transport %q", m.transport)
	}
	if proto == nil {
		if m.protocol == "compact" {
			proto = thrift.NewTCompactProtocolConf(trans, conf)
		} else {
			proto = thrift.NewTBinaryProtocolConf(trans, conf)
		}
	}
	if err := trans.Open(); err != nil {
		return nil, fmt.Errorf("open %s: %w", addr, err)
	}
	return &goClient{EchoClient: echo.NewEchoClient(thrift.NewTStandardClient(proto, proto)), trans: trans}, nil
}

func (c *goClient) close() { _ = c.trans.Close() }

// callCtx is a call context with the THeader headers hs (key, value pairs).
func callCtx(hs ...string) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	var keys []string
	for i := 0; i+1 < len(hs); i += 2 {
		ctx = thrift.SetHeader(ctx, hs[i], hs[i+1])
		keys = append(keys, hs[i])
	}
	if keys != nil {
		ctx = thrift.SetWriteHeaderList(ctx, keys)
	}
	return ctx, cancel
}

// appException returns err's TApplicationException type, or -1 if err is not one.
func appException(err error) int32 {
	var ae thrift.TApplicationException
	if errors.As(err, &ae) {
		return ae.TypeId()
	}
	return -1
}

// --- python3-thrift client (Debian's), through e2e/interop/thrift/peer.py --------------

// pythonBin is Debian's interpreter, the one that sees Debian's python3-thrift.
const pythonBin = "/usr/bin/python3"

const peerDir = "../interop/thrift"

var (
	pyGenOnce sync.Once
	pyGen     string
	pyGenErr  error
)

// pyBindings generates the Python bindings of echo.thrift once per test binary.
func pyBindings(t *testing.T) string {
	t.Helper()
	pyGenOnce.Do(func() {
		pyGen = filepath.Join(workDir, "py")
		if pyGenErr = os.Mkdir(pyGen, 0o755); pyGenErr != nil {
			return
		}
		out, err := exec.Command("thrift", "--gen", "py", "-out", pyGen, peerDir+"/echo.thrift").CombinedOutput()
		if err != nil {
			pyGenErr = fmt.Errorf("thrift --gen py: %w\n%s", err, out)
		}
	})
	if pyGenErr != nil {
		t.Fatal(pyGenErr)
	}
	return pyGen
}

// pyCall is one call of peer.py's client (its JSON input).
type pyCall struct {
	Method  string            `json:"method"`
	Args    []any             `json:"args,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Seqid   int32             `json:"seqid,omitempty"`
}

// pyResult is the outcome of one call, as peer.py reports it.
type pyResult struct {
	Value *string `json:"value"`
	Error *struct {
		Kind    string `json:"kind"` // application, declared, other
		Type    int32  `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func (r pyResult) String() string {
	if r.Error != nil {
		return fmt.Sprintf("error %+v", *r.Error)
	}
	if r.Value != nil {
		return fmt.Sprintf("value %q", *r.Value)
	}
	return "no value"
}

// runPyClient makes calls on one connection with peer.py's python3-thrift client.
func runPyClient(t *testing.T, addr string, m wireMode, calls []pyCall) []pyResult {
	t.Helper()
	in, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*callTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, pythonBin, peerDir+"/peer.py", "client", "--gen", pyBindings(t),
		"--transport", m.transport, "--protocol", m.protocol, "--addr", addr,
		"--timeout-ms", fmt.Sprint(callTimeout.Milliseconds()))
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python client: %v\nstderr:\n%s", err, stderr.String())
	}
	var run struct {
		Results []pyResult `json:"results"`
		Fatal   string     `json:"fatal"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &run); err != nil {
		t.Fatalf("python client output %q: %v\nstderr:\n%s", stdout.String(), err, stderr.String())
	}
	if run.Fatal != "" {
		t.Fatalf("python client: %s", run.Fatal)
	}
	return run.Results
}
