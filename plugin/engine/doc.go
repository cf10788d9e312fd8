// Package engine is Meltemi's host-agnostic proxy engine: for each downstream connection it
// decodes requests with a codec, routes them on their attributes, balances them over the
// endpoints of a cluster, multiplexes them over upstream connections shared by every
// connection of the engine, and maps responses back. It knows nothing of Envoy or cgo: the
// host (plugin/envoy) implements the small interfaces of host.go over Envoy's callbacks.
//
// # Request path
//
// Session.OnData decodes every complete frame in the bytes received (a partial frame waits
// for more; many frames in one read are handled in order). A request goes to the first route
// whose matches all hold (no route: a no_route error reply); the route names a cluster or a
// weighted split; the cluster's balancer picks an endpoint. Each endpoint has one pool per
// codec mode (Codec Conn.Mode: a Thrift framed stream and a THeader stream never share a
// connection) with ConnectionsPerEndpoint multiplexed connections. The pool rewrites the
// request id to one it allocated, so that requests of different clients never collide, and
// restores the client's id on the response. Requests wait, encoded, while a connection is
// established; they are written once it is ready, never before.
//
// A codec that cannot multiplex (it implements codecs.Multiplexer and returns false) gets
// ping-pong pools instead: one request at a time per connection, ids left as the client sent
// them, the response being the next frame the connection reads. A request takes an idle
// connection, or waits while a new one is dialled (one per waiting request) and is served by
// whichever connection frees first. ConnectionsPerEndpoint idle connections are kept per
// pool and the others closed once free; oneway requests free their connection as soon as
// they are written. A connection whose request times out or whose client leaves is closed,
// since its late response would otherwise answer the next request.
//
// A route may mirror its requests (Route.Mirrors): each policy samples a share of them, with
// a lock-free per-engine generator, and sends a copy to an endpoint of its cluster through
// that cluster's balancer, limits and pools (the copy gets an id of its own there, and the
// route timeout). The copy is made before the request is forwarded and shares no bytes with
// it. Its response is read and dropped, its failures are counted (Stats.Mirrored,
// MirrorResponses, MirrorFailed), and neither ever reaches the client, which sees only the
// response to its request. Oneway requests are mirrored as oneway; requests answered
// before routing (undecodable, no route) are not mirrored.
//
// Local replies use the codec's protocol-correct errors: over_limit when the cluster's
// MaxRequests or MaxPendingRequests is reached, timeout when the route timeout expires (the
// late response is dropped), unavailable when connects fail on MaxConnectAttempts endpoints
// or when an upstream connection closes with requests in flight, internal when a header
// mutation is refused by the codec, no_healthy_upstream for a cluster without endpoints.
// Heartbeats are answered locally, from clients and from upstream servers. Oneway requests
// (KindOneway, or a method listed in Route.OnewayMethods) are forwarded and nothing waits
// for them. A decode error gets an error reply where the protocol can address one without a
// request, then the connection is closed. When a client closes, its requests in flight are
// cancelled and their responses dropped. A session idle for Config.IdleTimeout (no bytes
// and nothing in flight) is closed.
//
// # Threading contract with the host
//
// Envoy calls into Go synchronously on its worker threads, and a call that blocks stalls
// every connection of that worker. The engine therefore never blocks on the network: every
// method returns after bounded work under short locks. In turn the host must honour:
//
//   - Session.OnData and Session.OnClose are called on the downstream connection's worker,
//     never concurrently for one session; OnClose at most once, nothing after it.
//   - UpstreamHandler methods are called on the upstream connection's worker, which is in
//     general another thread than the downstream's (Envoy picks it round-robin): sessions
//     and pools have locks for that reason. Never concurrently for one connection.
//   - Data slices passed in are only read during the call; the engine copies what it keeps.
//   - Downstream.Write/Close and UpstreamConn.Write/Close may be called from any goroutine,
//     with engine locks held: they must copy the bytes, post the work, return at once, and
//     never call back into the engine (Envoy's DownstreamWrite and UpstreamWrite copy and
//     post). The engine never writes an empty slice (Envoy's Go API panics on one) and never
//     writes to an upstream before its OnReady.
//   - Dialer.Dial must not call the handler before it returns.
//
// Timers (route timeouts, connect timeouts, idle timeouts) run on Go's timer goroutines.
// Every entry point, timers included, recovers from panics: a panic in a session closes that
// session (after an error reply to the request being handled, if the codec can build one), a
// panic in an upstream callback closes that upstream connection and fails its requests; the
// process lives and Stats.Panics counts it. Stats are atomic counters, read with
// Engine.Stats.
//
// A filter whose configuration is invalid can still answer protocol errors: Refusing returns
// an engine whose sessions answer the first request with an error and close.
//
// # Sharing
//
// Pools belong to an Engine, and an Engine to a filter configuration: the host keeps one
// Engine per configuration, so every downstream connection of it, on every worker, shares
// the same upstream connections. A new filter configuration is a new Engine (Engine.Close
// releases the old one's connections).
//
// # Live updates
//
// Engine.Update replaces the routes and clusters of a running engine (routes received over
// xDS). The route table is behind an atomic pointer that each request loads once, and each
// cluster's settings and endpoint list behind another, so the request path takes no lock
// and allocates nothing for it; a request keeps the route it matched. Clusters are kept by
// name and endpoints by address, with their pools and connections; removed endpoints drain
// (their requests complete, then their connections close, bounded by Options.DrainTimeout)
// and are never balanced to again: a request balanced on the old configuration that reaches
// a drained endpoint is balanced again on the new one. Downstream connections are never
// closed by an update. An engine may start without routes: by default its requests are
// answered no_route; with Options.WaitForUpdate (routes from RDS) they wait for the first
// Update, bounded by Options.InitialFetchTimeout (15 s, as Envoy's initial_fetch_timeout)
// and MaxHeldRequests, and are then routed, or answered no_route when the timeout expires.
//
// # Limits of this version
//
//   - Multiplexed pools use 32-bit ids on the wire. Ping-pong pools have no connection
//     limit of their own: a pool holds at most one connection per request sent to it, so
//     the cluster's MaxRequests bounds them (oneway requests, which are not counted there,
//     hold a connection only while they are written).
//   - Circuit-breaker limits are checked and counted with atomics per cluster, without a
//     cluster-wide lock: concurrent requests on different endpoints may overshoot a limit
//     by a few.
//   - The engine answers heartbeats but sends none: an upstream server that closes idle
//     connections (Dubbo providers do after three missed heartbeats) closes them, and the
//     next request opens a new one. Nothing is in flight on an idle connection.
//   - A connection that fails is not ejected: the next request may dial it again (its
//     requests then retry elsewhere).
//   - Endpoint labels are accepted but not used (subset load balancing comes later).
//   - A pool that an update shrinks or grows (ConnectionsPerEndpoint) keeps its size; new
//     pools get the new one.
package engine
