// Package demo holds the pieces of the `make run` demo (hack/run-demo.sh): the Thrift and
// Dubbo echo servers that stand behind the plugin, the client that shows the plugin's
// routing, and the loading of the demo's plugin configurations from envoy-config/filters.
//
// The servers name themselves in every reply ("v1: hello"), so the client can tell which
// upstream a request was routed to. The command in cmd/meltemi-demo runs each piece.
package demo
