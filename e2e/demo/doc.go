// Package demo holds the pieces of the `make run` demo (hack/run-demo.sh): the Thrift and
// Dubbo echo servers that stand behind the plugin, the client that shows the plugin's
// routing, and the loading of the demo's plugin configurations from envoy-config/filters.
// Those configurations take their routes over xDS from the Meltemi controller, which the
// script starts first on the demo's mesh (envoy-config/demo); its tests check that they name
// the route configurations the controller serves, and run the script.
//
// The servers name themselves in every reply ("v1: hello"), so the client can tell which
// upstream a request was routed to. The command in cmd/meltemi-demo runs each piece.
package demo
