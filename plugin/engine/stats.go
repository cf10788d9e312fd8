package engine

import (
	"sync/atomic"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// Stats is a snapshot of an engine's counters. Counters only grow, except ActiveSessions.
type Stats struct {
	ActiveSessions int64
	TotalSessions  uint64
	// Requests counts routed requests (two-way and oneway), Oneway those that expect no
	// response, Responses the upstream responses delivered to clients.
	Requests  uint64
	Oneway    uint64
	Responses uint64
	// Heartbeats counts heartbeats answered locally (from clients and from upstreams).
	Heartbeats uint64
	// LocalReplies counts error replies the engine built, by reason.
	LocalReplies map[codecs.Reason]uint64
	// DecodeErrors counts downstream connections closed for bytes the codec rejected;
	// UpstreamDecodeErrors the same for upstream connections.
	DecodeErrors         uint64
	UpstreamDecodeErrors uint64
	// MutationErrors counts header mutations the codec refused (each also a local reply).
	MutationErrors uint64
	// Panics counts panics recovered at entry points.
	Panics uint64
	// DroppedResponses counts upstream responses nobody waits for any more: late after a
	// timeout, for a closed client, or with an unknown id.
	DroppedResponses uint64
	// Cancelled counts requests abandoned because their client closed.
	Cancelled uint64
	// IdleTimeouts counts downstream connections closed for idleness.
	IdleTimeouts uint64
	// UpstreamConnects counts connection attempts, UpstreamConnectFailures the failed ones
	// (including connect timeouts) and UpstreamCloses established connections that closed.
	UpstreamConnects        uint64
	UpstreamConnectFailures uint64
	UpstreamCloses          uint64
	// Mirrored counts the copies of requests made for mirror clusters (Route.Mirrors). Each
	// two-way copy then ends once: as one of MirrorResponses (answered; the answer is read
	// and dropped) or of MirrorFailed (no endpoint, over limit, connect failure, timeout,
	// upstream close, engine closed); oneway copies are counted only when they fail. Copies
	// count in none of Requests, Responses and LocalReplies.
	Mirrored        uint64
	MirrorResponses uint64
	MirrorFailed    uint64
}

type counters struct {
	activeSessions                                        atomic.Int64
	totalSessions, requests, oneway, responses, heartbeat atomic.Uint64
	localReplies                                          [16]atomic.Uint64
	decodeErrors, upstreamDecodeErrors, mutationErrors    atomic.Uint64
	panics, dropped, cancelled, idleTimeouts              atomic.Uint64
	connects, connectFailures, upstreamCloses             atomic.Uint64
	mirrored, mirrorResponses, mirrorFailed               atomic.Uint64
}

func (c *counters) localReply(r codecs.Reason) {
	if int(r) < len(c.localReplies) {
		c.localReplies[r].Add(1)
	}
}

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	c := &e.stats
	s := Stats{
		ActiveSessions: c.activeSessions.Load(), TotalSessions: c.totalSessions.Load(),
		Requests: c.requests.Load(), Oneway: c.oneway.Load(), Responses: c.responses.Load(),
		Heartbeats: c.heartbeat.Load(), LocalReplies: map[codecs.Reason]uint64{},
		DecodeErrors: c.decodeErrors.Load(), UpstreamDecodeErrors: c.upstreamDecodeErrors.Load(),
		MutationErrors: c.mutationErrors.Load(), Panics: c.panics.Load(),
		DroppedResponses: c.dropped.Load(), Cancelled: c.cancelled.Load(),
		IdleTimeouts: c.idleTimeouts.Load(), UpstreamConnects: c.connects.Load(),
		UpstreamConnectFailures: c.connectFailures.Load(), UpstreamCloses: c.upstreamCloses.Load(),
		Mirrored: c.mirrored.Load(), MirrorResponses: c.mirrorResponses.Load(), MirrorFailed: c.mirrorFailed.Load(),
	}
	for i := range c.localReplies {
		if n := c.localReplies[i].Load(); n > 0 {
			s.LocalReplies[codecs.Reason(i)] = n
		}
	}
	return s
}
