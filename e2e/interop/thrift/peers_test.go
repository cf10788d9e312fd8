package thriftinterop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/meltemi-mesh/meltemi/e2e/interop/thrift/gen-go/echo"
)

// callTimeout bounds every network operation of a client: a client and a server that
// disagree on the transport (framed against unframed) otherwise wait for each other forever.
const callTimeout = 5 * time.Second

// pythonBin is Debian's interpreter, the one that sees Debian's python3-thrift; the python3
// on PATH may be another one.
const pythonBin = "/usr/bin/python3"

// peerConfig is the wire variant a peer speaks.
type peerConfig struct {
	Transport string // "framed", "buffered" or "header"
	// Protocol is "binary", "compact" or "binary-nonstrict": the old binary encoding without
	// a version word, which clients write and servers accept.
	Protocol  string
	Zlib      bool // THeader: compress payloads with the zlib transform
	Multiplex bool // TMultiplexedProtocol, services "Echo" and "Calc"
}

func (c peerConfig) String() string {
	s := c.Transport + "-" + c.Protocol
	if c.Zlib {
		s += "-zlib"
	}
	if c.Multiplex {
		s += "-mux"
	}
	return s
}

// call is one RPC a client makes. It is also the JSON peer.py reads.
type call struct {
	Service string            `json:"service,omitempty"` // "Echo" (default) or "Calc"
	Method  string            `json:"method"`
	Args    []any             `json:"args,omitempty"`
	Headers map[string]string `json:"headers,omitempty"` // THeader info headers to send
	// Seqid is the seqid a Python client sends. Go clients number their calls themselves.
	Seqid int32 `json:"seqid,omitempty"`
}

func (c call) twoWay() bool { return c.Method != "fire" }

// callError is how a call failed.
type callError struct {
	// Kind is "application" (a TApplicationException), "declared" (EchoError) or "other"
	// (transport and protocol failures).
	Kind    string `json:"kind"`
	Type    int    `json:"type"` // TApplicationException type
	Message string `json:"message"`
	Trace   string `json:"trace,omitempty"`
}

// callResult is the outcome of one call, from either client.
type callResult struct {
	Value *string    `json:"value"`
	Error *callError `json:"error"`
	// Headers are the THeader headers of the response (two-way calls on THeader only).
	Headers map[string]string `json:"headers"`
}

func (r callResult) String() string {
	switch {
	case r.Error != nil:
		return fmt.Sprintf("error %+v", *r.Error)
	case r.Value != nil && len(*r.Value) > 64:
		// Long values differ in the middle as often as at the start: show a digest.
		return fmt.Sprintf("value of %d bytes, sha256 %x", len(*r.Value), sha256.Sum256([]byte(*r.Value)))
	case r.Value != nil:
		return fmt.Sprintf("value %q", *r.Value)
	}
	return "no value"
}

// clientRun is what a client reports of a conversation.
type clientRun struct {
	Results []callResult `json:"results"`
	// Sent and Received are the seqids a Python client wrote and read: its generated code
	// does not compare them, so the test does. The Go client checks them itself (a reply
	// with another seqid fails the call with BAD_SEQUENCE_ID), and leaves these empty.
	Sent     []int32 `json:"sent"`
	Received []int32 `json:"received"`
	Fatal    string  `json:"fatal"`
}

// client runs calls against addr, one connection, and reports the outcome.
type client interface {
	name() string
	// onewayAsCall says whether the client sends oneway calls as CALL messages. apache/thrift's
	// Go client does (TStandardClient.Send always writes CALL; only the missing reply tells a
	// oneway call apart), so nothing on the wire marks them oneway.
	onewayAsCall() bool
	run(t *testing.T, cfg peerConfig, addr string, calls []call) clientRun
}

// server starts an Echo server and returns its address; the test stops it.
type server interface {
	name() string
	start(t *testing.T, cfg peerConfig) string
}

// --- Go (github.com/apache/thrift v0.25.0) -----------------------------------------------

type goPeer struct{}

func (goPeer) name() string { return "go" }

func (goPeer) onewayAsCall() bool { return true }

