// Command meltemi is Meltemi's network filter for stock Envoy: built with
// go build -buildmode=c-shared, it is the library that Envoy's contrib
// envoy.filters.network.golang filter loads, with plugin_name "meltemi".
package main

import "github.com/meltemi-mesh/meltemi/plugin/envoy"

// Envoy's Go side looks factories up by name when the first connection arrives; the library
// is loaded, and init run, when Envoy reads the first configuration that names it.
func init() { envoy.Register() }

// main is never called: the Go runtime starts when Envoy loads the library.
func main() {}
