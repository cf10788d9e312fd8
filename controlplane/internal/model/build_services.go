package model

import (
	"cmp"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// annotationExportTo is Istio's annotation for the visibility of a Kubernetes Service.
const annotationExportTo = "networking.istio.io/exportTo"

type nsName struct{ namespace, name string }

// buildKubeServices adds the Kubernetes Services that have a Meltemi port, with the
// endpoints of their EndpointSlices.
//
// An endpoint is used when it is ready (unset counts as ready) and serving (unset: as
// ready); its address family must be the service's primary one (so that a dual-stack pod
// is one endpoint, not two); FQDN slices are ignored. An endpoint's labels are those of the
// Pod its targetRef names (none if the Pod is unknown); its locality is "/<zone>" (slices
// carry no region).
func (b *builder) buildKubeServices() {
	if len(b.in.Services) == 0 {
		return
	}
	slicesOf := make(map[nsName][]*discoveryv1.EndpointSlice, len(b.in.Services))
	for _, es := range sortedCopy(b.in.EndpointSlices, func(x, y *discoveryv1.EndpointSlice) int {
		return byName(&x.ObjectMeta, &y.ObjectMeta)
	}) {
		svc := es.Labels[discoveryv1.LabelServiceName]
		if svc == "" || (es.AddressType != discoveryv1.AddressTypeIPv4 && es.AddressType != discoveryv1.AddressTypeIPv6) {
			continue
		}
		k := nsName{es.Namespace, svc}
		slicesOf[k] = append(slicesOf[k], es)
	}
	podLabels := make(map[nsName]map[string]string, len(b.in.Pods))
	for _, p := range b.in.Pods {
		podLabels[nsName{p.Namespace, p.Name}] = p.Labels
	}

	for _, ks := range b.in.Services {
		ref := b.ref("", KindService, &ks.ObjectMeta)
		var ports []*Port
		for i := range ks.Spec.Ports {
			sp := &ks.Spec.Ports[i]
			proto, codec, ok := b.protocols.PortProtocol(sp.Name, deref(sp.AppProtocol))
			if !ok {
				continue
			}
			if codec == "" {
				b.notAccepted(ref, ReasonUnknownProtocol, "port %d (%s) names protocol %q, which no ApplicationProtocol declares", sp.Port, portLabel(sp), proto)
				continue
			}
			ports = append(ports, &Port{Number: uint32(sp.Port), Name: sp.Name, Protocol: proto, Codec: codec})
		}
		if len(ports) == 0 {
			continue
		}
		if ks.Spec.Type == corev1.ServiceTypeExternalName {
			b.notAccepted(ref, ReasonUnsupportedAddress, "an ExternalName service is resolved by DNS, which Meltemi does not do")
			continue
		}
		svc := &Service{
			Hostname:  ks.Name + "." + ks.Namespace + ".svc." + b.suffix,
			Namespace: ks.Namespace,
			Addresses: clusterIPs(&ks.Spec),
			ExportTo:  exportToAnnotation(ks.Annotations),
			Ports:     ports,
			Source:    ref,
		}
		var family discoveryv1.AddressType
		if len(ks.Spec.IPFamilies) > 0 {
			family = discoveryv1.AddressType(ks.Spec.IPFamilies[0])
		}
		for _, es := range slicesOf[nsName{ks.Namespace, ks.Name}] {
			if family != "" && es.AddressType != family {
				continue
			}
			b.addSliceEndpoints(svc, es, podLabels)
		}
		for _, p := range ports {
			p.Endpoints = sortEndpoints(p.Endpoints)
		}
		slices.SortFunc(svc.Ports, func(x, y *Port) int { return cmp.Compare(x.Number, y.Number) })
		b.services[svc.Hostname] = svc
	}
}

func (b *builder) addSliceEndpoints(svc *Service, es *discoveryv1.EndpointSlice, podLabels map[nsName]map[string]string) {
	for _, p := range svc.Ports {
		// The slice's port for the service port: same name ("" for a single unnamed
		// port).
		target := int32(-1)
		for _, ep := range es.Ports {
			if deref(ep.Name) == p.Name && ep.Port != nil {
				target = *ep.Port
				break
			}
		}
		if target < 0 {
			continue
		}
		port := strconv.Itoa(int(target))
		if p.Endpoints == nil {
			p.Endpoints = make([]Endpoint, 0, len(es.Endpoints))
		}
		for i := range es.Endpoints {
			e := &es.Endpoints[i]
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			serving := ready
			if e.Conditions.Serving != nil {
				serving = *e.Conditions.Serving
			}
			if !ready || !serving {
				continue
			}
			var labels map[string]string
			if r := e.TargetRef; r != nil && (r.Kind == "Pod" || r.Kind == "") {
				ns := r.Namespace
				if ns == "" {
					ns = es.Namespace
				}
				labels = podLabels[nsName{ns, r.Name}]
			}
			var locality string
			if e.Zone != nil && *e.Zone != "" {
				locality = "/" + *e.Zone
			}
			for _, a := range e.Addresses {
				p.Endpoints = append(p.Endpoints, Endpoint{Address: net.JoinHostPort(a, port), Labels: labels, Locality: locality})
			}
		}
	}
}

// sortEndpoints sorts endpoints by address and keeps the first of each address (a pod may
// be in two slices while the slice controller moves it).
func sortEndpoints(eps []Endpoint) []Endpoint {
	slices.SortStableFunc(eps, func(x, y Endpoint) int { return strings.Compare(x.Address, y.Address) })
	return slices.CompactFunc(eps, func(x, y Endpoint) bool { return x.Address == y.Address })
}

func clusterIPs(spec *corev1.ServiceSpec) []string {
	ips := spec.ClusterIPs
	if len(ips) == 0 && spec.ClusterIP != "" {
		ips = []string{spec.ClusterIP}
	}
	var out []string
	for _, ip := range ips {
		if ip != "" && ip != corev1.ClusterIPNone {
			out = append(out, ip)
		}
	}
	return out
}

func exportToAnnotation(annotations map[string]string) []string {
	v, ok := annotations[annotationExportTo]
	if !ok {
		return nil
	}
	var out []string
	for e := range strings.SplitSeq(v, ",") {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	return out
}

func portLabel(sp *corev1.ServicePort) string {
	if sp.AppProtocol != nil {
		return "name " + strconv.Quote(sp.Name) + ", appProtocol " + strconv.Quote(*sp.AppProtocol)
	}
	return "name " + strconv.Quote(sp.Name)
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
