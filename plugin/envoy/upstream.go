package envoy

import (
	"sync"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"

	"github.com/meltemi-mesh/meltemi/plugin/engine"
)

// dialer is the engine's Dialer over Envoy's upstream connections.
type dialer struct {
	dial DialFunc
	fc   *FilterConfig
}

// Dial asks Envoy for a connection to addr through its plainText ORIGINAL_DST cluster. Envoy
// builds the connection object on this thread and posts the connect to a worker, so the
// handler hears nothing before Dial returns. addr is an ip:port the engine has parsed:
// Envoy aborts on anything else.
func (dl dialer) Dial(addr string, h engine.UpstreamHandler) {
	dl.dial(addr, &upstream{h: h, fc: dl.fc})
}

// upstream is the api.UpstreamFilter of one upstream connection and, once the pool is ready,
// the engine's UpstreamConn for it. Envoy calls the filter methods on the worker it chose for
// the connection (generally not the worker of any downstream connection using it); the engine
// writes from any goroutine.
type upstream struct {
	h  engine.UpstreamHandler
	fc *FilterConfig

	// mu orders writes against the close event. Once Envoy reported the close, its Go side
	// forgets the connection and Go's finalizer soon frees Envoy's handle, which cb points
	// to: no write may start after that, nor still be running.
	mu     sync.RWMutex
	cb     api.ConnectionCallback // set when the pool is ready
	closed bool                   // the close event arrived
}

var _ api.UpstreamFilter = (*upstream)(nil)
var _ engine.UpstreamConn = (*upstream)(nil)

func (u *upstream) OnPoolReady(cb api.ConnectionCallback) {
	defer u.recover("upstream ready")
	u.mu.Lock()
	u.cb = cb
	u.mu.Unlock()
	u.h.OnReady(u)
}

func (u *upstream) OnPoolFailure(reason api.PoolFailureReason, _ string) {
	defer u.recover("upstream failure")
	u.h.OnFailure(connectFailure(reason))
}

func connectFailure(r api.PoolFailureReason) engine.ConnectFailure {
	switch r {
	case api.Overflow:
		return engine.FailureOverflow
	case api.RemoteConnectionFailure:
		return engine.FailureRemote
	case api.Timeout:
		return engine.FailureTimeout
	}
	return engine.FailureLocal
}

// OnData hands the bytes to the engine. Half-close is never enabled on upstream
// connections, so endOfStream is always false: a FIN arrives as RemoteClose.
func (u *upstream) OnData(b []byte, _ bool) {
	defer u.recover("upstream data")
	if len(b) > 0 {
		u.h.OnData(b)
	}
}

func (u *upstream) OnEvent(e api.ConnectionEvent) {
	defer u.recover("upstream event")
	if e != api.LocalClose && e != api.RemoteClose {
		return
	}
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	u.h.OnClose()
}

// Write sends b upstream. Envoy copies b and posts the write to the connection's worker.
func (u *upstream) Write(b []byte) {
	if len(b) == 0 {
		return
	}
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.cb != nil && !u.closed {
		u.cb.Write(b, false)
	}
}

// Close closes the connection after the written bytes are flushed. Envoy then reports
// LocalClose, which the engine gets as OnClose.
func (u *upstream) Close() {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if u.cb != nil && !u.closed {
		u.cb.Close(api.FlushWrite)
	}
}

// recover, deferred in every entry point, turns a panic into the close of this connection.
func (u *upstream) recover(where string) {
	if v := recover(); v != nil {
		u.fc.recovered(where, v)
		func() {
			defer func() {
				if v := recover(); v != nil {
					u.fc.recovered("close after panic", v)
				}
			}()
			u.Close()
		}()
	}
}
