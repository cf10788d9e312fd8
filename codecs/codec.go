// Package codecs defines the contract between Meltemi's proxy engine and the layer-7 protocols
// it understands, plus a registry to pick a protocol by name.
//
// A codec is pure Go: it knows nothing of Envoy, cgo or sockets. It turns a byte stream into
// frames, exposes the routing attributes of a request, rewrites request ids in the encoded
// bytes, applies header mutations when a frame is encoded again, and builds protocol-correct
// local replies. Every codec must pass the conformance kit in codecs/codectest.
//
// Three levels of object exist, each with one lifetime:
//
//   - Factory: registered once by name ("dubbo", "thrift", ...).
//   - Codec: a Factory configured with Options; immutable, shared by every connection of a
//     filter configuration and safe for concurrent use.
//   - Conn: the per-connection state of a codec (for example the Thrift transport and protocol
//     detected from the first bytes). It is not a network connection and is not safe for
//     concurrent use; one byte stream, one Conn.
//
// # Attribute names
//
// Routing matches on attributes, strings looked up by name on a request frame. The names are
// the same across codecs:
//
//	service   the called service: Dubbo interface (service path), Thrift multiplexed service
//	method    the called method
//	version   the service version (Dubbo)
//	group     the service group (Dubbo)
//
// A codec may add built-in attributes of its own, documented in its package (for example
// "interface" and "param_types" for Dubbo, "message_type" for Thrift). Every other name is
// looked up verbatim among the frame's string headers (Dubbo attachments, THeader info
// headers). Built-in names take precedence over headers of the same name.
package codecs

import (
	"errors"
	"fmt"
)

// DefaultMaxFrameSize is the frame size limit used when Options.MaxFrameSize is zero.
const DefaultMaxFrameSize = 8 << 20

// Kind says what a frame is.
type Kind uint8

// Frame kinds. A protocol without streams never produces the stream kinds.
const (
	KindRequest           Kind = iota + 1 // a two-way request: a response is expected
	KindOneway                            // a request that gets no response
	KindResponse                          // a successful response
	KindErrorResponse                     // a response that reports an error or exception
	KindHeartbeatRequest                  // a keep-alive probe, answered by the peer
	KindHeartbeatResponse                 // the answer to a keep-alive probe
	KindStreamStart                       // first frame of a stream
	KindStreamData                        // a message inside a stream
	KindStreamEnd                         // last frame of a stream
)

var kindNames = [...]string{
	KindRequest:           "request",
	KindOneway:            "oneway",
	KindResponse:          "response",
	KindErrorResponse:     "error_response",
	KindHeartbeatRequest:  "heartbeat_request",
	KindHeartbeatResponse: "heartbeat_response",
	KindStreamStart:       "stream_start",
	KindStreamData:        "stream_data",
	KindStreamEnd:         "stream_end",
}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// IsRequest reports whether frames of this kind travel from client to server and are routed.
func (k Kind) IsRequest() bool { return k == KindRequest || k == KindOneway }

// IsResponse reports whether frames of this kind answer a request.
func (k Kind) IsResponse() bool { return k == KindResponse || k == KindErrorResponse }

// Reason is why the proxy answers a request itself instead of forwarding it. Each codec maps
// a reason onto the closest error its protocol has, so that real clients surface it as an error.
type Reason uint8

// Reasons for a local error reply.
const (
	ReasonNoRoute           Reason = iota + 1 // no route matched the request
	ReasonNoHealthyUpstream                   // the route's cluster has no usable endpoint
	ReasonTimeout                             // the route timeout expired
	ReasonOverLimit                           // rate limit or circuit breaker
	ReasonUnauthorized                        // denied by policy
	ReasonUnavailable                         // the upstream could not be reached or went away
	ReasonInternal                            // a bug or unexpected state in the proxy
	ReasonBadRequest                          // the request could not be decoded or is invalid
)

