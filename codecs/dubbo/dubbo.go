package dubbo

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"unsafe"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/dubbo/internal/hessian"
)

// Name is the protocol name of this codec.
const Name = "dubbo"

// HeaderLen is the size of the fixed header in front of every frame.
const HeaderLen = 16

// Header flags and the serialization id this codec understands.
const (
	magicHigh  = 0xda
	magicLow   = 0xbb
	flagReq    = 0x80
	flagTwoWay = 0x40
	flagEvent  = 0x20
	serialMask = 0x1f

	// SerializationHessian2 is hessian2's id in the low bits of the flags byte.
	SerializationHessian2 = 2
)

// Status is the status byte of a response.
type Status uint8

// Response statuses defined by Dubbo.
const (
	StatusOK                        Status = 20
	StatusClientTimeout             Status = 30
	StatusServerTimeout             Status = 31
	StatusBadRequest                Status = 40
	StatusBadResponse               Status = 50
	StatusServiceNotFound           Status = 60
	StatusServiceError              Status = 70
	StatusServerError               Status = 80
	StatusClientError               Status = 90
	StatusServerThreadpoolExhausted Status = 100
)

// Response types: the first value of a status-20 hessian2 response body.
const (
	respException    = 0
	respValue        = 1
	respNull         = 2
	respExceptionAtt = 3
	respValueAtt     = 4
	respNullAtt      = 5
)

// Factory creates Dubbo codecs.
type Factory struct{}

// Name returns "dubbo".
func (Factory) Name() string { return Name }

// New returns a Dubbo codec. The codec takes no parameters.
func (Factory) New(opts codecs.Options) (codecs.Codec, error) {
	if len(opts.Params) > 0 {
		keys := make([]string, 0, len(opts.Params))
		for k := range opts.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		return nil, fmt.Errorf("dubbo: unknown parameters %q: the codec takes none", keys)
	}
	return &codec{maxFrame: opts.EffectiveMaxFrameSize()}, nil
}

type codec struct{ maxFrame int }

func (*codec) Name() string { return Name }

func (c *codec) NewConn() codecs.Conn { return &conn{maxFrame: c.maxFrame} }

// conn holds no per-stream state beyond the limit: Dubbo has one framing and each frame names
// its own serialization.
type conn struct{ maxFrame int }

func (*conn) Mode() string { return Name }

func malformed(format string, args ...any) error {
	return fmt.Errorf("dubbo: %s: %w", fmt.Sprintf(format, args...), codecs.ErrMalformed)
}

func (c *conn) Decode(buf []byte) (codecs.Frame, int, error) {
	// The magic is checked on the first bytes so that a stream of another protocol fails at
	// once rather than after 16 bytes.
	if len(buf) > 0 && buf[0] != magicHigh || len(buf) > 1 && buf[1] != magicLow {
		return nil, 0, malformed("bad magic %x", buf[:min(len(buf), 2)])
	}
	if len(buf) < HeaderLen {
		return nil, 0, nil
	}
	bodyLen := binary.BigEndian.Uint32(buf[12:16])
	if bodyLen > math.MaxInt32 {
		// Java reads the length as a signed int: this is a negative length.
		return nil, 0, malformed("body length %d", int32(bodyLen))
	}
	size := HeaderLen + int64(bodyLen)
	if size > int64(c.maxFrame) {
		return nil, 0, fmt.Errorf("dubbo: frame of %d bytes, limit %d: %w", size, c.maxFrame, codecs.ErrFrameTooLarge)
	}
	if int64(len(buf)) < size {
		return nil, 0, nil
	}
	f := newFrame(int(size))
	copy(f.b, buf)
	f.maxFrame, f.respType = c.maxFrame, -1
	if err := f.classify(); err != nil {
		return nil, 0, err
	}
	return f, int(size), nil
}

