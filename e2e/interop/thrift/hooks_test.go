package thriftinterop

import (
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/e2e/internal/codecproxy"
)

// wantExceptionType is the TApplicationException type real clients must see for a local
// error reply with reason r.
func wantExceptionType(r codecs.Reason) int {
	switch r {
	case codecs.ReasonNoRoute:
		return thrift.UNKNOWN_METHOD
	case codecs.ReasonBadRequest:
		return thrift.PROTOCOL_ERROR
	default:
		return thrift.INTERNAL_ERROR
	}
}

// errorMessage is the message the relay passes to AppendErrorReply for reason r, and
// clientMessage the message a client must then read: the codec prefixes it with the reason.
func errorMessage(r codecs.Reason) string { return "answered by the relay #" + r.String() }

func clientMessage(r codecs.Reason) string { return "meltemi: " + r.String() + ": " + errorMessage(r) }

// headerlessConfigs and headerConfigs are the wire variants without and with THeader.
func headerlessConfigs() []peerConfig {
	return []peerConfig{
		{Transport: "framed", Protocol: "binary"},
		{Transport: "framed", Protocol: "compact"},
		{Transport: "buffered", Protocol: "binary"},
		{Transport: "buffered", Protocol: "compact"},
	}
}

func headerConfigs() []peerConfig {
	return []peerConfig{
		{Transport: "header", Protocol: "binary"},
		{Transport: "header", Protocol: "compact"},
		{Transport: "header", Protocol: "compact", Zlib: true},
	}
}

// TestErrorReply answers calls in the relay with Conn.AppendErrorReply, one call per reason:
// real clients must raise a TApplicationException of the mapped type with our message, and
// the connection must stay usable afterwards.
func TestErrorReply(t *testing.T) {
	py := newPyPeer(t)
	codec := newCodec(t)
	reasons := codecs.Reasons()
	cfgs := append(headerlessConfigs(), headerConfigs()...)
	cfgs = append(cfgs,
		// Replies name the method without the service, as the Go client checks.
		peerConfig{Transport: "framed", Protocol: "binary", Multiplex: true},
		peerConfig{Transport: "header", Protocol: "compact", Multiplex: true},
		// Replies to the old encoding are in the old encoding.
		peerConfig{Transport: "buffered", Protocol: "binary-nonstrict"},
	)
	for _, cfg := range cfgs {
		for _, cli := range []client{goPeer{}, py} {
			t.Run(cfg.String()+"/"+cli.name(), func(t *testing.T) {
				t.Parallel()
				var (
					mu   sync.Mutex
					next int
				)
				var onewayReplies []error
				answer := func(conn codecs.Conn, f codecs.Frame) ([]byte, error) {
					if f.Kind() == codecs.KindOneway {
						// Nothing reads a reply to a oneway call: the codec refuses to build one.
						_, err := conn.AppendErrorReply(nil, f, codecs.ReasonNoRoute, "unread")
						mu.Lock()
						onewayReplies = append(onewayReplies, err)
						mu.Unlock()
						return nil, nil
					}
					if m, _ := f.Attribute("method"); m != "echo" {
						return nil, nil
					}
					mu.Lock()
					r := reasons[next%len(reasons)]
					next++
					mu.Unlock()
					reply, err := conn.AppendErrorReply(nil, f, r, errorMessage(r))
					if err != nil {
						return nil, fmt.Errorf("error reply for %v: %w", r, err)
					}
					return reply, nil
				}
				addr := goPeer{}.start(t, cfg)
				proxy := codecproxy.Start(t, codec, addr, idOffset, codecproxy.Hooks{Request: answer})

				var steps []step
				for i, r := range reasons {
					steps = append(steps, step{
						call: call{Method: "echo", Args: []any{"unanswered"}, Seqid: int32(100 + i)},
						want: callResult{Error: &callError{Kind: "application", Type: wantExceptionType(r), Message: clientMessage(r)}},
					})
				}
				// Let through: after the local replies the conversation is still in step.
				steps = append(steps,
					step{call: call{Method: "fire", Args: []any{"after"}, Seqid: 6}},
					step{call: call{Method: "lastFired", Seqid: 7}, want: value("after")})
				run := cli.run(t, cfg, proxy.Addr, callsOf(steps))
				checkResults(t, run, steps)

				mu.Lock()
				wantOneway := 1
				if cli.onewayAsCall() {
					wantOneway = 0 // its oneway calls are CALL messages
				}
				if len(onewayReplies) != wantOneway {
					t.Errorf("relay saw %d oneway frames, want %d", len(onewayReplies), wantOneway)
				}
				for _, err := range onewayReplies {
					if !errors.Is(err, codecs.ErrUnsupported) {
						t.Errorf("error reply to a oneway call: %v, want %v", err, codecs.ErrUnsupported)
					}
				}
				mu.Unlock()

				if got := len(proxy.Requests()); got != len(steps) {
					t.Errorf("relay decoded %d requests, want %d", got, len(steps))
				}
				resps := proxy.Responses()
				if len(resps) != 1 || resps[0].Attrs["method"] != "lastFired" {
					t.Errorf("server answered %+v, want only lastFired: the others were answered by the relay", resps)
				}
			})
		}
	}
}