// echoHandler implements echo.Echo; lastFired makes oneway deliveries observable.
type echoHandler struct {
	mu   sync.Mutex
	last string
}

func (h *echoHandler) Echo(_ context.Context, msg string) (string, error) { return msg, nil }

func (h *echoHandler) Fire(_ context.Context, msg string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = msg
	return nil
}

func (h *echoHandler) LastFired(context.Context) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last, nil
}

func (h *echoHandler) Fail(_ context.Context, msg string) (string, error) {
	return "", &echo.EchoError{Message: msg}
}

// Header reads the headers TSimpleServer put in the context from the THeader frame.
func (h *echoHandler) Header(ctx context.Context, key string) (string, error) {
	v, _ := thrift.GetHeader(ctx, key)
	return v, nil
}

type calcHandler struct{}

func (calcHandler) Add(_ context.Context, a, b int32) (int32, error) { return a + b, nil }

func (goPeer) start(t *testing.T, cfg peerConfig) string {
	t.Helper()
	conf := &thrift.TConfiguration{}
	var tf thrift.TTransportFactory
	var pf thrift.TProtocolFactory
	switch cfg.Transport {
	case "framed":
		tf = thrift.NewTFramedTransportFactoryConf(thrift.NewTTransportFactory(), conf)
	case "buffered":
		tf = thrift.NewTBufferedTransportFactory(4096)
	case "header":
		// The server answers in the subprotocol and with the transforms of each request.
		tf = thrift.NewTHeaderTransportFactoryConf(nil, conf)
		pf = thrift.NewTHeaderProtocolFactoryConf(conf)
	default:
		t.Fatalf("unknown transport %q", cfg.Transport)
	}
	if pf == nil {
		if cfg.Protocol == "compact" {
			pf = thrift.NewTCompactProtocolFactoryConf(conf)
		} else {
			// Strict read is off by default: the old non-strict encoding is accepted too.
			pf = thrift.NewTBinaryProtocolFactoryConf(conf)
		}
	}
	h := &echoHandler{}
	var proc thrift.TProcessor = echo.NewEchoProcessor(h)
	if cfg.Multiplex {
		mp := thrift.NewTMultiplexedProcessor()
		mp.RegisterProcessor("Echo", echo.NewEchoProcessor(h))
		mp.RegisterProcessor("Calc", echo.NewCalcProcessor(calcHandler{}))
		proc = mp
	}
	sock, err := thrift.NewTServerSocket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := sock.Listen(); err != nil {
		t.Fatal(err)
	}
	srv := thrift.NewTSimpleServer4(proc, sock, tf, pf)
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() {
		// Stop waits for open connections; the relay has closed them by now.
		stopped := make(chan error, 1)
		go func() { stopped <- srv.Stop() }()
		select {
		case err := <-stopped:
			if err != nil {
				t.Errorf("stop Go server: %v", err)
			}
		case <-time.After(callTimeout):
			t.Errorf("Go server did not stop within %v", callTimeout)
		}
		if err := <-served; err != nil {
			t.Errorf("Go server: %v", err)
		}
	})
	return sock.Addr().String()
}

