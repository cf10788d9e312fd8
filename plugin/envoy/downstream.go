package envoy

import (
	"sync/atomic"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/meltemi-mesh/meltemi/plugin/engine"
)

// downstream is the filter of one downstream connection and the engine's Downstream for it.
// Envoy calls the api.DownstreamFilter methods on the connection's worker, one at a time; the
// engine calls Write and Close from any goroutine.
type downstream struct {
	fc *FilterConfig
	cb api.ConnectionCallback

	// Set by OnNewConnection, before any other call.
	session *engine.Session // valid configuration
	reject  *rejectConn     // invalid configuration

	closing atomic.Bool // Close was sent to Envoy
}

var _ api.DownstreamFilter = (*downstream)(nil)
var _ engine.Downstream = (*downstream)(nil)

func (d *downstream) OnNewConnection() api.FilterStatus {
	defer d.recover("new connection")
	if d.fc.engine != nil {
		d.session = d.fc.engine.NewSession(d)
		return api.NetworkFilterContinue
	}
	d.fc.rejected.Add(1)
	if d.fc.rejectCodec == nil {
		d.Close()
		return api.NetworkFilterStopIteration
	}
	d.reject = newRejectConn(d.fc.rejectCodec)
	return api.NetworkFilterContinue
}

// OnData hands the bytes to the engine. Envoy's Go side copies them into a fresh slice for
// each call, and drains its buffer after the call whatever the status: the filter consumes
// everything, so it stops the iteration.
func (d *downstream) OnData(b []byte, _ bool) api.FilterStatus {
	defer d.recover("downstream data")
	switch {
	case d.session != nil:
		d.session.OnData(b)
	case d.reject != nil:
		if reply, done := d.reject.onData(b); done {
			d.Write(reply)
			d.Close()
		}
	}
	return api.NetworkFilterStopIteration
}

// OnEvent ends the session when the connection closes. Envoy's downstream connections never
// half-close (their peer's FIN arrives as RemoteClose), and no callback follows a close.
func (d *downstream) OnEvent(e api.ConnectionEvent) {
	defer d.recover("downstream event")
	if e != api.LocalClose && e != api.RemoteClose {
		return
	}
	d.closing.Store(true)
	if d.session != nil {
		d.session.OnClose()
	}
}

// OnWrite lets the filter's own writes through: Envoy passes every write, the engine's
// included, through the write filter chain.
func (d *downstream) OnWrite([]byte, bool) api.FilterStatus {
	return api.NetworkFilterContinue
}

// Write sends b to the client. Envoy copies b and posts the write to the connection's
// worker, so this never blocks; after the connection closed Envoy drops it.
func (d *downstream) Write(b []byte) {
	if len(b) == 0 || d.closing.Load() {
		return // Envoy's Go side panics on an empty write
	}
	d.cb.Write(b, false)
}

// Close closes the connection once written bytes are flushed, at most once.
func (d *downstream) Close() {
	if d.closing.CompareAndSwap(false, true) {
		d.cb.Close(api.FlushWrite)
	}
}

// recover, deferred in every entry point, turns a panic into the close of this connection.
func (d *downstream) recover(where string) {
	if v := recover(); v != nil {
		d.fc.recovered(where, v)
		d.closeAfterPanic()
	}
}

func (d *downstream) closeAfterPanic() {
	defer func() {
		if v := recover(); v != nil {
			d.fc.recovered("close after panic", v)
		}
	}()
	if d.session != nil {
		d.session.OnClose()
	}
	d.Close()
}