var reasonNames = [...]string{
	ReasonNoRoute:           "no_route",
	ReasonNoHealthyUpstream: "no_healthy_upstream",
	ReasonTimeout:           "timeout",
	ReasonOverLimit:         "over_limit",
	ReasonUnauthorized:      "unauthorized",
	ReasonUnavailable:       "unavailable",
	ReasonInternal:          "internal",
	ReasonBadRequest:        "bad_request",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) && reasonNames[r] != "" {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Reasons lists every Reason, for tests and documentation.
func Reasons() []Reason {
	return []Reason{ReasonNoRoute, ReasonNoHealthyUpstream, ReasonTimeout, ReasonOverLimit,
		ReasonUnauthorized, ReasonUnavailable, ReasonInternal, ReasonBadRequest}
}

// Errors a codec returns; wrap them with context and test with errors.Is.
var (
	// ErrFrameTooLarge: a frame declares, or would need, more than Options.MaxFrameSize bytes.
	ErrFrameTooLarge = errors.New("frame too large")
	// ErrMalformed: the bytes are not a valid frame of the protocol. The stream cannot be
	// resynchronised: the connection must be closed.
	ErrMalformed = errors.New("malformed frame")
	// ErrHeadersUnsupported: the frame's protocol or transport cannot carry headers, so a
	// mutation cannot be applied. Codecs never drop a mutation silently.
	ErrHeadersUnsupported = errors.New("frame cannot carry headers")
	// ErrUnsupported: the protocol has no such operation (for example heartbeats in Thrift).
	ErrUnsupported = errors.New("operation not supported by the protocol")
	// ErrIDRange: the request id does not fit the protocol's id field.
	ErrIDRange = errors.New("request id out of range for the protocol")
)

// Options configure a Codec.
type Options struct {
	// MaxFrameSize bounds the encoded size of one frame in bytes; 0 means DefaultMaxFrameSize.
	// A frame that declares a larger size is rejected before its body is buffered.
	MaxFrameSize int
	// Params are codec-specific settings, documented by each codec. Unknown keys are errors.
	Params map[string]string
}

// EffectiveMaxFrameSize returns MaxFrameSize with the default applied.
func (o Options) EffectiveMaxFrameSize() int {
	if o.MaxFrameSize <= 0 {
		return DefaultMaxFrameSize
	}
	return o.MaxFrameSize
}

// Factory creates configured codecs of one protocol.
type Factory interface {
	// Name is the protocol name the registry and configuration use, e.g. "dubbo".
	Name() string
	// New validates opts and returns a configured Codec.
	New(opts Options) (Codec, error)
}

// Codec is a configured protocol. It is immutable and safe for concurrent use.
type Codec interface {
	// Name is the protocol name, as Factory.Name.
	Name() string
	// NewConn returns the state for one new byte stream (one direction-pair of a connection:
	// the same Conn decodes requests on a downstream connection, or responses on an upstream
	// one).
	NewConn() Conn
}

// Multiplexer is an optional interface of a Codec. A protocol whose responses cannot be
// paired with their requests by id (no request id on the wire, or one the server does not
// echo) cannot carry concurrent requests on one connection: its codec implements
// Multiplexer and returns false, and the engine then sends one request at a time per
// upstream connection and leaves request ids untouched. Codecs that do not implement it
// multiplex (Dubbo and Thrift do).
type Multiplexer interface {
	// Multiplexes reports whether many requests may be in flight on one connection.
	Multiplexes() bool
}

// Multiplexes reports whether c can carry concurrent requests on one connection: the
// answer of its Multiplexer implementation, or true when it has none.
func Multiplexes(c Codec) bool {
	if m, ok := c.(Multiplexer); ok {
		return m.Multiplexes()
	}
	return true
}

// Conn decodes one byte stream and builds replies that fit it. It is not safe for concurrent
// use. Decode never blocks and never panics, whatever the input.
type Conn interface {
	// Decode looks at the start of buf for one complete frame.
	//
	//   - A complete frame: returns it and n, the number of bytes it used; the caller drops
	//     buf[:n] and calls Decode again on the rest, which may hold more frames.
	//   - An incomplete frame: returns (nil, 0, nil). The caller keeps buf, appends more bytes
	//     and calls again. Nothing is consumed.
	//   - Bytes that can never become a valid frame, or a frame larger than the limit: returns
	//     an error wrapping ErrMalformed or ErrFrameTooLarge. The size check happens as soon as
	//     the size is known, before the body is buffered. The stream is then unusable.
	//
	// The returned frame never aliases buf: the caller may reuse buf as soon as Decode returns.
	Decode(buf []byte) (f Frame, n int, err error)

	// AppendErrorReply appends to dst an error response to req, encoded the way the peer that
	// sent req expects it (same transport and protocol), carrying req's current request id, a
	// protocol error code chosen from reason, and msg. req must be a request decoded by this
	// Conn; it may be nil when the stream failed before a request could be decoded, in which
	// case codecs that have no way to address the reply return ErrUnsupported.
	AppendErrorReply(dst []byte, req Frame, reason Reason, msg string) ([]byte, error)

	// AppendHeartbeatReply appends the answer to the heartbeat request hb. Protocols without
	// heartbeats return ErrUnsupported.
	AppendHeartbeatReply(dst []byte, hb Frame) ([]byte, error)

	// Mode names the wire variant this stream uses once known (for example
	// "framed/binary" for Thrift), or "" before the first frame. Streams of different modes
	// must not share an upstream connection.
	Mode() string
}

// Frame is one decoded message. It owns its bytes. It is not safe for concurrent use.
type Frame interface {
	// Kind says what the frame is.
	Kind() Kind

	// RequestID is the id that pairs a response with its request (Dubbo request id, Thrift
	// seqid). Heartbeats carry ids too where the protocol has them.
	RequestID() uint64
	// SetRequestID rewrites the id in the frame's encoded bytes without re-encoding its body.
	// It returns an error wrapping ErrIDRange if id does not fit the protocol.
	SetRequestID(id uint64) error

	// Attribute returns a routing attribute of the frame, read lazily: the first call that
	// needs a part of the frame parses that part only. See the package doc for names. The
	// returned string stays valid and unchanged for the life of the frame, whatever
	// SetRequestID or mutations do later.
	Attribute(name string) (value string, ok bool)
	// RangeHeaders calls fn for each string header of the frame, in wire order, until fn
	// returns false. Mutations are not reflected.
	RangeHeaders(fn func(name, value string) bool)

	// SetHeader records that the header name is to be set to value when the frame is
	// encoded; DelHeader records that it is to be removed. They return an error wrapping
	// ErrHeadersUnsupported if the frame cannot carry headers.
	SetHeader(name, value string) error
	DelHeader(name string) error

	// Size is the length of the frame's encoded bytes as they stand (before mutations).
	Size() int
	// AppendTo appends the encoded frame to dst: the original bytes with the current
	// request id, or, when mutations were recorded, the bytes with the mutations applied.
	AppendTo(dst []byte) ([]byte, error)
}