func (goPeer) run(t *testing.T, cfg peerConfig, addr string, calls []call) clientRun {
	t.Helper()
	conf := &thrift.TConfiguration{ConnectTimeout: callTimeout, SocketTimeout: callTimeout}
	if cfg.Protocol == "binary-nonstrict" {
		conf.TBinaryStrictWrite = thrift.BoolPtr(false)
	}
	sock := thrift.NewTSocketConf(addr, conf)
	var trans thrift.TTransport
	var proto thrift.TProtocol
	var hp *thrift.THeaderProtocol
	switch cfg.Transport {
	case "framed":
		trans = thrift.NewTFramedTransportConf(sock, conf)
	case "buffered":
		trans = thrift.NewTBufferedTransport(sock, 4096)
	case "header":
		if cfg.Protocol == "compact" {
			conf.THeaderProtocolID = thrift.THeaderProtocolIDPtrMust(thrift.THeaderProtocolCompact)
		}
		if cfg.Zlib {
			conf.THeaderTransforms = []thrift.THeaderTransformID{thrift.TransformZlib}
		}
		hp = thrift.NewTHeaderProtocolConf(sock, conf)
		trans, proto = hp.Transport(), hp
	default:
		t.Fatalf("unknown transport %q", cfg.Transport)
	}
	if proto == nil {
		if cfg.Protocol == "compact" {
			proto = thrift.NewTCompactProtocolConf(trans, conf)
		} else {
			proto = thrift.NewTBinaryProtocolConf(trans, conf)
		}
	}
	if err := trans.Open(); err != nil {
		return clientRun{Fatal: err.Error()}
	}
	defer trans.Close()

	// Replies are read from proto itself: TStandardClient returns their THeader headers
	// only when its input protocol is the THeaderProtocol.
	echoOut, calcOut := proto, proto
	if cfg.Multiplex {
		echoOut = thrift.NewTMultiplexedProtocol(proto, "Echo")
		calcOut = thrift.NewTMultiplexedProtocol(proto, "Calc")
	}
	ec := echo.NewEchoClient(thrift.NewTStandardClient(proto, echoOut))
	cc := echo.NewCalcClient(thrift.NewTStandardClient(proto, calcOut))

	var run clientRun
	for _, c := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		if hp != nil {
			if cfg.Multiplex {
				// TStandardClient sets the context's headers only when it writes to the
				// THeaderProtocol directly, not through TMultiplexedProtocol.
				hp.ClearWriteHeaders()
				for k, v := range c.Headers {
					hp.SetWriteHeader(k, v)
				}
			} else {
				keys := make([]string, 0, len(c.Headers))
				for k, v := range c.Headers {
					ctx = thrift.SetHeader(ctx, k, v)
					keys = append(keys, k)
				}
				ctx = thrift.SetWriteHeaderList(ctx, keys)
			}
		}
		var (
			value any
			err   error
			meta  func() thrift.ResponseMeta = ec.LastResponseMeta_
		)
		switch c.Method {
		case "echo":
			value, err = ec.Echo(ctx, c.Args[0].(string))
		case "fire":
			err = ec.Fire(ctx, c.Args[0].(string))
		case "lastFired":
			value, err = ec.LastFired(ctx)
		case "fail":
			value, err = ec.Fail(ctx, c.Args[0].(string))
		case "header":
			value, err = ec.Header(ctx, c.Args[0].(string))
		case "add":
			value, err = cc.Add(ctx, c.Args[0].(int32), c.Args[1].(int32))
			meta = cc.LastResponseMeta_
		default:
			t.Fatalf("unknown method %q", c.Method)
		}
		cancel()
		var res callResult
		if err != nil {
			res.Error = classify(err)
		} else if c.twoWay() {
			s := fmt.Sprint(value)
			res.Value = &s
		}
		if hp != nil && c.twoWay() {
			res.Headers = map[string]string{}
			for k, v := range meta().Headers {
				res.Headers[k] = v
			}
		}
		run.Results = append(run.Results, res)
		if res.Error != nil && res.Error.Kind == "other" {
			break // the connection is out of step or gone
		}
	}
	return run
}

func classify(err error) *callError {
	var declared *echo.EchoError
	var app thrift.TApplicationException
	switch {
	case errors.As(err, &declared):
		return &callError{Kind: "declared", Message: declared.Message}
	case errors.As(err, &app):
		return &callError{Kind: "application", Type: int(app.TypeId()), Message: app.Error()}
	}
	return &callError{Kind: "other", Message: err.Error()}
}

// --- Python (Debian's python3-thrift 0.17) ----------------------------------------------

// pyPeer runs peer.py with bindings generated into gen.
type pyPeer struct{ gen string }

func (pyPeer) name() string { return "py" }

func (pyPeer) onewayAsCall() bool { return false }

// newPyPeer generates the Python bindings of echo.thrift into a temporary directory.
func newPyPeer(t *testing.T) pyPeer {
	t.Helper()
	gen := t.TempDir()
	out, err := exec.Command("thrift", "--gen", "py", "-out", gen, "echo.thrift").CombinedOutput()
	if err != nil {
		t.Fatalf("thrift --gen py: %v\n%s", err, out)
	}
	return pyPeer{gen: gen}
}

