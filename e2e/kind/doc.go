// Package kind is the kind-cluster end-to-end test of Meltemi in an Istio mesh: the Go tests
// (build tag kind) that run.sh starts once it has created the cluster, installed Istio and the
// controller, and deployed the demo apps of manifests/. They drive calls from the client pod
// (`kubectl exec ... meltemi-demo call`) and assert where the plugin in the sidecars routed
// them: by version, by attribute (exact, prefix, regex), by weight, with a route timeout, with
// a mirror, and through Aeraki-group MetaRouters. They need a cluster, so `make test` does not
// run them; see README.md.
package kind
