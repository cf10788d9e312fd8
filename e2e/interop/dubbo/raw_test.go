package dubbointerop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// The raw client writes Dubbo frames itself: a hand-built 16-byte header and a body encoded
// value by value with dubbo-go-hessian2's Encoder. It can send what dubbo-go's consumer never
// does (a null service version, several frames in one write, heartbeats at will) and it
// reads replies byte for byte, so a test sees exactly what the relay forwarded.

const (
	flagRequest  = 0x80
	flagTwoWay   = 0x40
	flagEvent    = 0x20
	hessian2ID   = 2
	statusOK     = 20
	headerLength = 16
)

// rawRequest is the body of a request frame.
type rawRequest struct {
	Service string
	// Version is written as given: a string, or nil for hessian null.
	Version     any
	Method      string
	Types       string // the parameter types descriptor
	Args        []any
	Attachments map[any]any
}

// echoRequest calls Echo of the unversioned export, as a client that knows nothing of
// versions and groups does.
func echoRequest(msg string) rawRequest {
	return rawRequest{
		Service: echoInterface, Version: "", Method: "Echo",
		Types: "Ljava/lang/String;", Args: []any{msg},
		Attachments: map[any]any{"path": echoInterface, "interface": echoInterface},
	}
}

// requestFrame encodes a two-way hessian2 request with id.
func requestFrame(id uint64, r rawRequest) ([]byte, error) {
	e := hessian.NewEncoder()
	values := append([]any{"2.0.2", r.Service, r.Version, r.Method, r.Types}, r.Args...)
	values = append(values, r.Attachments)
	for i, v := range values {
		if err := e.Encode(v); err != nil {
			return nil, fmt.Errorf("encode body value %d (%T): %w", i, v, err)
		}
	}
	return frame(flagRequest|flagTwoWay|hessian2ID, 0, id, e.Buffer()), nil
}

// onewayFrame encodes a request without the two-way flag: the provider sends no response.
func onewayFrame(id uint64, r rawRequest) ([]byte, error) {
	b, err := requestFrame(id, r)
	if err != nil {
		return nil, err
	}
	b[2] &^= flagTwoWay
	return b, nil
}

// heartbeatFrame is a two-way event request with a null body, as Dubbo clients send.
func heartbeatFrame(id uint64) []byte {
	return frame(flagRequest|flagTwoWay|flagEvent|hessian2ID, 0, id, []byte{'N'})
}

func frame(flags, status byte, id uint64, body []byte) []byte {
	b := make([]byte, headerLength, headerLength+len(body))
	b[0], b[1], b[2], b[3] = 0xda, 0xbb, flags, status
	binary.BigEndian.PutUint64(b[4:], id)
	binary.BigEndian.PutUint32(b[12:], uint32(len(body)))
	return append(b, body...)
}

func mustFrame(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// rawConn is one connection of the raw client.
type rawConn struct{ c net.Conn }

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, callTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{c: c}
}

// send writes frames in a single write.
func (r *rawConn) send(frames ...[]byte) error {
	var b []byte
	for _, f := range frames {
		b = append(b, f...)
	}
	if err := r.c.SetWriteDeadline(time.Now().Add(callTimeout)); err != nil {
		return err
	}
	_, err := r.c.Write(b)
	return err
}

// rawFrame is a frame as the raw client read it.
type rawFrame struct {
	raw    []byte // header and body
	flags  byte
	status byte
	id     uint64
	body   []byte
}

func (r *rawConn) read() (rawFrame, error) {
	if err := r.c.SetReadDeadline(time.Now().Add(callTimeout)); err != nil {
		return rawFrame{}, err
	}
	h := make([]byte, headerLength)
	if _, err := io.ReadFull(r.c, h); err != nil {
		return rawFrame{}, fmt.Errorf("read header: %w", err)
	}
	if h[0] != 0xda || h[1] != 0xbb {
		return rawFrame{}, fmt.Errorf("bad magic % x", h[:2])
	}
	n := binary.BigEndian.Uint32(h[12:])
	if n > 16<<20 {
		return rawFrame{}, fmt.Errorf("body of %d bytes", n)
	}
	raw := append(h, make([]byte, n)...)
	if _, err := io.ReadFull(r.c, raw[headerLength:]); err != nil {
		return rawFrame{}, fmt.Errorf("read body: %w", err)
	}
	return rawFrame{raw: raw, flags: h[2], status: h[3], id: binary.BigEndian.Uint64(h[4:]), body: raw[headerLength:]}, nil
}

// errRemote is a response that reports an error: a non-OK status or an exception.
type errRemote struct {
	status byte
	msg    string
}

func (e *errRemote) Error() string { return fmt.Sprintf("status %d: %s", e.status, e.msg) }

// Response types of a status-20 body.
const (
	respException    = 0
	respValue        = 1
	respNull         = 2
	respExceptionAtt = 3
	respValueAtt     = 4
	respNullAtt      = 5
)

// result decodes a response body with dubbo-go-hessian2: its value, its attachments (nil
// for response types without them), or an *errRemote.
func (f rawFrame) result() (value any, atts map[any]any, err error) {
	if f.flags&(flagRequest|flagEvent) != 0 {
		return nil, nil, fmt.Errorf("not a response: flags %#x", f.flags)
	}
	d := hessian.NewDecoder(f.body)
	if f.status != statusOK {
		v, err := d.Decode()
		if err != nil {
			return nil, nil, fmt.Errorf("decode error body: %w", err)
		}
		msg, ok := v.(string)
		if !ok {
			return nil, nil, fmt.Errorf("error body is a %T, not a string", v)
		}
		return nil, nil, &errRemote{status: f.status, msg: msg}
	}
	t, err := d.Decode()
	if err != nil {
		return nil, nil, fmt.Errorf("decode response type: %w", err)
	}
	rt, ok := t.(int32)
	if !ok {
		return nil, nil, fmt.Errorf("response type is a %T", t)
	}
	switch rt {
	case respValue, respValueAtt, respException, respExceptionAtt:
		if value, err = d.Decode(); err != nil {
			return nil, nil, fmt.Errorf("decode value: %w", err)
		}
	case respNull, respNullAtt:
	default:
		return nil, nil, fmt.Errorf("response type %d", rt)
	}
	if rt >= respExceptionAtt {
		a, err := d.Decode()
		if err != nil {
			return nil, nil, fmt.Errorf("decode attachments: %w", err)
		}
		if atts, ok = a.(map[any]any); !ok {
			return nil, nil, fmt.Errorf("attachments are a %T", a)
		}
	}
	if rt == respException || rt == respExceptionAtt {
		return nil, atts, &errRemote{status: f.status, msg: fmt.Sprint(value)}
	}
	return value, atts, nil
}

// roundTrip sends one request and reads its response, checking the id.
func (r *rawConn) roundTrip(id uint64, req rawRequest) (rawFrame, error) {
	b, err := requestFrame(id, req)
	if err != nil {
		return rawFrame{}, err
	}
	if err := r.send(b); err != nil {
		return rawFrame{}, err
	}
	f, err := r.read()
	if err != nil {
		return rawFrame{}, err
	}
	if f.id != id {
		return f, fmt.Errorf("response id %d, sent %d", f.id, id)
	}
	return f, nil
}

func isRemote(err error) (*errRemote, bool) {
	var e *errRemote
	return e, errors.As(err, &e)
}
