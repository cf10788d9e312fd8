package model

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

// Reasons of the problems Build finds. Conditions are v1alpha1's (Accepted for an object
// that is invalid, unsupported or loses a conflict; ResolvedRefs for a reference to
// something that does not exist).
const (
	// ReasonUnknownProtocol: a port names a metaprotocol no ApplicationProtocol declares.
	ReasonUnknownProtocol = "UnknownProtocol"
	// ReasonUnsupportedAddress: an endpoint address that is not an IP (the plugin dials
	// ip:port and resolves no names).
	ReasonUnsupportedAddress = "UnsupportedAddress"
	// ReasonUnsupportedValue: a field value Meltemi does not implement; it is ignored.
	ReasonUnsupportedValue = "UnsupportedValue"
	// ReasonInvalid: an object that is invalid on its own.
	ReasonInvalid = "Invalid"
	// ReasonConflicted: another, older object already configures the same thing.
	ReasonConflicted = "Conflicted"
	// ReasonHostNotFound: a MetaRouter host is no Meltemi service.
	ReasonHostNotFound = "HostNotFound"
	// ReasonBackendNotFound: a destination host is no Meltemi service.
	ReasonBackendNotFound = "BackendNotFound"
	// ReasonSubsetNotFound: a destination subset no DestinationRule defines.
	ReasonSubsetNotFound = "SubsetNotFound"
	// ReasonPortNotFound: a destination port the service does not have (as a Meltemi port).
	ReasonPortNotFound = "PortNotFound"
)

// API groups and kinds of the objects Build reads, as ObjectRef names them.
const (
	GroupMeltemi = "metaprotocol.meltemi.io"
	GroupAeraki  = "metaprotocol.aeraki.io"
	GroupIstio   = "networking.istio.io"

	KindMetaRouter          = "MetaRouter"
	KindApplicationProtocol = "ApplicationProtocol"
	KindService             = "Service"
	KindServiceEntry        = "ServiceEntry"
	KindDestinationRule     = "DestinationRule"
)

// Build resolves Inputs into a Model. It is pure and deterministic: the order of the input
// slices does not matter, and the same inputs give a deep-equal Model. It never fails;
// everything wrong becomes a Problem and the rest is still built.
//
// Services come from Kubernetes Services (build_services.go) and ServiceEntries
// (build_serviceentries.go); a hostname claimed by both is the Kubernetes Service's. Then
// DestinationRules attach subsets and policies (build_destinationrules.go) and MetaRouters are
// resolved against the services (build_routers.go).
//
// Build does not copy the label maps of Pods, WorkloadEntries and subsets, nor the
// ServiceEntry Addresses and ExportTo slices: the Model shares them with Inputs, and neither
// may be modified. Of MetaRouter specs, Build copies what it rewrites (hosts and
// destinations) and shares the rest (matches, mutations, rate limits) likewise.
func Build(in *Inputs) *Model {
	b := &builder{
		in:       in,
		suffix:   in.DomainSuffix,
		services: make(map[string]*Service, len(in.Services)+len(in.ServiceEntries)),
	}
	if b.suffix == "" {
		b.suffix = "cluster.local"
	}
	b.protocols = b.buildProtocols()
	b.buildKubeServices()
	b.buildServiceEntries()
	b.buildDestinationRules()
	routers := b.buildRouters()

	m := &Model{Routers: routers}
	m.Services = make([]*Service, 0, len(b.services))
	for _, s := range b.services {
		m.Services = append(m.Services, s)
	}
	slices.SortFunc(m.Services, func(a, b *Service) int { return strings.Compare(a.Hostname, b.Hostname) })
	m.Problems = SortProblems(b.problems)
	m.ApplicationProtocols = b.appProtocols
	slices.SortFunc(m.ApplicationProtocols, CompareRefs)
	return m
}

type builder struct {
	appProtocols []ObjectRef
	in           *Inputs
	suffix       string
	protocols    Protocols
	// services by hostname.
	services map[string]*Service
	problems []Problem
	// fqdns caches fqdn by namespace and host.
	fqdns map[nsName]string
}

func (b *builder) problem(obj ObjectRef, condition, reason, format string, args ...any) {
	b.problems = append(b.problems, Problem{
		Object: obj, Condition: condition, Reason: reason, Message: fmt.Sprintf(format, args...),
	})
}

func (b *builder) notAccepted(obj ObjectRef, reason, format string, args ...any) {
	b.problem(obj, v1alpha1.ConditionAccepted, reason, format, args...)
}

// ref names an object, with its file when the file source read it.
func (b *builder) ref(group, kind string, meta *metav1.ObjectMeta) ObjectRef {
	r := ObjectRef{Group: group, Kind: kind, Namespace: meta.Namespace, Name: meta.Name, Generation: meta.Generation}
	if b.in.Files != nil {
		r.File = b.in.Files[kind+"/"+meta.Namespace+"/"+meta.Name]
	}
	return r
}

// fqdn makes a host fully qualified relative to a namespace: "foo" is
// foo.<namespace>.svc.<suffix>, "foo.bar" foo.bar.svc.<suffix>, "foo.bar.svc"
// foo.bar.svc.<suffix>; anything else is taken as it is (lower-cased, without a final dot).
func (b *builder) fqdn(host, namespace string) string {
	// Routers name the same few hosts again and again: remember the answers.
	k := nsName{namespace, host}
	if f, ok := b.fqdns[k]; ok {
		return f
	}
	f := b.qualify(host, namespace)
	if b.fqdns == nil {
		b.fqdns = make(map[nsName]string)
	}
	b.fqdns[k] = f
	return f
}

func (b *builder) qualify(host, namespace string) string {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	switch strings.Count(host, ".") {
	case 0:
		return host + "." + namespace + ".svc." + b.suffix
	case 1:
		return host + ".svc." + b.suffix
	case 2:
		if strings.HasSuffix(host, ".svc") {
			return host + "." + b.suffix
		}
	}
	return host
}

// olderFirst orders objects by creation time, oldest first; ties (and the file source, whose
// objects have none) fall back to namespace/name.
func olderFirst(a, b *metav1.ObjectMeta) int {
	if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
		return c
	}
	return byName(a, b)
}

func byName(a, b *metav1.ObjectMeta) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}

// SortProblems sorts problems by object, condition, reason and message, and drops
// duplicates (the same section of a policy may be converted for several ports): the order
// in which the controller reports problems.
func SortProblems(ps []Problem) []Problem {
	slices.SortFunc(ps, func(a, b Problem) int {
		return cmp.Or(
			CompareRefs(a.Object, b.Object),
			strings.Compare(a.Condition, b.Condition),
			strings.Compare(a.Reason, b.Reason),
			strings.Compare(a.Message, b.Message),
		)
	})
	return slices.Compact(ps)
}

// sortedCopy returns the objects sorted by cmp, leaving the caller's slice alone.
func sortedCopy[T any](objs []T, cmp func(a, b T) int) []T {
	s := slices.Clone(objs)
	slices.SortFunc(s, cmp)
	return s
}
