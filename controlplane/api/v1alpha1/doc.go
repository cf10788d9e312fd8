// Package v1alpha1 is the Kubernetes API of Meltemi's control plane, group
// metaprotocol.meltemi.io, version v1alpha1: MetaRouter (how requests of a non-HTTP protocol
// are routed) and ApplicationProtocol (which codec speaks a protocol).
//
// MetaRouter is a superset of Aeraki's MetaRouter (metaprotocol.aeraki.io/v1alpha1) with the
// same JSON field names, so an Aeraki manifest decodes into these types unchanged. The
// additions are per-route timeout and retries, presence matches and inverted matches.
//
// Everything checkable on a single object is validated by the API server through OpenAPI
// constraints and CEL rules (x-kubernetes-validations) generated from the markers here; what
// needs other objects (destinations that exist, subsets that are defined) is reported in the
// status conditions by the controller.
//
// +kubebuilder:object:generate=true
// +groupName=metaprotocol.meltemi.io
package v1alpha1