// newFrame returns a frame with room for n bytes. Frames up to 4 KiB, most RPCs, share one
// allocation with their bytes, in a buffer at most twice their size: on the decode path the
// number of allocations costs more than their size (measured here, one 1.4 KB object takes
// about 60% of the time of a 256-byte and a 1 KB one).
func newFrame(n int) *frame {
	switch {
	case n <= 64:
		return frameWithBuffer[[64]byte](n)
	case n <= 128:
		return frameWithBuffer[[128]byte](n)
	case n <= 256:
		return frameWithBuffer[[256]byte](n)
	case n <= 512:
		return frameWithBuffer[[512]byte](n)
	case n <= 768:
		return frameWithBuffer[[768]byte](n)
	case n <= 1024:
		return frameWithBuffer[[1024]byte](n)
	case n <= 1536:
		return frameWithBuffer[[1536]byte](n)
	case n <= 2048:
		return frameWithBuffer[[2048]byte](n)
	case n <= 3072:
		return frameWithBuffer[[3072]byte](n)
	case n <= 4096:
		return frameWithBuffer[[4096]byte](n)
	}
	return &frame{b: make([]byte, n)}
}

// frameWithBuffer allocates a frame and a byte array A together; A must be a byte array of
// at least n bytes. The frame's bytes point into the array, which keeps the whole object
// alive as long as the frame or any string pointing into its bytes is.
func frameWithBuffer[A any](n int) *frame {
	p := new(struct {
		frame
		buf A
	})
	p.b = unsafe.Slice((*byte)(unsafe.Pointer(&p.buf)), n)
	return &p.frame
}

func (c *conn) AppendHeartbeatReply(dst []byte, hb codecs.Frame) ([]byte, error) {
	f, ok := hb.(*frame)
	if !ok || f.kind != codecs.KindHeartbeatRequest {
		return dst, fmt.Errorf("dubbo: heartbeat reply to a %s: %w", describe(hb), codecs.ErrUnsupported)
	}
	dst = appendHeader(dst, flagEvent|SerializationHessian2, StatusOK, f.RequestID(), 1)
	return hessian.AppendNull(dst), nil
}

// statusFor maps a reason onto the Dubbo status a client reports best; see the package doc.
func statusFor(r codecs.Reason) (Status, string) {
	switch r {
	case codecs.ReasonNoRoute:
		return StatusServiceNotFound, "no route"
	case codecs.ReasonNoHealthyUpstream:
		return StatusServiceNotFound, "no healthy upstream"
	case codecs.ReasonTimeout:
		return StatusServerTimeout, "timeout"
	case codecs.ReasonOverLimit:
		return StatusServerThreadpoolExhausted, "over limit"
	case codecs.ReasonUnauthorized:
		return StatusBadRequest, "unauthorized"
	case codecs.ReasonUnavailable:
		return StatusServerError, "unavailable"
	case codecs.ReasonBadRequest:
		return StatusBadRequest, "bad request"
	case codecs.ReasonInternal:
		return StatusServerError, "internal error"
	}
	return StatusServerError, r.String()
}

func (c *conn) AppendErrorReply(dst []byte, req codecs.Frame, reason codecs.Reason, msg string) ([]byte, error) {
	if req == nil {
		return dst, fmt.Errorf("dubbo: error reply without a request: no id to answer: %w", codecs.ErrUnsupported)
	}
	f, ok := req.(*frame)
	if !ok || f.kind != codecs.KindRequest {
		return dst, fmt.Errorf("dubbo: error reply to a %s: only two-way requests are answered: %w",
			describe(req), codecs.ErrUnsupported)
	}
	status, what := statusFor(reason)
	text := "meltemi: " + what
	if msg != "" {
		text += ": " + msg
	}
	start := len(dst)
	dst = appendHeader(dst, SerializationHessian2, status, f.RequestID(), 0)
	dst = hessian.AppendString(dst, text)
	binary.BigEndian.PutUint32(dst[start+12:], uint32(len(dst)-start-HeaderLen))
	return dst, nil
}

func appendHeader(dst []byte, flags byte, status Status, id uint64, bodyLen uint32) []byte {
	dst = append(dst, magicHigh, magicLow, flags, byte(status))
	dst = binary.BigEndian.AppendUint64(dst, id)
	return binary.BigEndian.AppendUint32(dst, bodyLen)
}

func describe(f codecs.Frame) string {
	switch g := f.(type) {
	case nil:
		return "nil frame"
	case *frame:
		return g.kind.String()
	}
	return fmt.Sprintf("frame of another codec (%T)", f)
}
