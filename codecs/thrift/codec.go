package thrift

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// Name is the protocol name of the codec.
const Name = "thrift"

// Factory creates Thrift codecs. The zero value is ready to use.
type Factory struct{}

// Name returns "thrift".
func (Factory) Name() string { return Name }

// New validates opts. Params: "transport" (auto, framed, unframed, header) and "protocol"
// (auto, binary, compact); both default to auto.
func (Factory) New(opts codecs.Options) (codecs.Codec, error) {
	c := &codec{maxFrame: opts.EffectiveMaxFrameSize()}
	keys := make([]string, 0, len(opts.Params))
	for k := range opts.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first bad key reported does not depend on map order
	for _, k := range keys {
		v := opts.Params[k]
		switch k {
		case "transport":
			t, ok := parseTransport(v)
			if !ok {
				return nil, fmt.Errorf("thrift: transport %q: want auto, framed, unframed or header", v)
			}
			c.transport = t
		case "protocol":
			p, ok := parseProtocol(v)
			if !ok {
				return nil, fmt.Errorf("thrift: protocol %q: want auto, binary or compact", v)
			}
			c.protocol = p
		default:
			return nil, fmt.Errorf("thrift: unknown parameter %q (known: transport, protocol)", k)
		}
	}
	return c, nil
}

type transport uint8

const (
	transportAuto transport = iota
	transportFramed
	transportUnframed
	transportHeader
)

var transportNames = [...]string{"auto", "framed", "unframed", "header"}

func (t transport) String() string { return transportNames[t] }

func parseTransport(s string) (transport, bool) {
	for i, n := range transportNames {
		if n == s {
			return transport(i), true
		}
	}
	return 0, false
}

type protocol uint8

const (
	protocolAuto protocol = iota
	protocolBinary
	protocolCompact
)

var protocolNames = [...]string{"auto", "binary", "compact"}

func (p protocol) String() string { return protocolNames[p] }

func parseProtocol(s string) (protocol, bool) {
	for i, n := range protocolNames {
		if n == s {
			return protocol(i), true
		}
	}
	return 0, false
}

// modeNames are the Mode strings, built once so that Mode never allocates.
var modeNames = func() (m [4][3]string) {
	for t := transportFramed; t <= transportHeader; t++ {
		for p := protocolBinary; p <= protocolCompact; p++ {
			m[t][p] = t.String() + "/" + p.String()
		}
	}
	return m
}()

// codec is a configured Thrift codec; immutable.
type codec struct {
	maxFrame  int
	transport transport // forced transport, or auto
	protocol  protocol  // forced protocol, or auto
}

func (*codec) Name() string { return Name }

func (c *codec) NewConn() codecs.Conn {
	return &conn{codec: c, transport: c.transport, protocol: c.protocol}
}

// errShort is the internal signal that the bytes end before the frame does. Decode turns it
// into (nil, 0, nil); it never reaches a caller.
var errShort = errors.New("thrift: need more data")

func malformed(format string, args ...any) error {
	return fmt.Errorf("thrift: "+format+": %w", append(args, codecs.ErrMalformed)...)
}

func tooLarge(need, limit int64) error {
	return fmt.Errorf("thrift: frame needs %d bytes, limit %d: %w", need, limit, codecs.ErrFrameTooLarge)
}

// conn is the state of one byte stream.
type conn struct {
	codec *codec
	// transport and protocol are what the stream must use: the configured values until the
	// first frame, then the detected ones.
	transport transport
	protocol  protocol
	detected  bool
	// variant is the binary form of the first message, kept like the mode: a client writes
	// one form, and an unframed stream could not tell a non-strict message from a frame
	// length otherwise.
	variant variant

	// skip keeps the struct skipper's place in an incomplete unframed message, so that the
	// next Decode, which sees the same bytes and more, resumes where this one stopped.
	skip       skipper
	skipActive bool
	skipBody   int // offset of the message body the saved state belongs to
}

func (c *conn) Mode() string {
	if !c.detected {
		return ""
	}
	return modeNames[c.transport][c.protocol]
}

func (c *conn) Decode(buf []byte) (codecs.Frame, int, error) {
	t := c.transport
	if t == transportAuto {
		var err error
		if t, err = c.detectTransport(buf); err != nil {
			if err == errShort {
				return nil, 0, nil
			}
			return nil, 0, err
		}
	}
	var f *frame
	var err error
	switch t {
	case transportFramed:
		f, err = c.decodeFramed(buf)
	case transportUnframed:
		f, err = c.decodeUnframed(buf)
	default:
		f, err = c.decodeHeader(buf)
	}
	if err != nil {
		if err == errShort {
			return nil, 0, nil
		}
		c.skipActive = false
		return nil, 0, err
	}
	if !c.detected {
		c.transport, c.protocol, c.detected = t, f.protocol, true
		if f.protocol == protocolBinary {
			c.variant = variantNonStrict
			if f.hdr.strict {
				c.variant = variantStrict
			}
		}
	}
	return f, len(f.raw), nil
}

