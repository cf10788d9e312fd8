// Package envoy adapts Envoy's golang network filter API (contrib
// envoy.filters.network.golang, v1.36) to Meltemi's host-agnostic proxy engine. It is the only
// package that imports Envoy's Go API.
//
// Envoy calls the filter through cgo on its own threads and blocks until the call returns, a
// panic there aborts the whole Envoy process, and the handles Envoy gives out must not be used
// after it has released them. The adapter therefore:
//
//   - builds one engine per filter configuration, once, when Envoy hands the configuration
//     over (a network.ConfigParser), never per connection;
//   - never blocks in a callback: writes and closes go through Envoy's C API, which copies the
//     bytes and posts the work to the connection's worker;
//   - writes only non-empty buffers, and writes upstream only after the pool reported ready;
//   - stops using an upstream connection's Envoy handle once Envoy reported it closed, so
//     that Go's finalizer, which frees the handle, cannot race a late write;
//   - recovers from panics in every entry point: the connection concerned is closed, the
//     panic is logged and counted, Envoy survives.
//
// A configuration that does not parse or validate does not stop Envoy: it is logged, and every
// connection of that filter gets one protocol error reply (when the protocol is known and can
// address one) and is closed.
//
// A configuration whose routes come from RDS (rds.route_config_name, served by the ADS
// server at rds.config_source; empty: MELTEMI_XDS_ADDRESS, else DefaultXDSAddress) starts
// with no routes, so that requests get the protocol's "no route" error until the first
// complete snapshot arrives; then each snapshot of the route configuration, its clusters and
// their endpoints is translated and swapped into the engine without touching connections.
// A snapshot that does not translate is NACKed and logged, and the engine keeps its routes;
// when the control plane is unreachable the last routes stay in effect. The xDS client
// (plugin/internal/xdsclient) runs on its own goroutines: nothing of it runs on, or
// blocks, Envoy's threads.
package envoy
