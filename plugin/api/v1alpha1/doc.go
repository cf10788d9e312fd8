// Package apiv1alpha1 is the configuration API of Meltemi's data plane: the protobuf messages
// of the network filter's configuration (FilterConfig) and of its routes
// (RouteConfiguration), their generated Go bindings, and the hand-written code that turns
// the plugin_config Envoy hands to the filter into a checked FilterConfig.
//
// It is the contract between the data plane and the control plane: the Envoy adapter parses
// its configuration with ParseFilterConfig, and the control plane builds the same messages
// and serves them. It depends on nothing of Meltemi, so either side can import it.
//
// The .proto files beside this file are the source of truth and document every field; the
// *.pb.go files are generated from them by hack/protoc.sh (make generate) and committed.
package apiv1alpha1
