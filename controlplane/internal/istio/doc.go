// Package istio is the controller's Istio-mode output: it writes into the cluster what makes
// Istio's sidecars use the Meltemi plugin. After each sync (debounced) the Writer applies the
// EnvoyFilters the generator (package envoyfilter) makes from the model, deletes the ones it
// wrote earlier that are no longer wanted, and gives ServiceEntries with Meltemi ports and no
// spec.addresses a virtual IP from a configured range (AllocateVIPs), so that Istio creates
// the "<VIP>_<port>" listener the EnvoyFilters patch. Everything is written with server-side
// apply under the field manager "meltemi-controller" and labelled
// app.kubernetes.io/managed-by=meltemi-controller.
//
// Only one replica writes: RunLeaderElection holds the Lease "meltemi-controller" and runs
// the writers while it holds it; every replica serves xDS.
package istio
