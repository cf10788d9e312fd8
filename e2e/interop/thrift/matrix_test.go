package thriftinterop

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
	thriftcodec "github.com/meltemi-mesh/meltemi/codecs/thrift"
	"github.com/meltemi-mesh/meltemi/e2e/internal/codecproxy"
)

// idOffset is added to every request seqid on the way to the server and taken off every
// reply on the way back. It moves seqids past 2^31, where the int32 on the wire turns
// negative, as a proxy multiplexing many clients onto one upstream connection would.
const idOffset = 1<<31 - 2

// newCodec returns the Thrift codec with default options.
func newCodec(t *testing.T) codecs.Codec {
	t.Helper()
	c, err := thriftcodec.Factory{}.New(codecs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// wireMode is the Mode the codec must report for cfg.
func wireMode(cfg peerConfig) string {
	transport := cfg.Transport
	if transport == "buffered" {
		transport = "unframed"
	}
	protocol := cfg.Protocol
	if protocol == "binary-nonstrict" {
		protocol = "binary"
	}
	return transport + "/" + protocol
}

// step is one call of a scenario and what the client and the relay must see of it.
type step struct {
	call call
	want callResult
	// reqKind and respKind are the kinds the relay must decode; respKind is 0 for a oneway
	// call, which has no reply.
	reqKind, respKind codecs.Kind
}

func value(s string) callResult { return callResult{Value: &s} }

// matrixSteps is the conversation of a matrix case: a call, a oneway call whose arrival
// the next call proves, a declared exception, a THeader header read back by the server, and
// a call to the second service when the server is multiplexed.
func matrixSteps(cfg peerConfig) []step {
	hdr := map[string]string{"x-client": "c1", "x-trace": "t-1"}
	big := strings.Repeat("0123456789abcdef", 20<<10)
	seen := ""
	if cfg.Transport == "header" {
		seen = "c1"
	}
	// Python clients send these seqids (its generated code would send 0 every time); the
	// largest ones cross 2^31 once idOffset is added.
	steps := []step{
		{call{Method: "echo", Args: []any{"hello"}, Headers: hdr, Seqid: 0}, value("hello"), codecs.KindRequest, codecs.KindResponse},
		{call{Method: "fire", Args: []any{"bang"}, Headers: hdr, Seqid: 1}, callResult{}, codecs.KindOneway, 0},
		{call{Method: "lastFired", Seqid: 2}, value("bang"), codecs.KindRequest, codecs.KindResponse},
		{call{Method: "fail", Args: []any{"boom"}, Seqid: 3}, callResult{Error: &callError{Kind: "declared", Message: "boom"}}, codecs.KindRequest, codecs.KindErrorResponse},
		{call{Method: "header", Args: []any{"x-client"}, Headers: hdr, Seqid: 1 << 30}, value(seen), codecs.KindRequest, codecs.KindResponse},
		// Larger than a socket read of the relay: frames arrive in many pieces.
		{call{Method: "echo", Args: []any{big}, Seqid: 6}, value(big), codecs.KindRequest, codecs.KindResponse},
	}
	if cfg.Multiplex {
		steps = append(steps, step{call{Service: "Calc", Method: "add", Args: []any{int32(40), int32(2)}, Seqid: 7}, value("42"), codecs.KindRequest, codecs.KindResponse})
	}
	return steps
}

// matrixConfigs are the wire variants of the matrix; pairsFor says which peers speak each.
func matrixConfigs() []peerConfig {
	var cfgs []peerConfig
	for _, transport := range []string{"framed", "buffered", "header"} {
		for _, protocol := range []string{"binary", "compact"} {
			for _, mux := range []bool{false, true} {
				cfgs = append(cfgs, peerConfig{Transport: transport, Protocol: protocol, Multiplex: mux})
			}
			if transport == "header" {
				cfgs = append(cfgs, peerConfig{Transport: transport, Protocol: protocol, Zlib: true})
			}
		}
		if transport != "header" {
			cfgs = append(cfgs, peerConfig{Transport: transport, Protocol: "binary-nonstrict"})
		}
	}
	return cfgs
}

// pairsFor returns the client/server pairs that can run cfg. python3-thrift 0.17 servers
// cannot serve the old non-strict binary encoding (they read the method name as bytes and
// find no such method), so only Go servers take non-strict clients.
func pairsFor(py pyPeer, cfg peerConfig) []pair {
	if cfg.Protocol == "binary-nonstrict" {
		return []pair{{goPeer{}, goPeer{}}, {py, goPeer{}}}
	}
	return pairs(py)
}

func TestMatrix(t *testing.T) {
	runMatrix(t, 0)
}

// TestMatrixIDRewrite runs the matrix with seqids rewritten upstream and restored downstream.
func TestMatrixIDRewrite(t *testing.T) {
	runMatrix(t, idOffset)
}

func runMatrix(t *testing.T, offset uint64) {
	py := newPyPeer(t)
	codec := newCodec(t)
	for _, cfg := range matrixConfigs() {
		for _, pr := range pairsFor(py, cfg) {
			t.Run(cfg.String()+"/"+pr.name(), func(t *testing.T) {
				t.Parallel()
				steps := matrixSteps(cfg)
				addr := pr.srv.start(t, cfg)
				var w wire
				proxy := codecproxy.Start(t, codec, addr, offset, w.hooks())
				run := pr.cli.run(t, cfg, proxy.Addr, callsOf(steps))
				checkResults(t, run, steps)
				checkRelay(t, proxy, cfg, offset, pr.cli.onewayAsCall(), steps)
				w.check(t, cfg)
			})
		}
	}
}

func callsOf(steps []step) []call {
	calls := make([]call, len(steps))
	for i, s := range steps {
		calls[i] = s.call
	}
	return calls
}

// checkResults compares what the client got with the steps, and, for Python clients, that
// every reply carried the seqid of its call.
func checkResults(t *testing.T, run clientRun, steps []step) {
	t.Helper()
	if run.Fatal != "" {
		t.Fatalf("client failed: %s", run.Fatal)
	}
	if len(run.Results) != len(steps) {
		t.Errorf("client made %d calls of %d", len(run.Results), len(steps))
	}
	for i, r := range run.Results {
		if i >= len(steps) {
			break
		}
		want := steps[i].want
		if r.String() != want.String() {
			t.Errorf("call %d %s: got %v, want %v", i, steps[i].call.Method, r, want)
			if r.Error != nil && r.Error.Trace != "" {
				t.Logf("%s", r.Error.Trace)
			}
		}
	}
	if run.Sent != nil {
		var twoWay []int32
		for i, s := range steps {
			if s.call.twoWay() {
				twoWay = append(twoWay, run.Sent[i])
			}
		}
		if !slices.Equal(run.Received, twoWay) {
			t.Errorf("python client sent seqids %v, received %v: want %v back", run.Sent, run.Received, twoWay)
		}
	}
}

// checkRelay checks what the relay decoded: one request record per call and one response
// record per two-way call, with the right kinds, attributes, ids and mode.
func checkRelay(t *testing.T, proxy *codecproxy.Proxy, cfg peerConfig, offset uint64, onewayAsCall bool, steps []step) {
	t.Helper()
	reqs, resps := proxy.Requests(), proxy.Responses()
	mode := wireMode(cfg)
	if len(reqs) != len(steps) {
		t.Fatalf("relay decoded %d requests, want %d: %+v", len(reqs), len(steps), reqs)
	}
	var wantResps []step
	var reqIDs []uint64
	for i, s := range steps {
		r := reqs[i]
		service := ""
		if cfg.Multiplex {
			service = s.call.Service
			if service == "" {
				service = "Echo"
			}
		}
		kind, want := s.reqKind, map[string]string{"method": s.call.Method, "message_type": "call"}
		if kind == codecs.KindOneway {
			if onewayAsCall {
				kind = codecs.KindRequest
			} else {
				want["message_type"] = "oneway"
			}
		}
		if service != "" {
			want["service"] = service
		}
		if cfg.Transport == "header" {
			maps.Copy(want, s.call.Headers)
		}
		checkRecord(t, fmt.Sprintf("request %d", i), r, kind, mode, want)
		if s.respKind != 0 {
			wantResps = append(wantResps, s)
			reqIDs = append(reqIDs, r.ID)
		}
	}
	if len(resps) != len(wantResps) {
		t.Fatalf("relay decoded %d responses, want %d: %+v", len(resps), len(wantResps), resps)
	}
	for i, s := range wantResps {
		r := resps[i]
		// Replies name the method without the service prefix, multiplexed or not.
		want := map[string]string{"method": s.call.Method, "message_type": "reply"}
		checkRecord(t, fmt.Sprintf("response %d", i), r, s.respKind, mode, want)
		if got, wantID := r.ID, reqIDs[i]+offset; got != wantID {
			t.Errorf("response %d (%s): upstream seqid %#x, want request seqid %#x + offset %#x = %#x",
				i, s.call.Method, got, reqIDs[i], offset, wantID)
		}
	}
}

// checkRecord compares a relay record with the expected kind, mode and attributes; the
// record must hold no other attribute or header.
func checkRecord(t *testing.T, what string, r codecproxy.Record, kind codecs.Kind, mode string, want map[string]string) {
	t.Helper()
	if r.Kind != kind {
		t.Errorf("%s: kind %v, want %v", what, r.Kind, kind)
	}
	if r.Mode != mode {
		t.Errorf("%s: mode %q, want %q", what, r.Mode, mode)
	}
	if !maps.Equal(r.Attrs, want) {
		t.Errorf("%s: attributes %v, want %v", what, r.Attrs, want)
	}
}

// wire keeps the bytes of every frame the relay forwards, to check that the peers really
// spoke the variant the case is about (a non-strict client that wrote strict messages, or a
// zlib client that sent plain payloads, would make the case prove nothing).
type wire struct {
	mu                  sync.Mutex
	requests, responses [][]byte
}

func (w *wire) hooks() codecproxy.Hooks {
	keep := func(list *[][]byte, f codecs.Frame) error {
		b, err := f.AppendTo(nil)
		if err != nil {
			return err
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		*list = append(*list, b)
		return nil
	}
	return codecproxy.Hooks{
		Request: func(_ codecs.Conn, f codecs.Frame) ([]byte, error) {
			return nil, keep(&w.requests, f)
		},
		Response: func(f codecs.Frame) error { return keep(&w.responses, f) },
	}
}

func (w *wire) check(t *testing.T, cfg peerConfig) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, b := range w.requests {
		if err := checkWire(cfg, b, true); err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	for i, b := range w.responses {
		if err := checkWire(cfg, b, false); err != nil {
			t.Errorf("response %d: %v", i, err)
		}
	}
}

// checkWire parses the start of a frame independently of the codec and checks its transport,
// THeader protocol id and transforms, and message encoding against cfg. Servers always write
// strict binary.
func checkWire(cfg peerConfig, b []byte, request bool) error {
	payload := b
	switch cfg.Transport {
	case "framed":
		if len(b) < 4 || int(binary.BigEndian.Uint32(b)) != len(b)-4 {
			return fmt.Errorf("not one framed message: % x", prefix(b))
		}
		payload = b[4:]
	case "header":
		var err error
		if payload, err = theaderPayload(cfg, b); err != nil {
			return err
		}
	}
	if len(payload) < 8 {
		return fmt.Errorf("message too short: % x", payload)
	}
	switch {
	case cfg.Protocol == "compact":
		if payload[0] != 0x82 {
			return fmt.Errorf("not a compact message: % x", prefix(payload))
		}
	case cfg.Protocol == "binary-nonstrict" && request:
		// The old encoding starts with the method name's length, a small positive i32.
		if n := binary.BigEndian.Uint32(payload); n == 0 || n > 64 {
			return fmt.Errorf("not a non-strict binary message: % x", prefix(payload))
		}
	default:
		if payload[0] != 0x80 || payload[1] != 0x01 {
			return fmt.Errorf("not a strict binary message: % x", prefix(payload))
		}
	}
	return nil
}

// theaderPayload checks a THeader frame's magic, protocol id and transforms, and returns
// its payload, inflated when zlib-compressed.
func theaderPayload(cfg peerConfig, b []byte) ([]byte, error) {
	if len(b) < 14 || b[4] != 0x0f || b[5] != 0xff || int(binary.BigEndian.Uint32(b)) != len(b)-4 {
		return nil, fmt.Errorf("not one THeader frame: % x", prefix(b))
	}
	end := 14 + 4*int(binary.BigEndian.Uint16(b[12:14]))
	if end > len(b) {
		return nil, fmt.Errorf("THeader header block past the frame: % x", prefix(b))
	}
	hdr := b[14:end]
	var fields []uint64 // protocol id, transform count, transform ids
	for len(fields) < 2 || len(fields) < 2+int(fields[1]) {
		v, n := binary.Uvarint(hdr)
		if n <= 0 || len(fields) > 16 {
			return nil, fmt.Errorf("bad THeader header block: % x", b[14:end])
		}
		fields, hdr = append(fields, v), hdr[n:]
	}
	wantProto := uint64(0)
	if cfg.Protocol == "compact" {
		wantProto = 2
	}
	wantTransforms := []uint64{}
	if cfg.Zlib {
		wantTransforms = []uint64{1}
	}
	if fields[0] != wantProto || !slices.Equal(fields[2:], wantTransforms) {
		return nil, fmt.Errorf("THeader protocol id %d, transforms %v: want %d, %v", fields[0], fields[2:], wantProto, wantTransforms)
	}
	payload := b[end:]
	if !cfg.Zlib {
		return payload, nil
	}
	zr, err := zlib.NewReader(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("zlib payload: %w", err)
	}
	inflated, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("zlib payload: %w", err)
	}
	return inflated, nil
}

func prefix(b []byte) []byte { return b[:min(len(b), 16)] }
