// Package model is the controller's view of the mesh, independent of where it came from:
// the services that speak a Meltemi protocol with their ports, endpoints and traffic policy,
// and the MetaRouters that route their requests. Sources (Kubernetes informers, a directory
// of YAML files) collect Kubernetes and Istio objects into Inputs; Build turns Inputs into a
// Model; the translator turns a Model into xDS resources. Build and everything in this
// package are pure: same Inputs, same Model.
package model

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
)

// Model is the resolved mesh. Slices are sorted (services by hostname, routers by
// namespace/name) so that translation is deterministic.
type Model struct {
	Services []*Service
	Routers  []*Router
	// Problems found while building: unresolvable references, invalid objects. Each names the
	// object it concerns so that a source can write it into that object's status.
	Problems []Problem
	// ApplicationProtocols are every ApplicationProtocol read, in effect or not (sorted):
	// they produce no xDS resource of their own, yet each gets a status.
	ApplicationProtocols []ObjectRef
}

// Service is one service that speaks a Meltemi protocol on at least one port: a Kubernetes
// Service or an Istio ServiceEntry host.
type Service struct {
	// Hostname is the fully qualified name clients use: name.namespace.svc.<domain> for a
	// Kubernetes Service, the host of a ServiceEntry.
	Hostname  string
	Namespace string
	// Addresses are the service's virtual IPs (ClusterIP, ServiceEntry addresses); may be
	// empty.
	Addresses []string
	// ExportTo is the visibility of the service (Istio semantics: "." own namespace, "*" all,
	// or namespace names). Empty means "*".
	ExportTo []string
	// Ports are the Meltemi ports only, sorted by number.
	Ports []*Port
	// Subsets and TrafficPolicy come from the DestinationRule for Hostname, if any.
	Subsets       []Subset
	TrafficPolicy *TrafficPolicy
	// DestinationRule is the object Subsets and TrafficPolicy came from; nil if none.
	DestinationRule *ObjectRef
	// Source is the object the service came from.
	Source ObjectRef
}

// Port is a service port that speaks a Meltemi protocol.
type Port struct {
	Number uint32
	Name   string
	// Protocol is the application protocol ("dubbo", "thrift", or one an ApplicationProtocol
	// declares); Codec the name of the plugin codec that speaks it.
	Protocol string
	Codec    string
	// Endpoints serve this port, sorted by address.
	Endpoints []Endpoint
	// TrafficPolicy is the service's policy for this port when the DestinationRule has
	// portLevelSettings for it (they replace the top-level policy, as in Istio); nil means
	// Service.TrafficPolicy. Service.Policy combines the levels.
	TrafficPolicy *TrafficPolicy
}

// Endpoint is one server of a port.
type Endpoint struct {
	// Address is "ip:port" (the target port, not the service port).
	Address string
	// Labels are the labels of the workload (Pod, WorkloadEntry, ServiceEntry endpoint),
	// which subsets select on.
	Labels map[string]string
	// Weight is the load-balancing weight; 0 means 1.
	Weight uint32
	// Locality is "region/zone/subzone", possibly empty. Endpoints from an EndpointSlice
	// know only their zone: "/zone".
	Locality string
}

// Subset is a named group of a service's endpoints (DestinationRule subsets).
type Subset struct {
	Name   string
	Labels map[string]string
	// TrafficPolicy overrides the service's policy for this subset; nil means inherit. It is
	// already merged: the service's policy with the sections (load balancer, connection pool,
	// outlier detection) the subset sets replaced.
	TrafficPolicy *TrafficPolicy
	// PortTrafficPolicies are the subset's merged policies for the ports that have
	// port-level settings (the DestinationRule's or the subset's); absent ports use
	// TrafficPolicy. Set only when the subset has a traffic policy of its own.
	PortTrafficPolicies map[uint32]*TrafficPolicy
}

// LBPolicy is a load-balancing policy.
type LBPolicy string

// Load-balancing policies, named as the plugin's API names them.
const (
	LBRoundRobin   LBPolicy = "ROUND_ROBIN"
	LBLeastRequest LBPolicy = "LEAST_REQUEST"
	LBRandom       LBPolicy = "RANDOM"
	LBRingHash     LBPolicy = "RING_HASH"
	LBMaglev       LBPolicy = "MAGLEV"
)