// detectTransport looks at the first bytes of a stream whose transport is not configured.
//
// A frame length is below 2^31, so a first byte with the top bit set starts an unframed
// strict-binary (0x80) or compact (0x82) message. Otherwise the first word is a frame length
// followed by the THeader magic, a strict-binary version, a compact protocol id, or the high
// byte (0) of a non-strict binary name length; anything else is the name of an unframed
// non-strict binary message (its length first, then the name, whose first byte is not 0).
func (c *conn) detectTransport(buf []byte) (transport, error) {
	if len(buf) == 0 {
		return 0, errShort
	}
	if buf[0]&0x80 != 0 {
		return transportUnframed, nil
	}
	if len(buf) < 4 {
		return 0, errShort
	}
	// Both readings of the first word bound the frame from below: a framed or THeader frame
	// is the word plus 4 bytes, an unframed non-strict message at least that plus the type
	// and seqid. So the limit can be enforced before the rest is known.
	if need := int64(binary.BigEndian.Uint32(buf)) + 4; need > int64(c.codec.maxFrame) {
		return 0, tooLarge(need, int64(c.codec.maxFrame))
	}
	if len(buf) < 6 {
		return 0, errShort
	}
	switch {
	case buf[4] == 0x0f && buf[5] == 0xff:
		return transportHeader, nil
	case buf[4] == 0x80, buf[4] == compactProtocolID, buf[4] == 0:
		return transportFramed, nil
	}
	return transportUnframed, nil
}

// frameLength reads a framed or THeader length word and applies the limit.
func (c *conn) frameLength(buf []byte, t transport) (int, error) {
	if len(buf) < 4 {
		return 0, errShort
	}
	size := binary.BigEndian.Uint32(buf)
	if size&0x80000000 != 0 {
		return 0, malformed("frame length %#08x is negative: not a %v stream", size, t)
	}
	total := int64(size) + 4
	if total > int64(c.codec.maxFrame) {
		return 0, tooLarge(total, int64(c.codec.maxFrame))
	}
	if len(buf) < int(total) {
		return 0, errShort
	}
	return int(total), nil
}

func (c *conn) decodeFramed(buf []byte) (*frame, error) {
	total, err := c.frameLength(buf, transportFramed)
	if err != nil {
		return nil, err
	}
	if total < 6 {
		return nil, malformed("framed message of %d bytes is too short", total-4)
	}
	if buf[4] == 0x0f && buf[5] == 0xff {
		return nil, malformed("THeader frame on a framed stream")
	}
	f := &frame{raw: bytes.Clone(buf[:total]), transport: transportFramed}
	f.msg = f.raw[4:]
	if err := f.parseMessage(c.protocol, c.variant); err != nil {
		return nil, err
	}
	return f, nil
}

func (c *conn) decodeUnframed(buf []byte) (*frame, error) {
	limit := c.codec.maxFrame
	b := buf
	if len(b) > limit {
		// Bytes past the limit cannot belong to an acceptable message.
		b = b[:limit]
	}
	h, err := parseHeader(b, c.protocol, c.variant, false, limit)
	if err != nil {
		return nil, err
	}
	if !c.skipActive || c.skipBody != h.bodyOff || c.skip.compact != (h.protocol == protocolCompact) || c.skip.pos > len(b) {
		c.skip.reset(h.protocol == protocolCompact, h.bodyOff)
		c.skipActive, c.skipBody = true, h.bodyOff
	}
	if err := c.skip.run(b, false, limit); err != nil {
		return nil, err
	}
	c.skipActive = false
	end := c.skip.pos
	f := &frame{raw: bytes.Clone(buf[:end]), transport: transportUnframed, hdr: h}
	f.msg = f.raw
	if err := f.setKind(); err != nil {
		return nil, err
	}
	return f, nil
}

func (c *conn) decodeHeader(buf []byte) (*frame, error) {
	total, err := c.frameLength(buf, transportHeader)
	if err != nil {
		return nil, err
	}
	f := &frame{raw: bytes.Clone(buf[:total]), transport: transportHeader}
	if err := f.parseTHeader(c.protocol, c.variant, c.codec.maxFrame); err != nil {
		return nil, err
	}
	return f, nil
}

func (c *conn) AppendHeartbeatReply(dst []byte, _ codecs.Frame) ([]byte, error) {
	return dst, fmt.Errorf("thrift: no heartbeats: %w", codecs.ErrUnsupported)
}
