package loadgen

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	hessian "github.com/apache/dubbo-go-hessian2"
)

// Protocol builds one request template per connection and reads responses. Requests are
// encoded once; each call only rewrites the request id in place, so the hot loop neither
// encodes nor allocates.
type Protocol interface {
	// Name is the protocol's name in reports.
	Name() string
	// Request returns a new request frame whose payload is size bytes.
	Request(size int) ([]byte, error)
	// SetID writes id into a frame returned by Request.
	SetID(req []byte, id uint32)
	// ReadResponse reads one whole response frame from r, using buf as scratch space, and
	// returns its request id. A response that is not a successful reply is an error.
	ReadResponse(r *bufio.Reader, buf []byte) (id uint32, err error)
}

// ByName returns the protocol called name: "thrift" or "dubbo".
func ByName(name string) (Protocol, error) {
	switch name {
	case "thrift":
		return Thrift{}, nil
	case "dubbo":
		return Dubbo{}, nil
	}
	return nil, fmt.Errorf("unknown protocol %q (want thrift or dubbo)", name)
}

// payload is size bytes of printable ASCII, valid as a Thrift binary and a hessian string.
func payload(size int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	var b strings.Builder
	b.Grow(size)
	for i := range size {
		b.WriteByte(alphabet[i%len(alphabet)])
	}
	return b.String()
}

// ThriftMethod is the method the Thrift benchmark calls: binary echo(1: binary payload)
// (e2e/bench/thrift/bench.thrift).
const ThriftMethod = "echo"

// Thrift is framed TBinaryProtocol (strict) calls of ThriftMethod.
type Thrift struct{}

// Name implements Protocol.
func (Thrift) Name() string { return "thrift" }

const (
	thriftCall  = 0x80010001 // strict version 1, message type CALL
	thriftReply = 0x80010002
	// thriftSeqIDAt is where the sequence id sits: frame size, version, name length, name.
	thriftSeqIDAt = 4 + 4 + 4 + len(ThriftMethod)
)

// Request implements Protocol.
func (Thrift) Request(size int) ([]byte, error) {
	b := make([]byte, 4, 4+thriftSeqIDAt+4+3+4+size+1)
	b = binary.BigEndian.AppendUint32(b, thriftCall)
	b = binary.BigEndian.AppendUint32(b, uint32(len(ThriftMethod)))
	b = append(b, ThriftMethod...)
	b = binary.BigEndian.AppendUint32(b, 0) // seqid, set per call
	b = append(b, 11, 0, 1)                 // field 1, type string/binary
	b = binary.BigEndian.AppendUint32(b, uint32(size))
	b = append(b, payload(size)...)
	b = append(b, 0) // stop
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b, nil
}

// SetID implements Protocol.
func (Thrift) SetID(req []byte, id uint32) {
	binary.BigEndian.PutUint32(req[thriftSeqIDAt:], id)
}

// ReadResponse implements Protocol.
func (Thrift) ReadResponse(r *bufio.Reader, buf []byte) (uint32, error) {
	body, err := readFrame(r, buf, 4, func(h []byte) int { return int(binary.BigEndian.Uint32(h)) })
	if err != nil {
		return 0, err
	}
	if len(body) < thriftSeqIDAt {
		return 0, fmt.Errorf("thrift: reply of %d bytes", len(body))
	}
	if v := binary.BigEndian.Uint32(body); v != thriftReply {
		return 0, fmt.Errorf("thrift: message header %#x, want a reply (exception or not strict)", v)
	}
	return binary.BigEndian.Uint32(body[thriftSeqIDAt-4:]), nil
}

// The Dubbo benchmark calls Echo(String) of DubboService, unversioned, as a raw hessian2
// client (the dubbo-go provider is e2e/bench/cmd/dubboprovider).
const (
	DubboService = "org.apache.dubbo.bench.EchoService"
	DubboMethod  = "Echo"
)

// Dubbo is two-way hessian2 requests of DubboMethod.
type Dubbo struct{}

// Name implements Protocol.
func (Dubbo) Name() string { return "dubbo" }

const (
	dubboHeader   = 16
	dubboFlags    = 0x80 | 0x40 | 2 // request, two-way, hessian2
	dubboEvent    = 0x20
	dubboStatusOK = 20
)

// Request implements Protocol.
func (Dubbo) Request(size int) ([]byte, error) {
	e := hessian.NewEncoder()
	for i, v := range []any{"2.0.2", DubboService, "", DubboMethod, "Ljava/lang/String;", payload(size),
		map[any]any{"path": DubboService, "interface": DubboService}} {
		if err := e.Encode(v); err != nil {
			return nil, fmt.Errorf("dubbo: encode body value %d: %w", i, err)
		}
	}
	body := e.Buffer()
	b := make([]byte, dubboHeader, dubboHeader+len(body))
	b[0], b[1], b[2] = 0xda, 0xbb, dubboFlags
	binary.BigEndian.PutUint32(b[12:], uint32(len(body)))
	return append(b, body...), nil
}

// SetID implements Protocol.
func (Dubbo) SetID(req []byte, id uint32) {
	binary.BigEndian.PutUint64(req[4:], uint64(id))
}

// ReadResponse implements Protocol. Event frames (heartbeats) are skipped.
func (Dubbo) ReadResponse(r *bufio.Reader, buf []byte) (uint32, error) {
	for {
		h, err := r.Peek(dubboHeader)
		if err != nil {
			return 0, fmt.Errorf("dubbo: read header: %w", err)
		}
		if h[0] != 0xda || h[1] != 0xbb {
			return 0, fmt.Errorf("dubbo: bad magic % x", h[:2])
		}
		flags, status, id := h[2], h[3], binary.BigEndian.Uint64(h[4:])
		if _, err := readFrame(r, buf, dubboHeader, func(h []byte) int { return int(binary.BigEndian.Uint32(h[12:])) }); err != nil {
			return 0, err
		}
		if flags&dubboEvent != 0 {
			continue
		}
		if flags&0x80 != 0 {
			return 0, errors.New("dubbo: got a request, want a response")
		}
		if status != dubboStatusOK {
			return 0, fmt.Errorf("dubbo: response status %d", status)
		}
		return uint32(id), nil
	}
}

// maxFrame bounds the frames readFrame accepts.
const maxFrame = 16 << 20

// readFrame reads a header of hlen bytes and the body whose length size(header) gives,
// into buf when it fits, and returns the body.
func readFrame(r *bufio.Reader, buf []byte, hlen int, size func([]byte) int) ([]byte, error) {
	h, err := r.Peek(hlen)
	if err != nil {
		return nil, fmt.Errorf("read header: %w", err)
	}
	n := size(h)
	if n < 0 || n > maxFrame {
		return nil, fmt.Errorf("frame body of %d bytes", n)
	}
	if _, err := r.Discard(hlen); err != nil {
		return nil, err
	}
	if n > len(buf) {
		buf = make([]byte, n) // only for replies larger than the request, which echo never sends
	}
	if _, err := io.ReadFull(r, buf[:n]); err != nil {
		return nil, fmt.Errorf("read body: %w", err)
	}
	return buf[:n], nil
}
