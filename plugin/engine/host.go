package engine

import "fmt"

// Downstream is the client connection a Session answers on. The host (the Envoy adapter)
// implements it over Envoy's downstream callbacks.
type Downstream interface {
	// Write sends b to the client. The engine never passes an empty b, and it reuses b as
	// soon as Write returns: the host copies the bytes before returning (Envoy's
	// DownstreamWrite does, then posts the write to the connection's worker). Write is called
	// from any goroutine, often with an engine lock held: it must not block and must not call
	// back into the engine.
	Write(b []byte)
	// Close closes the connection once written bytes are flushed. Same rules as Write.
	// The engine calls it at most once per session.
	Close()
}

// Dialer opens upstream connections. The host implements it with
// network.CreateUpstreamConn(addr, …) through Envoy's plainText ORIGINAL_DST cluster.
type Dialer interface {
	// Dial starts connecting to addr, an "ip:port" (never a host name), and reports on h:
	// exactly one of OnReady or OnFailure, then, after OnReady, OnData any number of times
	// and OnClose once. Dial must not block and must not call h before it returns (Envoy
	// posts the connect to a worker). It may be called from any goroutine.
	Dial(addr string, h UpstreamHandler)
}

// UpstreamHandler receives the events of one upstream connection. The engine implements it.
//
// The host calls it on whatever thread owns the upstream connection (with Envoy, a worker
// chosen round-robin, generally not the worker of the downstream connection that caused the
// dial) and never concurrently for one connection. Every method returns quickly, never blocks
// on the network and recovers from panics. The data passed to OnData is only read during the
// call; the host may reuse it afterwards.
type UpstreamHandler interface {
	// OnReady: the connection is established; c writes to it. Nothing is written before.
	OnReady(c UpstreamConn)
	// OnFailure: the connection could not be established.
	OnFailure(reason ConnectFailure)
	// OnData: bytes arrived from the upstream.
	OnData(b []byte)
	// OnClose: the connection closed, by either side. No call follows.
	OnClose()
}

// UpstreamConn writes to and closes an established upstream connection. Same rules as
// Downstream: b is never empty and reused after Write returns; any goroutine; no blocking; no
// calls back into the engine.
type UpstreamConn interface {
	Write(b []byte)
	Close()
}

// ConnectFailure is why an upstream connection could not be established. The values are
// Envoy's pool failure reasons.
type ConnectFailure uint8

// Connect failure reasons.
const (
	FailureOverflow ConnectFailure = iota // the host's own connection limit
	FailureLocal                          // e.g. cluster missing, no host, bad address
	FailureRemote                         // refused or reset by the peer
	FailureTimeout                        // the connect timed out
)

func (f ConnectFailure) String() string {
	switch f {
	case FailureOverflow:
		return "overflow"
	case FailureLocal:
		return "local_connection_failure"
	case FailureRemote:
		return "remote_connection_failure"
	case FailureTimeout:
		return "timeout"
	}
	return fmt.Sprintf("failure(%d)", uint8(f))
}
