//go:build envtest

package envtest_test

import (
	"context"
	"testing"

	networkingapiv1 "istio.io/api/networking/v1"
	istionetworkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

const dubboPort = 20880

func host(svc, ns string) string { return svc + "." + ns + ".svc.cluster.local" }

// routeName is the route configuration of a service's Dubbo port.
func routeName(svc, ns string) string {
	return apiv1alpha1.ResourceName(apiv1alpha1.Outbound, dubboPort, "", host(svc, ns))
}

func clusterName(svc, ns, subset string) string {
	return apiv1alpha1.ResourceName(apiv1alpha1.Outbound, dubboPort, subset, host(svc, ns))
}

func create(t *testing.T, ctx context.Context, c client.Client, objs ...client.Object) {
	t.Helper()
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("create %T %s/%s: %v", o, o.GetNamespace(), o.GetName(), err)
		}
	}
}

func namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
}

// pod is a Pod that is never scheduled (envtest runs no scheduler or kubelet): only its
// labels matter, read through the metadata-only watch.
func pod(ns, name string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}}},
	}
}

// service is a Service with one Dubbo port, named by Aeraki's convention.
func service(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports: []corev1.ServicePort{{
				Name: "tcp-dubbo-20880", Port: dubboPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(dubboPort),
			}},
		},
	}
}

// endpointSlice is the slice of service svc with one ready endpoint per address, each
// pointing at the Pod of the same index in pods ("" for none).
func endpointSlice(ns, svc string, addrs, pods []string) *discoveryv1.EndpointSlice {
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: svc + "-1",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{
			Name: ptr.To("tcp-dubbo-20880"), Port: ptr.To[int32](dubboPort), Protocol: ptr.To(corev1.ProtocolTCP),
		}},
	}
	for i, a := range addrs {
		ep := discoveryv1.Endpoint{
			Addresses:  []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)},
		}
		if i < len(pods) && pods[i] != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pods[i]}
		}
		es.Endpoints = append(es.Endpoints, ep)
	}
	return es
}

// destinationRule defines one subset per version label value.
func destinationRule(ns, svc string, versions ...string) *istionetworkingv1.DestinationRule {
	dr := &istionetworkingv1.DestinationRule{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: svc}}
	dr.Spec.Host = host(svc, ns)
	for _, v := range versions {
		dr.Spec.Subsets = append(dr.Spec.Subsets, &networkingapiv1.Subset{Name: v, Labels: map[string]string{"version": v}})
	}
	return dr
}

// split is a MetaRouter route sending weights[i] percent to subsets[i] of host.
func split(name, host string, subsets []string, weights []int32) v1alpha1.MetaRoute {
	r := v1alpha1.MetaRoute{Name: name}
	for i, s := range subsets {
		r.Route = append(r.Route, v1alpha1.MetaRouteDestination{
			Destination: v1alpha1.Destination{Host: host, Subset: s}, Weight: weights[i],
		})
	}
	return r
}

func metaRouter(ns, name, host string, routes ...v1alpha1.MetaRoute) *v1alpha1.MetaRouter {
	return &v1alpha1.MetaRouter{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.MetaRouterSpec{Hosts: []string{host}, Routes: routes},
	}
}
