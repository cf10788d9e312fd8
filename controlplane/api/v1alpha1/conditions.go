package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Condition types written by the controller in the status of MetaRouter and
// ApplicationProtocol. They follow the Gateway API's meaning so that tools reading those read
// ours the same way.
const (
	// ConditionAccepted is True when the object is valid on its own and is part of the
	// configuration.
	ConditionAccepted = "Accepted"
	// ConditionResolvedRefs is True when every object it refers to (destination hosts,
	// subsets, codecs) exists.
	ConditionResolvedRefs = "ResolvedRefs"
	// ConditionProgrammed is True when the configuration derived from it was acknowledged by
	// the data plane (an xDS ACK); False with the NACK's message otherwise.
	ConditionProgrammed = "Programmed"
)

// Status is what the controller reports about an object it read.
type Status struct {
	// ObservedGeneration is the metadata.generation the conditions describe.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions are Accepted, ResolvedRefs and Programmed.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// EnvoyFilters are the Istio EnvoyFilters ("namespace/name") the controller wrote to
	// program the object into Istio sidecars (Istio mode only).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=256
	EnvoyFilters []string `json:"envoyFilters,omitempty"`
}
