// Package xdsclient is the plugin's xDS client: it fetches, over one gRPC ADS stream
// (state of the world, insecure: the control plane is local or in the mesh), the route
// configurations that filter configurations name, the clusters those routes reference and
// the endpoints of those clusters, and hands each watcher a consistent Snapshot of them.
//
// The resource types and names are the contract of plugin/api/v1alpha1 (xds.go):
// RouteConfigurationTypeURL, ClusterTypeURL and EndpointTypeURL. Subscriptions follow the
// watchers: route names of every watcher, then the clusters their routes reference (route
// cluster, weighted clusters, mirror clusters, the global rate limit service), then the
// ClusterLoadAssignments of those clusters (eds_cluster_config.service_name, or the cluster
// name; a cluster with an inline load_assignment needs none).
//
// A Snapshot is delivered only when it is complete: the route configuration, and every
// cluster and assignment it needs either received or known to be missing. A resource is
// known to be missing when
//   - the server's first response of a type on a stream, answering the only request of that
//     type sent so far on it, does not carry it (the server answers a first request with
//     every requested resource it has);
//   - a cluster received earlier is absent from a later Cluster response (Clusters are
//     "full state" in state-of-the-world xDS: every response lists all of them);
//   - it was requested on the current stream and has not arrived within
//     Options.MissingTimeout (default 5 s, as a guard against servers that never answer for
//     resources they lack).
//
// A missing cluster is absent from Snapshot.Clusters and listed in Snapshot.Missing, so that
// the engine answers requests routed to it with "unavailable" while the rest of the routes
// work. A missing route configuration delivers nothing: the watcher keeps what it has.
//
// Every response is ACKed with its version and nonce, or NACKed (error_detail, the last
// accepted version) when a resource does not unmarshal, a route configuration fails its
// own validation (checked on arrival, so it is never ACKed while its clusters are still
// coming), or a watcher's callback rejects the snapshot the response completes. A NACKed
// response is undone: later snapshots are built from the resources accepted before it, and
// a resource it brought for the first time is taken as missing (the server will not send it
// again until it changes). A snapshot rejected for how its parts fit together (a cluster
// setting the engine refuses) NACKs the response that completed it, which is not always the
// one holding the fault; the error message names the resource at fault. When the stream breaks the client
// reconnects with jittered exponential backoff (250 ms to 30 s, reset once a stream lived
// 30 s) and re-subscribes with the last accepted versions; meanwhile nothing is cleared and
// watchers keep their last snapshot.
//
// One Client serves one control-plane address for the whole process; a Pool holds the
// clients of a process, one per address. Callbacks run on the client's own goroutine, one
// at a time, never on the caller's: Envoy's threads are never blocked by the network.
package xdsclient
