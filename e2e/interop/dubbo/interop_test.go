package dubbointerop

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"dubbo.apache.org/dubbo-go/v3/remoting"

	"github.com/meltemi-mesh/meltemi/codecs"
	dubbocodec "github.com/meltemi-mesh/meltemi/codecs/dubbo"
	"github.com/meltemi-mesh/meltemi/e2e/internal/codecproxy"
)

// idOffset shifts request ids on the way to the provider. It is beyond 32 bits so that a
// codec or peer that truncates ids would pair responses wrongly.
const idOffset = 1<<40 + 7

func newCodec(t *testing.T) codecs.Codec {
	t.Helper()
	c, err := dubbocodec.Factory{}.New(codecs.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ofKind(recs []codecproxy.Record, k codecs.Kind) []codecproxy.Record {
	var out []codecproxy.Record
	for _, r := range recs {
		if r.Kind == k {
			out = append(out, r)
		}
	}
	return out
}

// checkAttrs reports every attribute of rec that differs from want.
func checkAttrs(t *testing.T, what string, rec codecproxy.Record, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got, ok := rec.Attrs[k]; !ok || got != v {
			t.Errorf("%s: attribute %q = %q (present %v), want %q", what, k, got, ok, v)
		}
	}
}

// pairedResponse checks that the relay saw a response of kind for the request with id,
// carrying the shifted id.
func pairedResponse(t *testing.T, p *codecproxy.Proxy, id uint64, kind codecs.Kind) {
	t.Helper()
	for _, r := range p.Responses() {
		if r.ID == id+idOffset {
			if r.Kind != kind {
				t.Errorf("response to request %d decoded as %v, want %v", id, r.Kind, kind)
			}
			return
		}
	}
	t.Errorf("no response with id %d+%d (the request's id shifted) among %v", id, uint64(idOffset), p.Responses())
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConsumerThroughRelay: dubbo-go's consumer calls dubbo-go's provider through the relay,
// with ids shifted upstream and restored downstream, and the relay decodes what both send.
func TestConsumerThroughRelay(t *testing.T) {
	proxy := codecproxy.Start(t, newCodec(t), providerAddr, idOffset, codecproxy.Hooks{})
	conn := newConsumer(t, proxy.Addr)

	var echoed string
	if err := call(conn, nil, "Echo", []any{"hello"}, &echoed); err != nil {
		t.Fatal(err)
	}
	if echoed != "hello" {
		t.Errorf("Echo = %q", echoed)
	}
	var sum int32
	if err := call(conn, nil, "Add", []any{int32(2), int32(40)}, &sum); err != nil {
		t.Fatal(err)
	}
	if sum != 42 {
		t.Errorf("Add = %d", sum)
	}
	greeted := &User{}
	if err := call(conn, nil, "Greet", []any{&User{Name: "ada", Age: 36}}, greeted); err != nil {
		t.Fatal(err)
	}
	if *greeted != (User{Name: "hello ada", Age: 37}) {
		t.Errorf("Greet = %+v", *greeted)
	}

	reqs := ofKind(proxy.Requests(), codecs.KindRequest)
	if len(reqs) != 3 {
		t.Fatalf("relay decoded %d requests, want 3: %+v", len(reqs), proxy.Requests())
	}
	types := map[string]string{"Echo": "Ljava/lang/String;", "Add": "II", "Greet": "Lorg/apache/dubbo/sample/User;"}
	for i, method := range []string{"Echo", "Add", "Greet"} {
		r := reqs[i]
		checkAttrs(t, method, r, map[string]string{
			"service":       echoInterface,
			"interface":     echoInterface,
			"method":        method,
			"version":       echoVersion,
			"group":         echoGroup,
			"dubbo_version": "2.0.2",
			"param_types":   types[method],
			// Attachments dubbo-go's consumer sends on every call.
			"path":    echoInterface,
			"timeout": fmt.Sprint(callTimeout.Milliseconds()),
		})
		if r.Mode != "dubbo" {
			t.Errorf("%s: mode %q", method, r.Mode)
		}
		pairedResponse(t, proxy, r.ID, codecs.KindResponse)
	}
	if n := len(ofKind(proxy.Responses(), codecs.KindResponse)); n != 3 {
		t.Errorf("relay decoded %d responses, want 3", n)
	}
}

// TestUnknownMethod: the provider's error response to a method it does not have is decoded
// as an error response, and the consumer reports an error; the connection stays usable.
func TestUnknownMethod(t *testing.T) {
	proxy := codecproxy.Start(t, newCodec(t), providerAddr, idOffset, codecproxy.Hooks{})
	conn := newConsumer(t, proxy.Addr)

	var s string
	err := call(conn, nil, "NoSuchMethod", []any{"x"}, &s)
	if err == nil {
		t.Fatalf("call of a missing method succeeded with %q", s)
	}
	if !strings.Contains(err.Error(), "NoSuchMethod") {
		t.Errorf("error %q does not name the method", err)
	}
	reqs := ofKind(proxy.Requests(), codecs.KindRequest)
	if len(reqs) != 1 {
		t.Fatalf("relay decoded %d requests, want 1", len(reqs))
	}
	checkAttrs(t, "request", reqs[0], map[string]string{"method": "NoSuchMethod", "service": echoInterface})
	pairedResponse(t, proxy, reqs[0].ID, codecs.KindErrorResponse)

	if err := call(conn, nil, "Echo", []any{"after"}, &s); err != nil || s != "after" {
		t.Errorf("Echo after the error = %q, %v", s, err)
	}
}

// reasonHeader names the attachment by which a test asks the relay for a local error reply.
const reasonHeader = "x-meltemi-reason"

// wantStatus is the Dubbo status the codec documents for each reason.
var wantStatus = map[codecs.Reason]byte{
	codecs.ReasonNoRoute:           60,
	codecs.ReasonNoHealthyUpstream: 60,
	codecs.ReasonTimeout:           31,
	codecs.ReasonOverLimit:         100,
	codecs.ReasonUnauthorized:      40,
	codecs.ReasonBadRequest:        40,
	codecs.ReasonUnavailable:       80,
	codecs.ReasonInternal:          80,
}

// TestLocalErrorReplies: the relay answers requests itself with the codec's error reply for
// every reason; dubbo-go's consumer raises each as an error carrying our message, the raw
// client reads the documented status, and requests without the header still reach the
// provider on the same connections afterwards.
func TestLocalErrorReplies(t *testing.T) {
	reasons := map[string]codecs.Reason{}
	for _, r := range codecs.Reasons() {
		reasons[r.String()] = r
	}
	var mu sync.Mutex
	answered := map[uint64]string{} // request id -> reason
	proxy := codecproxy.Start(t, newCodec(t), providerAddr, idOffset, codecproxy.Hooks{
		Request: func(c codecs.Conn, f codecs.Frame) ([]byte, error) {
			name, ok := f.Attribute(reasonHeader)
			if f.Kind() != codecs.KindRequest || !ok {
				return nil, nil
			}
			reason, known := reasons[name]
			if !known {
				return nil, fmt.Errorf("unknown reason %q", name)
			}
			mu.Lock()
			answered[f.RequestID()] = name
			mu.Unlock()
			return c.AppendErrorReply(nil, f, reason, "denied by test ("+name+")")
		},
	})
	conn := newConsumer(t, proxy.Addr)
	raw := dialRaw(t, proxy.Addr)

	for i, r := range codecs.Reasons() {
		msg := "denied by test (" + r.String() + ")"
		var s string
		err := call(conn, &probe{send: map[string]string{reasonHeader: r.String()}}, "Echo", []any{"x"}, &s)
		if err == nil {
			t.Errorf("%v: dubbo-go call succeeded with %q", r, s)
		} else if !strings.Contains(err.Error(), msg) {
			t.Errorf("%v: dubbo-go error %q does not carry %q", r, err, msg)
		} else {
			t.Logf("%v: dubbo-go reports %q", r, err)
		}

		req := echoRequest("x")
		req.Attachments[reasonHeader] = r.String()
		id := uint64(100 + i)
		f, err := raw.roundTrip(id, req)
		if err != nil {
			t.Errorf("%v: raw client: %v", r, err)
			continue
		}
		_, _, err = f.result()
		e, ok := isRemote(err)
		switch {
		case !ok:
			t.Errorf("%v: raw client read %v, want an error response", r, err)
		case e.status != wantStatus[r]:
			t.Errorf("%v: status %d, want %d", r, e.status, wantStatus[r])
		case !strings.Contains(e.msg, msg):
			t.Errorf("%v: error body %q does not carry %q", r, e.msg, msg)
		}
		mu.Lock()
		got := answered[id]
		mu.Unlock()
		if got != r.String() {
			t.Errorf("%v: relay answered raw request %d as %q", r, id, got)
		}
	}
	if n := len(ofKind(proxy.Responses(), codecs.KindResponse)) + len(ofKind(proxy.Responses(), codecs.KindErrorResponse)); n != 0 {
		t.Errorf("%d answered requests reached the provider", n)
	}

	// The replies left both streams in step: plain requests go through.
	var s string
	if err := call(conn, nil, "Echo", []any{"through"}, &s); err != nil || s != "through" {
		t.Errorf("dubbo-go Echo after the error replies = %q, %v", s, err)
	}
	f, err := raw.roundTrip(200, echoRequest("raw through"))
	if err == nil {
		var v any
		v, _, err = f.result()
		if err == nil && v != "raw through" {
			err = fmt.Errorf("answered %v", v)
		}
	}
	if err != nil {
		t.Errorf("raw Echo after the error replies: %v", err)
	}
}

// TestHeartbeatsAnsweredByRelay: the relay answers dubbo-go's heartbeats itself; the
// consumer matches every reply to its heartbeat, keeps its one connection, and later calls
// succeed.
func TestHeartbeatsAnsweredByRelay(t *testing.T) {
	var mu sync.Mutex
	var answered []uint64
	proxy := codecproxy.Start(t, newCodec(t), providerAddr, idOffset, codecproxy.Hooks{
		Request: func(c codecs.Conn, f codecs.Frame) ([]byte, error) {
			if f.Kind() != codecs.KindHeartbeatRequest {
				return nil, nil
			}
			mu.Lock()
			answered = append(answered, f.RequestID())
			mu.Unlock()
			return c.AppendHeartbeatReply(nil, f)
		},
	})
	conn := newConsumer(t, proxy.Addr)
	var s string
	if err := call(conn, nil, "Echo", []any{"before"}, &s); err != nil || s != "before" {
		t.Fatalf("Echo = %q, %v", s, err)
	}
	const want = 3
	ids := func() []uint64 {
		mu.Lock()
		defer mu.Unlock()
		return append([]uint64(nil), answered...)
	}
	if !waitFor(want*heartbeatPeriod+3*time.Second, func() bool { return len(ids()) >= want }) {
		t.Fatalf("relay answered %d heartbeats, want %d", len(ids()), want)
	}
	// dubbo-go keeps a pending entry per heartbeat until a reply with its id is decoded.
	for _, id := range ids()[:want] {
		if !waitFor(2*time.Second, func() bool { return remoting.GetPendingResponse(remoting.SequenceType(id)) == nil }) {
			t.Errorf("dubbo-go did not match the relay's reply to heartbeat %d", id)
		}
	}
	if err := call(conn, nil, "Echo", []any{"after"}, &s); err != nil || s != "after" {
		t.Errorf("Echo after heartbeats = %q, %v", s, err)
	}
	if n := proxy.Conns(); n != 1 {
		t.Errorf("consumer opened %d connections, want 1", n)
	}
	if hb := ofKind(proxy.Responses(), codecs.KindHeartbeatResponse); len(hb) != 0 {
		t.Errorf("heartbeats reached the provider: %+v", hb)
	}
}

// TestHeartbeatToProvider: a hand-built heartbeat reaches the provider through the relay and
// its reply decodes as a heartbeat response with the same id, also when pipelined with a
// request in one write.
func TestHeartbeatToProvider(t *testing.T) {
	proxy := codecproxy.Start(t, newCodec(t), providerAddr, idOffset, codecproxy.Hooks{})
	raw := dialRaw(t, proxy.Addr)

	if err := raw.send(heartbeatFrame(77)); err != nil {
		t.Fatal(err)
	}
	f, err := raw.read()
	if err != nil {
		t.Fatal(err)
	}
	checkHeartbeatReply(t, f, 77)

	// Heartbeat, request, heartbeat in one write; the provider may answer in any order.
	if err := raw.send(heartbeatFrame(5), mustFrame(requestFrame(6, echoRequest("between"))), heartbeatFrame(7)); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	for range 3 {
		f, err := raw.read()
		if err != nil {
			t.Fatal(err)
		}
		seen[f.id] = true
		if f.id == 6 {
			if v, _, err := f.result(); err != nil || v != "between" {
				t.Errorf("Echo between heartbeats = %v, %v", v, err)
			}
			continue
		}
		checkHeartbeatReply(t, f, f.id)
	}
	if !seen[5] || !seen[6] || !seen[7] {
		t.Errorf("replies to ids %v, want 5, 6 and 7", seen)
	}

	hbReqs := ofKind(proxy.Requests(), codecs.KindHeartbeatRequest)
	hbResps := ofKind(proxy.Responses(), codecs.KindHeartbeatResponse)
	if len(hbReqs) != 3 || len(hbResps) != 3 {
		t.Errorf("relay decoded %d heartbeat requests and %d heartbeat responses, want 3 and 3", len(hbReqs), len(hbResps))
	}
	pairedResponse(t, proxy, 6, codecs.KindResponse)
}

// checkHeartbeatReply decodes a frame the raw client read with a fresh codec stream.
func checkHeartbeatReply(t *testing.T, f rawFrame, id uint64) {
	t.Helper()
	fr, n, err := newCodec(t).NewConn().Decode(f.raw)
	if err != nil || fr == nil || n != len(f.raw) {
		t.Fatalf("decode heartbeat reply % x: frame %v, %d bytes, %v", f.raw, fr, n, err)
	}
	if fr.Kind() != codecs.KindHeartbeatResponse || fr.RequestID() != id {
		t.Errorf("heartbeat reply decoded as %v id %d, want %v id %d", fr.Kind(), fr.RequestID(), codecs.KindHeartbeatResponse, id)
	}
}

// TestMutatedAttachments: the relay sets, replaces and deletes request attachments and sets a
// response attachment; the provider sees the request's, dubbo-go's consumer and the raw
// client see the response's.
func TestMutatedAttachments(t *testing.T) {
	proxy := codecproxy.Start(t, newCodec(t), providerAddr, idOffset, codecproxy.Hooks{
		Request: func(_ codecs.Conn, f codecs.Frame) ([]byte, error) {
			if f.Kind() != codecs.KindRequest {
				return nil, nil
			}
			for _, err := range []error{
				f.SetHeader("x-meltemi", "v1"),
				f.SetHeader("x-over", "new"),
				f.DelHeader("x-drop"),
			} {
				if err != nil {
					return nil, err
				}
			}
			return nil, nil
		},
		Response: func(f codecs.Frame) error {
			// Error responses too: the provider reports exceptions with status 20 and a
			// body that can carry attachments.
			if !f.Kind().IsResponse() {
				return nil
			}
			return f.SetHeader("x-meltemi-resp", "r1")
		},
	})
	conn := newConsumer(t, proxy.Addr)

	provided := map[string]string{
		"x-meltemi": "v1",   // added by the relay
		"x-over":    "new",  // replaced by the relay
		"x-drop":    absent, // deleted by the relay
		"x-keep":    "kept", // untouched
		"timeout":   fmt.Sprint(callTimeout.Milliseconds()),
	}
	for key, want := range provided {
		pr := &probe{send: map[string]string{"x-over": "old", "x-drop": "1", "x-keep": "kept"}}
		var got string
		if err := call(conn, pr, "Attachment", []any{key}, &got); err != nil {
			t.Errorf("Attachment(%q): %v", key, err)
			continue
		}
		if got != want {
			t.Errorf("provider saw attachment %q = %q, want %q", key, got, want)
		}
		// The provider returns the request's attachments with its response (dubbo-go's
		// provider does): the relay's addition and the consumer's own come back beside
		// the response attachment the relay set.
		back := pr.received()
		for k, v := range map[string]string{"x-meltemi-resp": "r1", "x-meltemi": "v1", "x-keep": "kept"} {
			if back[k] != v {
				t.Errorf("consumer received response attachment %q = %v, want %q (all: %v)", k, back[k], v, back)
			}
		}
		if _, ok := back["x-drop"]; ok {
			t.Errorf("deleted attachment came back: %v", back)
		}
	}

	// A POJO argument (class definition and object) in front of the mutated attachments.
	greeted := &User{}
	if err := call(conn, nil, "Greet", []any{&User{Name: "bob", Age: 1}}, greeted); err != nil || greeted.Name != "hello bob" {
		t.Errorf("Greet through mutations = %+v, %v", greeted, err)
	}

	// The raw client reads the relayed response bytes with dubbo-go-hessian2.
	raw := dialRaw(t, proxy.Addr)
	f, err := raw.roundTrip(9, echoRequest("raw"))
	if err != nil {
		t.Fatal(err)
	}
	v, atts, err := f.result()
	if err != nil || v != "raw" {
		t.Fatalf("raw Echo = %v, %v", v, err)
	}
	if atts["x-meltemi-resp"] != "r1" {
		t.Errorf("relayed response attachments %v lack x-meltemi-resp=r1", atts)
	}

	// The provider's exception response to an unknown method, mutated.
	missing := echoRequest("x")
	missing.Method = "NoSuchMethod"
	f, err = raw.roundTrip(10, missing)
	if err != nil {
		t.Fatal(err)
	}
	_, atts, err = f.result()
	if _, ok := isRemote(err); !ok {
		t.Errorf("unknown method answered %v, want an exception", err)
	}
	if atts["x-meltemi-resp"] != "r1" {
		t.Errorf("relayed exception response attachments %v lack x-meltemi-resp=r1", atts)
	}
	var s string
	if err := call(conn, nil, "NoSuchMethod", []any{"x"}, &s); err == nil || !strings.Contains(err.Error(), "NoSuchMethod") {
		t.Errorf("dubbo-go call of a missing method through mutations: %q, %v", s, err)
	}
}

// TestRawClient: requests encoded with dubbo-go-hessian2 by the raw client, including a null
// service version, a POJO, a non-string attachment, a one-way request, a large argument and
// several requests in one write, are decoded by the relay and answered by the provider.
func TestRawClient(t *testing.T) {
	proxy := codecproxy.Start(t, newCodec(t), providerAddr, idOffset, codecproxy.Hooks{})
	raw := dialRaw(t, proxy.Addr)

	// A null version: the unversioned export answers.
	nullVersion := echoRequest("null version")
	nullVersion.Version = nil
	nullVersion.Attachments["x-num"] = int32(7) // not a string: not a header
	f, err := raw.roundTrip(1, nullVersion)
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := f.result(); err != nil || v != "null version" {
		t.Errorf("Echo with a null version = %v, %v", v, err)
	}

	// The versioned export, addressed by attachments as Java and dubbo-go clients do, with
	// a POJO argument.
	greet := rawRequest{
		Service: echoInterface, Version: echoVersion, Method: "Greet",
		Types: "Lorg/apache/dubbo/sample/User;", Args: []any{&User{Name: "raw", Age: 9}},
		Attachments: map[any]any{"path": echoInterface, "interface": echoInterface, "version": echoVersion, "group": echoGroup},
	}
	f, err = raw.roundTrip(2, greet)
	if err != nil {
		t.Fatal(err)
	}
	if v, _, err := f.result(); err != nil {
		t.Errorf("Greet: %v", err)
	} else if u, ok := v.(*User); !ok || *u != (User{Name: "hello raw", Age: 10}) {
		t.Errorf("Greet = %#v", v)
	}

	// A one-way request, then a two-way one: only the second is answered.
	if err := raw.send(mustFrame(onewayFrame(3, echoRequest("oneway")))); err != nil {
		t.Fatal(err)
	}
	if f, err := raw.roundTrip(4, echoRequest("after oneway")); err != nil {
		t.Fatal(err)
	} else if v, _, err := f.result(); err != nil || v != "after oneway" {
		t.Errorf("Echo after a one-way request = %v, %v", v, err)
	}

	// Several requests in one write, one of them larger than any single read.
	big := strings.Repeat("0123456789abcdef", 200<<10/16)
	var frames [][]byte
	want := map[uint64]string{}
	for i := range 5 {
		id := uint64(10 + i)
		msg := fmt.Sprintf("pipelined %d", i)
		if i == 2 {
			msg = big
		}
		want[id] = msg
		frames = append(frames, mustFrame(requestFrame(id, echoRequest(msg))))
	}
	if err := raw.send(frames...); err != nil {
		t.Fatal(err)
	}
	for range frames {
		f, err := raw.read()
		if err != nil {
			t.Fatal(err)
		}
		if v, _, err := f.result(); err != nil || v != want[f.id] {
			t.Errorf("pipelined response %d: %.40v, %v", f.id, v, err)
		}
		delete(want, f.id)
	}
	if len(want) != 0 {
		t.Errorf("no responses to ids %v", want)
	}

	oneway := ofKind(proxy.Requests(), codecs.KindOneway)
	if len(oneway) != 1 || oneway[0].ID != 3 {
		t.Errorf("relay decoded one-way requests %+v, want one with id 3", oneway)
	} else {
		checkAttrs(t, "one-way request", oneway[0], map[string]string{"service": echoInterface, "method": "Echo"})
	}
	for _, r := range proxy.Responses() {
		if r.ID == 3+idOffset {
			t.Errorf("the provider answered the one-way request: %+v", r)
		}
	}
	reqs := ofKind(proxy.Requests(), codecs.KindRequest)
	if len(reqs) != 8 {
		t.Fatalf("relay decoded %d requests, want 8", len(reqs))
	}
	checkAttrs(t, "null-version request", reqs[0], map[string]string{
		"service": echoInterface, "method": "Echo", "version": "", "param_types": "Ljava/lang/String;",
		"dubbo_version": "2.0.2", "interface": echoInterface, "path": echoInterface,
	})
	if v, ok := reqs[0].Attrs["x-num"]; ok {
		t.Errorf("non-string attachment x-num is a header: %q", v)
	}
	if _, ok := reqs[0].Attrs["group"]; ok {
		t.Errorf("request without a group attachment has group %q", reqs[0].Attrs["group"])
	}
	checkAttrs(t, "Greet request", reqs[1], map[string]string{
		"service": echoInterface, "method": "Greet", "version": echoVersion, "group": echoGroup,
		"param_types": "Lorg/apache/dubbo/sample/User;",
	})
	for _, r := range reqs {
		pairedResponse(t, proxy, r.ID, codecs.KindResponse)
	}
}
