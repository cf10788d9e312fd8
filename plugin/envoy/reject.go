package envoy

import (
	"github.com/meltemi-mesh/meltemi/codecs"
)

// rejectMessage is the error the clients of a filter with an invalid configuration get. The
// cause stays in the proxy's log: clients need not see the configuration.
const rejectMessage = "the proxy's filter configuration is invalid"

// rejectConn answers one downstream connection of a filter whose configuration is invalid:
// it decodes frames until the first request, which it answers with an error, then the
// connection closes. Heartbeats before it are skipped; a stream that cannot be decoded gets
// the error too where the protocol can address it.
type rejectConn struct {
	conn codecs.Conn
	buf  []byte
}

func newRejectConn(c codecs.Codec) *rejectConn {
	return &rejectConn{conn: c.NewConn()}
}

// onData takes the connection's next bytes. When done, the connection must be closed after
// reply, which may be empty, is written.
func (r *rejectConn) onData(b []byte) (reply []byte, done bool) {
	r.buf = append(r.buf, b...)
	for len(r.buf) > 0 {
		f, n, err := r.conn.Decode(r.buf)
		if err != nil {
			reply, _ = r.conn.AppendErrorReply(nil, nil, codecs.ReasonInternal, rejectMessage)
			return reply, true
		}
		if f == nil {
			return nil, false // incomplete: the codec bounds the frame size
		}
		r.buf = r.buf[n:]
		switch f.Kind() {
		case codecs.KindHeartbeatRequest, codecs.KindHeartbeatResponse:
			continue
		case codecs.KindRequest:
			reply, _ = r.conn.AppendErrorReply(nil, f, codecs.ReasonInternal, rejectMessage)
		}
		// A oneway request expects no reply, and anything else has no place here.
		return reply, true
	}
	r.buf = nil
	return nil, false
}
