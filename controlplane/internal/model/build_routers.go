package model

import (
	"cmp"
	"slices"
	"strings"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

// routerGroup is the API group of a MetaRouter, from its apiVersion: ours when unset.
func routerGroup(mr *v1alpha1.MetaRouter) string {
	group, _, ok := strings.Cut(mr.APIVersion, "/")
	if !ok || group == "" {
		return GroupMeltemi
	}
	return group
}

// groupRank puts ours before Aeraki's when two routers are otherwise equally old.
func groupRank(group string) int {
	if group == GroupMeltemi {
		return 0
	}
	return 1
}

// buildRouters resolves the MetaRouters, ours and Aeraki's alike: hosts and destination hosts
// are made fully qualified relative to the router's namespace, then checked against the
// services.
//
// A host may have one router. Of two routers that share a host the oldest (creation time,
// then ours before Aeraki's, then namespace/name) wins; the other is not accepted and is
// left out of the Model entirely (all its hosts: dropping only the shared one would change
// which host is first, the one the routes apply to).
//
// A router whose hosts or destinations do not resolve (HostNotFound, BackendNotFound,
// SubsetNotFound, PortNotFound) stays in the Model: it takes effect when what it names
// appears, and the translator skips what does not exist. spec.gateways is accepted and
// ignored: Meltemi configures sidecars' and gateways' plugins alike, by the hosts.
func (b *builder) buildRouters() []*Router {
	type entry struct {
		mr  *v1alpha1.MetaRouter
		ref ObjectRef
	}
	entries := make([]entry, len(b.in.MetaRouters))
	for i, mr := range b.in.MetaRouters {
		entries[i] = entry{mr, b.ref(routerGroup(mr), KindMetaRouter, &mr.ObjectMeta)}
	}
	slices.SortFunc(entries, func(x, y entry) int {
		if c := x.mr.CreationTimestamp.Compare(y.mr.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Or(
			cmp.Compare(groupRank(x.ref.Group), groupRank(y.ref.Group)),
			strings.Compare(x.ref.Group, y.ref.Group),
			byName(&x.mr.ObjectMeta, &y.mr.ObjectMeta),
		)
	})

	owner := make(map[string]ObjectRef, len(entries))
	routers := make([]*Router, 0, len(entries))
	for _, e := range entries {
		ns := e.mr.Namespace
		if len(e.mr.Spec.Hosts) == 0 {
			b.notAccepted(e.ref, ReasonInvalid, "spec.hosts is empty")
			continue
		}
		spec := copyHosts(&e.mr.Spec)
		conflict := false
		for i, h := range spec.Hosts {
			spec.Hosts[i] = b.fqdn(h, ns)
			if w, ok := owner[spec.Hosts[i]]; ok && w != e.ref {
				b.notAccepted(e.ref, ReasonConflicted, "host %q is already routed by the older %s", spec.Hosts[i], w)
				conflict = true
			}
		}
		if conflict {
			continue
		}
		for _, h := range spec.Hosts {
			owner[h] = e.ref
			if b.services[h] == nil {
				b.problem(e.ref, v1alpha1.ConditionResolvedRefs, ReasonHostNotFound, "host %q is not a service with a Meltemi port", h)
			}
		}
		for i := range spec.Routes {
			r := &spec.Routes[i]
			for j := range r.Route {
				b.resolveDestination(e.ref, ns, &r.Route[j].Destination)
			}
			if r.Mirror != nil {
				b.resolveDestination(e.ref, ns, r.Mirror)
			}
		}
		routers = append(routers, &Router{Source: e.ref, Spec: *spec})
	}
	slices.SortFunc(routers, func(x, y *Router) int {
		return cmp.Or(
			strings.Compare(x.Source.Namespace, y.Source.Namespace),
			strings.Compare(x.Source.Name, y.Source.Name),
			strings.Compare(x.Source.Group, y.Source.Group),
		)
	})
	return routers
}

// resolveDestination makes d's host fully qualified and reports what it names that does
// not exist.
func (b *builder) resolveDestination(ref ObjectRef, ns string, d *v1alpha1.Destination) {
	d.Host = b.fqdn(d.Host, ns)
	svc := b.services[d.Host]
	if svc == nil {
		b.problem(ref, v1alpha1.ConditionResolvedRefs, ReasonBackendNotFound, "destination host %q is not a service with a Meltemi port", d.Host)
		return
	}
	if d.Subset != "" && svc.Subset(d.Subset) == nil {
		b.problem(ref, v1alpha1.ConditionResolvedRefs, ReasonSubsetNotFound, "destination host %q has no subset %q (DestinationRule subsets)", d.Host, d.Subset)
	}
	if d.Port != nil && (d.Port.Number <= 0 || svc.Port(uint32(d.Port.Number)) == nil) {
		b.problem(ref, v1alpha1.ConditionResolvedRefs, ReasonPortNotFound, "destination host %q has no Meltemi port %d", d.Host, d.Port.Number)
	}
}

// copyHosts copies what Build rewrites in a spec (hosts and destinations); the rest
// (matches, mutations, rate limits) is shared with the input.
func copyHosts(in *v1alpha1.MetaRouterSpec) *v1alpha1.MetaRouterSpec {
	spec := *in
	spec.Hosts = slices.Clone(in.Hosts)
	spec.Routes = slices.Clone(in.Routes)
	for i := range spec.Routes {
		r := &spec.Routes[i]
		r.Route = slices.Clone(r.Route)
		if r.Mirror != nil {
			m := *r.Mirror
			r.Mirror = &m
		}
	}
	return &spec
}
