package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// ApplicationProtocol registers a protocol name, as used in Service port names
// (tcp-metaprotocol-<protocol>) and appProtocol, to the codec that speaks it. The dubbo and
// thrift protocols are built in and need no ApplicationProtocol.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="Protocol",type=string,JSONPath=`.spec.protocol`
// +kubebuilder:printcolumn:name="Codec",type=string,JSONPath=`.spec.codec`
// +kubebuilder:printcolumn:name="Accepted",type=string,JSONPath=`.status.conditions[?(@.type=="Accepted")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ApplicationProtocol struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec ApplicationProtocolSpec `json:"spec"`
	// +optional
	Status Status `json:"status,omitempty"`
}

// ApplicationProtocolSpec maps a protocol name to a codec name.
type ApplicationProtocolSpec struct {
	// Protocol is the protocol name, a DNS label.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Protocol string `json:"protocol"`

	// Codec is the name of a codec compiled into the plugin.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Codec string `json:"codec"`
}

// ApplicationProtocolList is a list of ApplicationProtocol.
//
// +kubebuilder:object:root=true
type ApplicationProtocolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ApplicationProtocol `json:"items"`
}