func (p pyPeer) args(role string, cfg peerConfig) []string {
	args := []string{"peer.py", role, "--gen", p.gen, "--transport", cfg.Transport, "--protocol", cfg.Protocol}
	if cfg.Zlib {
		args = append(args, "--zlib")
	}
	if cfg.Multiplex {
		args = append(args, "--multiplex")
	}
	return args
}

func (p pyPeer) start(t *testing.T, cfg peerConfig) string {
	t.Helper()
	cmd := exec.Command(pythonBin, p.args("server", cfg)...)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("python server stderr:\n%s", stderr.String())
		}
	})
	port := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		port <- strings.TrimSpace(line)
	}()
	select {
	case p := <-port:
		if p == "" {
			t.Fatalf("python server exited before listening:\n%s", stderr.String())
		}
		return "127.0.0.1:" + p
	case <-time.After(10 * time.Second):
		t.Fatalf("python server did not announce its port:\n%s", stderr.String())
	}
	return ""
}

func (p pyPeer) run(t *testing.T, cfg peerConfig, addr string, calls []call) clientRun {
	t.Helper()
	in, err := json.Marshal(calls)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*callTimeout)
	defer cancel()
	args := append(p.args("client", cfg), "--addr", addr, "--timeout-ms", fmt.Sprint(callTimeout.Milliseconds()))
	cmd := exec.CommandContext(ctx, pythonBin, args...)
	cmd.Stdin = bytes.NewReader(in)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("python client: %v\nstderr:\n%s", err, stderr.String())
	}
	var run clientRun
	if err := json.Unmarshal(stdout.Bytes(), &run); err != nil {
		t.Fatalf("python client output %q: %v\nstderr:\n%s", stdout.String(), err, stderr.String())
	}
	return run
}

// syncBuffer is a bytes.Buffer that a child process and the test may use concurrently.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}

// TestPeersDirect checks the harness itself, without the relay: each client against each
// server, so that a failure through the relay is the codec's and not the harness's.
func TestPeersDirect(t *testing.T) {
	py := newPyPeer(t)
	for _, cfg := range []peerConfig{
		{Transport: "framed", Protocol: "binary", Multiplex: true},
		{Transport: "header", Protocol: "compact", Zlib: true},
	} {
		for _, pair := range pairs(py) {
			t.Run(cfg.String()+"/"+pair.name(), func(t *testing.T) {
				addr := pair.srv.start(t, cfg)
				calls := []call{
					{Method: "echo", Args: []any{"hi"}, Headers: map[string]string{"k": "v"}, Seqid: 3},
					{Method: "header", Args: []any{"k"}, Headers: map[string]string{"k": "v"}, Seqid: 4},
				}
				want := "v"
				if cfg.Transport != "header" {
					want = ""
				}
				if cfg.Multiplex {
					calls = append(calls, call{Service: "Calc", Method: "add", Args: []any{int32(1), int32(2)}, Seqid: 5})
				}
				run := pair.cli.run(t, cfg, addr, calls)
				got := make([]string, len(run.Results))
				for i, r := range run.Results {
					got[i] = r.String()
				}
				wantRes := []string{`value "hi"`, fmt.Sprintf("value %q", want)}
				if cfg.Multiplex {
					wantRes = append(wantRes, `value "3"`)
				}
				if strings.Join(got, "; ") != strings.Join(wantRes, "; ") || run.Fatal != "" {
					t.Errorf("results %v (fatal %q), want %v", got, run.Fatal, wantRes)
				}
			})
		}
	}
}

// pair is a client and a server of a matrix case.
type pair struct {
	cli client
	srv server
}

func (p pair) name() string { return p.cli.name() + "-to-" + p.srv.name() }

// pairs lists the four client/server combinations of the two implementations.
func pairs(py pyPeer) []pair {
	return []pair{{goPeer{}, goPeer{}}, {py, py}, {goPeer{}, py}, {py, goPeer{}}}
}