// mutation records what header mutations returned in the relay's hooks.
type mutation struct {
	mu   sync.Mutex
	errs []error
	n    int
}

func (m *mutation) add(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n++
	if err != nil {
		m.errs = append(m.errs, err)
	}
}

func (m *mutation) result() (n int, errs []error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n, append([]error(nil), m.errs...)
}

// hooks set "x-meltemi" and delete "x-drop" on every request, and set "x-meltemi-reply" on
// every response.
func (m *mutation) hooks() codecproxy.Hooks {
	return codecproxy.Hooks{
		Request: func(_ codecs.Conn, f codecs.Frame) ([]byte, error) {
			m.add(f.SetHeader("x-meltemi", "v"))
			m.add(f.DelHeader("x-drop"))
			return nil, nil
		},
		Response: func(f codecs.Frame) error {
			m.add(f.SetHeader("x-meltemi-reply", "r"))
			return nil
		},
	}
}

// TestMutation sets and deletes THeader headers in the relay: the server sees the mutated
// headers, and the client sees a header the relay added to the reply.
func TestMutation(t *testing.T) {
	py := newPyPeer(t)
	codec := newCodec(t)
	cfgs := append(headerConfigs(), peerConfig{Transport: "header", Protocol: "binary", Multiplex: true})
	for _, cfg := range cfgs {
		for _, pr := range pairs(py) {
			t.Run(cfg.String()+"/"+pr.name(), func(t *testing.T) {
				t.Parallel()
				var m mutation
				addr := pr.srv.start(t, cfg)
				proxy := codecproxy.Start(t, codec, addr, idOffset, m.hooks())
				hdr := map[string]string{"x-keep": "k", "x-drop": "d", "x-meltemi": "from-client"}
				steps := []step{
					// Replaces the client's value.
					{call: call{Method: "header", Args: []any{"x-meltemi"}, Headers: hdr, Seqid: 1}, want: value("v")},
					{call: call{Method: "header", Args: []any{"x-drop"}, Headers: hdr, Seqid: 2}, want: value("")},
					{call: call{Method: "header", Args: []any{"x-keep"}, Headers: hdr, Seqid: 3}, want: value("k")},
					// Adds a header to a frame that has none.
					{call: call{Method: "header", Args: []any{"x-meltemi"}, Seqid: 4}, want: value("v")},
					{call: call{Method: "echo", Args: []any{"still in step"}, Seqid: 5}, want: value("still in step")},
				}
				run := pr.cli.run(t, cfg, proxy.Addr, callsOf(steps))
				checkResults(t, run, steps)
				for i, r := range run.Results {
					if want := map[string]string{"x-meltemi-reply": "r"}; !maps.Equal(r.Headers, want) {
						t.Errorf("call %d: reply headers %v, want %v", i, r.Headers, want)
					}
				}
				n, errs := m.result()
				if want := 3 * len(steps); n != want || len(errs) != 0 {
					t.Errorf("%d mutations (want %d), errors %v", n, want, errs)
				}
			})
		}
	}
}

// TestMutationUnsupported: framed and unframed frames cannot carry headers, so every
// mutation fails with ErrHeadersUnsupported and the frames are forwarded unchanged.
func TestMutationUnsupported(t *testing.T) {
	py := newPyPeer(t)
	codec := newCodec(t)
	for _, cfg := range headerlessConfigs() {
		for _, pr := range []pair{{goPeer{}, goPeer{}}, {py, py}} {
			t.Run(cfg.String()+"/"+pr.name(), func(t *testing.T) {
				t.Parallel()
				var m mutation
				addr := pr.srv.start(t, cfg)
				proxy := codecproxy.Start(t, codec, addr, 0, m.hooks())
				steps := []step{
					{call: call{Method: "echo", Args: []any{"a"}, Seqid: 1}, want: value("a")},
					{call: call{Method: "header", Args: []any{"x-meltemi"}, Seqid: 2}, want: value("")},
				}
				run := pr.cli.run(t, cfg, proxy.Addr, callsOf(steps))
				checkResults(t, run, steps)
				n, errs := m.result()
				if want := 3 * len(steps); n != want || len(errs) != n {
					t.Errorf("%d mutations, %d errors: want %d of each", n, len(errs), want)
				}
				for _, err := range errs {
					if !errors.Is(err, codecs.ErrHeadersUnsupported) {
						t.Errorf("mutation error %v, want %v", err, codecs.ErrHeadersUnsupported)
					}
				}
			})
		}
	}
}
