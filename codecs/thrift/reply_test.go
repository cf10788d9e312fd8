package thrift

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// readAppException reads the TApplicationException struct {1: string message, 2: i32 type}
// of an EXCEPTION message, field by field.
func readAppException(f *frame) (msg string, typ int32, err error) {
	b := f.msg[f.hdr.bodyOff:]
	last := int16(0)
	for p := 0; ; {
		if p >= len(b) {
			return "", 0, errors.New("struct truncated")
		}
		c := b[p]
		if c == 0 {
			if p != len(b)-1 {
				return "", 0, fmt.Errorf("%d bytes after the struct", len(b)-p-1)
			}
			return msg, typ, nil
		}
		var t uint8
		var id int16
		if f.protocol == protocolCompact {
			if c>>4 == 0 {
				return "", 0, errors.New("long field header")
			}
			t, id = compactTypes[c&0x0f], last+int16(c>>4)
			last = id
			p++
		} else {
			t, id = c, int16(binary.BigEndian.Uint16(b[p+1:]))
			p += 3
		}
		switch {
		case id == 1 && t == typeString:
			n, k := int(binary.BigEndian.Uint32(b[p:])), 4
			if f.protocol == protocolCompact {
				v, m := binary.Uvarint(b[p:])
				n, k = int(v), m
			}
			msg = string(b[p+k : p+k+n])
			p += k + n
		case id == 2 && t == typeI32:
			if f.protocol == protocolCompact {
				v, m := binary.Uvarint(b[p:])
				typ = int32(unzigzag(v))
				p += m
			} else {
				typ = int32(binary.BigEndian.Uint32(b[p:]))
				p += 4
			}
		default:
			return "", 0, fmt.Errorf("unexpected field %d of type %d", id, t)
		}
	}
}

func TestErrorReply(t *testing.T) {
	wantType := map[codecs.Reason]int32{
		codecs.ReasonNoRoute:           1,
		codecs.ReasonBadRequest:        7,
		codecs.ReasonNoHealthyUpstream: 6,
		codecs.ReasonTimeout:           6,
		codecs.ReasonOverLimit:         6,
		codecs.ReasonUnauthorized:      6,
		codecs.ReasonUnavailable:       6,
		codecs.ReasonInternal:          6,
	}
	if len(wantType) != len(codecs.Reasons()) {
		t.Fatal("a reason has no expected exception type")
	}
	c := newCodec(t, nil)
	seen := 0
	for _, g := range loadGolden(t) {
		if g.Kind != "request" {
			continue
		}
		seen++
		for _, r := range codecs.Reasons() {
			conn := c.NewConn()
			req := decodeAll(t, conn, g.Bytes).(*frame)
			if err := req.SetRequestID(0xfffffff0); err != nil { // the current id is answered
				t.Fatal(err)
			}
			out, err := conn.AppendErrorReply(nil, req, r, "no route for "+g.Attrs["method"])
			if err != nil {
				t.Fatalf("%s %v: %v", g.File, r, err)
			}
			rc := c.NewConn()
			rep := decodeAll(t, rc, out).(*frame)
			if rc.Mode() != g.Stream || rep.hdr.strict != req.hdr.strict {
				t.Errorf("%s: reply mode %q strict %v, request %q strict %v", g.File, rc.Mode(), rep.hdr.strict, g.Stream, req.hdr.strict)
			}
			if rep.Kind() != codecs.KindErrorResponse || rep.RequestID() != 0xfffffff0 {
				t.Errorf("%s: reply kind %v id %#x", g.File, rep.Kind(), rep.RequestID())
			}
			if mt, _ := rep.Attribute("message_type"); mt != "exception" {
				t.Errorf("%s: reply message type %q", g.File, mt)
			}
			// The bare method name, as a multiplexed server answers.
			if rep.name() != g.Attrs["method"] {
				t.Errorf("%s: reply name %q, want %q", g.File, rep.name(), g.Attrs["method"])
			}
			msg, typ, err := readAppException(rep)
			if err != nil {
				t.Fatalf("%s %v: %v", g.File, r, err)
			}
			if want := "meltemi: " + r.String() + ": no route for " + g.Attrs["method"]; msg != want {
				t.Errorf("%s: message %q, want %q", g.File, msg, want)
			}
			if typ != wantType[r] {
				t.Errorf("%s %v: exception type %d, want %d", g.File, r, typ, wantType[r])
			}
			if rep.transport == transportHeader {
				if rep.zlib != 0 || rep.infoStart != rep.infoEnd {
					t.Errorf("%s: THeader reply with transforms or headers", g.File)
				}
				if string(out[4:8]) != string(req.raw[4:8]) {
					t.Errorf("%s: THeader reply magic/flags % x, request % x", g.File, out[4:8], req.raw[4:8])
				}
				if binary.BigEndian.Uint32(out[headerSeqOff:]) != 0xfffffff0 {
					t.Errorf("%s: THeader reply header seq id % x", g.File, out[headerSeqOff:headerSeqOff+4])
				}
			}
		}
	}
	if seen < 20 {
		t.Fatalf("only %d request samples", seen)
	}
}

func TestErrorReplyEmptyMessageAndAppend(t *testing.T) {
	c := newCodec(t, nil)
	conn := c.NewConn()
	req := decodeAll(t, conn, streamSample(t, "framed/compact", "call_ping"))
	out, err := conn.AppendErrorReply([]byte("xyz"), req, codecs.ReasonTimeout, "")
	if err != nil || string(out[:3]) != "xyz" {
		t.Fatalf("%v %q", err, out)
	}
	msg, typ, err := readAppException(decodeOne(t, c, out[3:]))
	if err != nil || msg != "meltemi: timeout" || typ != 6 {
		t.Errorf("message %q type %d err %v", msg, typ, err)
	}
}

func TestErrorReplyRefused(t *testing.T) {
	c := newCodec(t, nil)
	conn := c.NewConn()
	if _, err := conn.AppendErrorReply(nil, nil, codecs.ReasonNoRoute, "x"); !errors.Is(err, codecs.ErrUnsupported) {
		t.Errorf("nil request: %v, want ErrUnsupported", err)
	}
	oneway := decodeAll(t, conn, streamSample(t, "framed/binary", "oneway_zip"))
	if _, err := conn.AppendErrorReply(nil, oneway, codecs.ReasonNoRoute, "x"); !errors.Is(err, codecs.ErrUnsupported) {
		t.Errorf("oneway request: %v, want ErrUnsupported", err)
	}
	reply := decodeAll(t, conn, streamSample(t, "framed/binary", "reply_calculate"))
	if out, err := conn.AppendErrorReply(nil, reply, codecs.ReasonNoRoute, "x"); err == nil {
		t.Errorf("error reply to a reply: %x", out)
	}
	if _, err := conn.AppendHeartbeatReply(nil, reply); !errors.Is(err, codecs.ErrUnsupported) {
		t.Errorf("heartbeat: %v", err)
	}
}