// TrafficPolicy is the part of an Istio DestinationRule traffic policy that applies to
// Meltemi clusters. Zero fields mean the plugin's defaults.
type TrafficPolicy struct {
	LB LBPolicy
	// HashKeys are the request attributes hashed by RING_HASH and MAGLEV (the
	// DestinationRule's consistentHash.httpHeaderName names one).
	HashKeys []string
	// RingMinSize / MaglevTableSize tune the hashing policies.
	RingMinSize     uint64
	MaglevTableSize uint64

	ConnectTimeout     time.Duration
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
	MaxRetries         uint32

	OutlierDetection *OutlierDetection
}

// OutlierDetection ejects endpoints that keep failing (DestinationRule outlierDetection).
type OutlierDetection struct {
	ConsecutiveErrors   uint32 // consecutive5xxErrors / consecutiveErrors
	ConsecutiveGateway  uint32 // consecutiveGatewayErrors
	Interval            time.Duration
	BaseEjectionTime    time.Duration
	MaxEjectionPercent  uint32
	MinHealthPercent    uint32
	SplitExternalLocal  bool
	ConsecutiveLocalErr uint32
}

// Service returns the service with the hostname, or nil. Services must be sorted (Build
// sorts them).
func (m *Model) Service(hostname string) *Service {
	i, ok := slices.BinarySearchFunc(m.Services, hostname, func(s *Service, h string) int {
		return strings.Compare(s.Hostname, h)
	})
	if !ok {
		return nil
	}
	return m.Services[i]
}

// Port returns the Meltemi port with the number, or nil.
func (s *Service) Port(number uint32) *Port {
	for _, p := range s.Ports {
		if p.Number == number {
			return p
		}
	}
	return nil
}

// Subset returns the subset with the name, or nil.
func (s *Service) Subset(name string) *Subset {
	for i := range s.Subsets {
		if s.Subsets[i].Name == name {
			return &s.Subsets[i]
		}
	}
	return nil
}

// Policy returns the traffic policy of the cluster for a port and a subset ("" for all
// endpoints): the most specific of the subset's port-level, the subset's, the port's and the
// service's policies, each already merged with the levels above it. nil means defaults.
func (s *Service) Policy(port uint32, subset string) *TrafficPolicy {
	if subset != "" {
		if ss := s.Subset(subset); ss != nil {
			if tp, ok := ss.PortTrafficPolicies[port]; ok {
				return tp
			}
			if ss.TrafficPolicy != nil {
				return ss.TrafficPolicy
			}
		}
	}
	if p := s.Port(port); p != nil && p.TrafficPolicy != nil {
		return p.TrafficPolicy
	}
	return s.TrafficPolicy
}

// Router is a MetaRouter (ours or Aeraki's), with hosts and destination hosts made fully
// qualified.
type Router struct {
	Source ObjectRef
	Spec   v1alpha1.MetaRouterSpec
}

// ObjectRef names the object something came from, for status and logs.
type ObjectRef struct {
	Group      string // "" for core objects
	Kind       string
	Namespace  string
	Name       string
	Generation int64
	// File is the file the object was read from (file source only).
	File string
}

// GroupKind returns the object's group and kind.
func (r ObjectRef) GroupKind() schema.GroupKind {
	return schema.GroupKind{Group: r.Group, Kind: r.Kind}
}

// String is "Kind namespace/name", for logs.
func (r ObjectRef) String() string {
	s := r.Kind + " " + r.Namespace + "/" + r.Name
	if r.File != "" {
		s += " (" + r.File + ")"
	}
	return s
}

// CompareRefs orders object references by group, kind, namespace, name, generation and
// file: the one order in which everything the controller reports is sorted.
func CompareRefs(a, b ObjectRef) int {
	return cmp.Or(
		cmp.Compare(a.Group, b.Group),
		cmp.Compare(a.Kind, b.Kind),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name),
		cmp.Compare(a.Generation, b.Generation),
		cmp.Compare(a.File, b.File),
	)
}

// Problem is something wrong with one object that Build or the translator found.
type Problem struct {
	Object ObjectRef
	// Condition is the status condition it sets False (Accepted, ResolvedRefs, Programmed),
	// Reason a CamelCase reason, Message the detail.
	Condition string
	Reason    string
	Message   string
}
