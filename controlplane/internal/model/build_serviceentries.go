package model

import (
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	networkingapi "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// workload is a ServiceEntry endpoint or a WorkloadEntry, with an address known to be an IP.
type workload struct {
	ip     netip.Addr
	spec   *networkingapi.WorkloadEntry
	labels map[string]string
}

// buildServiceEntries adds a Service per host of each ServiceEntry that has a Meltemi port.
//
// Endpoints are spec.endpoints, or with spec.workloadSelector the WorkloadEntries of the
// namespace whose labels (spec.labels over metadata.labels) it selects; Pods are not
// selected (Build has their labels only). Only IP addresses are usable: the plugin dials
// ip:port and resolves no names, so a hostname or unix address is a Problem and skipped, and
// so is a DNS-resolved entry without endpoints (its hosts would be resolved). Wildcard hosts
// are unsupported. A host that is already a service (a Kubernetes Service's hostname, or an
// older ServiceEntry's host) is a conflict the older object wins.
func (b *builder) buildServiceEntries() {
	if len(b.in.ServiceEntries) == 0 {
		return
	}
	var wesByNs map[string][]*networkingv1.WorkloadEntry
	for _, we := range sortedCopy(b.in.WorkloadEntries, func(x, y *networkingv1.WorkloadEntry) int {
		return byName(&x.ObjectMeta, &y.ObjectMeta)
	}) {
		if wesByNs == nil {
			wesByNs = make(map[string][]*networkingv1.WorkloadEntry)
		}
		wesByNs[we.Namespace] = append(wesByNs[we.Namespace], we)
	}
	for _, se := range sortedCopy(b.in.ServiceEntries, func(x, y *networkingv1.ServiceEntry) int {
		return olderFirst(&x.ObjectMeta, &y.ObjectMeta)
	}) {
		ref := b.ref(GroupIstio, KindServiceEntry, &se.ObjectMeta)
		spec := &se.Spec
		var sePorts []*networkingapi.ServicePort
		var ports []Port
		for _, sp := range spec.Ports {
			proto, codec, ok := b.protocols.PortProtocol(sp.Name, "")
			if !ok {
				continue
			}
			if codec == "" {
				b.notAccepted(ref, ReasonUnknownProtocol, "port %d (name %q) names protocol %q, which no ApplicationProtocol declares", sp.Number, sp.Name, proto)
				continue
			}
			sePorts = append(sePorts, sp)
			ports = append(ports, Port{Number: sp.Number, Name: sp.Name, Protocol: proto, Codec: codec})
		}
		if len(ports) == 0 {
			continue
		}

		var workloads []workload
		if spec.WorkloadSelector != nil {
			sel := labels.SelectorFromSet(spec.WorkloadSelector.Labels)
			for _, we := range wesByNs[se.Namespace] {
				ls := weLabels(we)
				if !sel.Matches(labels.Set(ls)) {
					continue
				}
				if w, ok := b.workload(ref, &we.Spec, ls, "WorkloadEntry "+we.Name); ok {
					workloads = append(workloads, w)
				}
			}
		} else {
			for i, e := range spec.Endpoints {
				if w, ok := b.workload(ref, e, e.Labels, "spec.endpoints["+strconv.Itoa(i)+"]"); ok {
					workloads = append(workloads, w)
				}
			}
		}
		dns := spec.Resolution == networkingapi.ServiceEntry_DNS || spec.Resolution == networkingapi.ServiceEntry_DNS_ROUND_ROBIN || spec.Resolution == networkingapi.ServiceEntry_DYNAMIC_DNS
		if dns && spec.WorkloadSelector == nil && len(spec.Endpoints) == 0 {
			b.notAccepted(ref, ReasonUnsupportedAddress, "resolution %s without endpoints resolves the hosts by DNS, which Meltemi does not do", spec.Resolution)
			continue
		}

		// Endpoints per port, shared by the hosts.
		endpoints := make([][]Endpoint, len(ports))
		for i, sp := range sePorts {
			eps := make([]Endpoint, 0, len(workloads))
			for _, w := range workloads {
				target := sp.TargetPort
				if t, ok := w.spec.Ports[sp.Name]; ok {
					target = t
				}
				if target == 0 {
					target = sp.Number
				}
				eps = append(eps, Endpoint{
					Address:  net.JoinHostPort(w.ip.String(), strconv.FormatUint(uint64(target), 10)),
					Labels:   w.labels,
					Weight:   w.spec.Weight,
					Locality: w.spec.Locality,
				})
			}
			endpoints[i] = sortEndpoints(eps)
		}

		for _, host := range spec.Hosts {
			host = strings.TrimSuffix(strings.ToLower(host), ".")
			if strings.Contains(host, "*") {
				b.notAccepted(ref, ReasonUnsupportedValue, "wildcard host %q: a Meltemi service needs an exact host", host)
				continue
			}
			if existing, ok := b.services[host]; ok {
				if existing.Source == ref {
					continue // the host is listed twice
				}
				b.notAccepted(ref, ReasonConflicted, "host %q is already defined by the older %s", host, existing.Source)
				continue
			}
			svc := &Service{
				Hostname:  host,
				Namespace: se.Namespace,
				Addresses: seAddresses(se),
				ExportTo:  spec.ExportTo,
				Ports:     make([]*Port, len(ports)),
				Source:    ref,
			}
			for i := range ports {
				p := ports[i]
				p.Endpoints = endpoints[i]
				svc.Ports[i] = &p
			}
			slices.SortStableFunc(svc.Ports, func(x, y *Port) int { return cmp.Compare(x.Number, y.Number) })
			svc.Ports = slices.CompactFunc(svc.Ports, func(x, y *Port) bool { return x.Number == y.Number })
			b.services[host] = svc
		}
	}
}

// AnnotationVIP is the annotation in which the controller (in Istio mode) records the virtual
// IP it allocated to a ServiceEntry without spec.addresses.
const AnnotationVIP = "meltemi.io/vip"

// seAddresses are a ServiceEntry's spec.addresses or, when it has none, the VIP the controller
// allocated to it (annotation meltemi.io/vip): the controller writes both, but reading the
// annotation keeps the VIP even when spec.addresses is lost (a client that round-trips the
// object through older Istio types) or not yet written.
func seAddresses(se *networkingv1.ServiceEntry) []string {
	if len(se.Spec.Addresses) > 0 {
		return se.Spec.Addresses
	}
	if v := strings.TrimSpace(se.Annotations[AnnotationVIP]); v != "" {
		if ip, err := netip.ParseAddr(v); err == nil {
			return []string{ip.String()}
		}
	}
	return nil
}

// workload checks an endpoint's address; what names it in problems.
func (b *builder) workload(ref ObjectRef, spec *networkingapi.WorkloadEntry, ls map[string]string, what string) (workload, bool) {
	ip, err := netip.ParseAddr(spec.Address)
	if err != nil {
		b.notAccepted(ref, ReasonUnsupportedAddress, "%s: address %q is not an IP address; the plugin resolves no names", what, spec.Address)
		return workload{}, false
	}
	return workload{ip: ip.Unmap(), spec: spec, labels: ls}, true
}

// weLabels are a WorkloadEntry's labels: spec.labels, plus metadata.labels it does not set.
func weLabels(we *networkingv1.WorkloadEntry) map[string]string {
	if len(we.Labels) == 0 {
		return we.Spec.Labels
	}
	if len(we.Spec.Labels) == 0 {
		return we.Labels
	}
	ls := make(map[string]string, len(we.Labels)+len(we.Spec.Labels))
	for k, v := range we.Labels {
		ls[k] = v
	}
	for k, v := range we.Spec.Labels {
		ls[k] = v
	}
	return ls
}
