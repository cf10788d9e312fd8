package model

import (
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

// Inputs are the objects a source collected. Istio objects of any served version
// (v1alpha3, v1beta1, v1) are held as v1: their schemas are the same. Aeraki MetaRouters
// (metaprotocol.aeraki.io) are held as MetaRouter with their own apiVersion in TypeMeta, which
// is how Build tells them from ours.
type Inputs struct {
	MetaRouters          []*v1alpha1.MetaRouter
	ApplicationProtocols []*v1alpha1.ApplicationProtocol

	Services       []*corev1.Service
	EndpointSlices []*discoveryv1.EndpointSlice
	// Pods are metadata only: their labels are the labels of the endpoints that point at them
	// (EndpointSlice targetRef).
	Pods []*metav1.PartialObjectMetadata

	ServiceEntries   []*networkingv1.ServiceEntry
	WorkloadEntries  []*networkingv1.WorkloadEntry
	DestinationRules []*networkingv1.DestinationRule

	// DomainSuffix is the cluster's DNS domain; "" means "cluster.local".
	DomainSuffix string

	// Files maps objects read by the file source to their file ("Kind/namespace/name" ->
	// path), for problems and logs. nil for the Kubernetes source.
	Files map[string]string
}
