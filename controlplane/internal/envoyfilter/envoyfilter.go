// Package envoyfilter generates the Istio EnvoyFilters (networking.istio.io/v1alpha3) that
// put Meltemi's plugin into Istio sidecars: for each service port that speaks a Meltemi
// protocol, the golang network filter replaces tcp_proxy on the outbound listener of each of
// the service's VIPs (and, optionally, on the inbound filter chain of its target port), and
// the plainText cluster the plugin dials its upstreams through is added. Generate is pure:
// same Model and Options, same EnvoyFilters, in the same order, byte for byte once encoded.
// Writing them to the API server is someone else's job (the writer).
//
// Scope. Every EnvoyFilter has a workloadSelector on Options.WorkloadLabels, the label the
// plugin-carrying sidecar image sets, so a sidecar whose Envoy lacks the golang filter never
// receives config it cannot load (Aeraki #221/#339 crash-looped sidecars with root-namespace
// filters without a selector). Placement follows Istio's exportTo: a service visible to all
// namespaces (exportTo empty or "*") gets its filters in the config root namespace, which
// Istio applies to the selected workloads of every namespace; otherwise they go into each
// namespace the service is exported to ("." = its own). The MetaRouter of the host, when it
// sets exportTo, narrows that set (intersection), so that only clients that may see the
// routes get the filter. (A namespace list that names the root namespace reaches every
// namespace, as any root-namespace filter does; the outbound patches still only match where
// Istio built the `<VIP>_<port>` listener, i.e. where the service is visible.)
//
// Istio reads the patch values with the Envoy types it links, which include the contrib
// golang network filter's Config and the TypedStruct; the values are the proto JSON of those
// types (proto field names), so Istio, Envoy and this package's tests decode them strictly.
//
// Outbound. Istio names the outbound TCP listener of a service port `<VIP>_<port>` (IPv6
// VIPs without brackets). It builds one only for ports it sees as TCP: a Kubernetes Service
// port named tcp-<protocol>[-...] (Aeraki's convention) or with appProtocol tcp, a
// ServiceEntry port with protocol TCP; HTTP and auto-detected ports share a wildcard
// 0.0.0.0_<port> listener instead, where these filters match nothing. A service without an
// address has no such listener either: its traffic goes through the passthrough chain and
// no filter can catch it (Aeraki #171), so it gets a NoVIP problem instead of a filter (the
// controller allocates VIPs for ServiceEntries). Dual-stack Kubernetes services get a patch
// for each address: on Istio versions that put the second address into the first one's
// listener as an additional address, the patch of the second address matches nothing,
// which is harmless.
//
// Inbound. With Options.Inbound, the filter chain of virtualInbound whose destination port
// is a target port of the service port gets the plugin too, in the service's own namespace
// (where its workloads are), for the workloads that carry both the plugin label and every
// label all of the service's endpoints share (for a Kubernetes Service, typically its
// selector), so that another workload of the namespace serving a TCP port of the same
// number keeps its own chain. Endpoints that share no label (ServiceEntry endpoints without
// labels) leave only the plugin label: then two services of one namespace with the same
// target port both patch that port's chain on every plugin workload of the namespace (the
// first patch set replaces tcp_proxy, the second then matches nothing), and a service in the
// root namespace patches it mesh-wide.
//
// The controller serves no inbound route configurations over xDS yet, so the inbound filter
// carries its routes inline: one route to a cluster named "inbound|<port>||<host>" whose
// only endpoint is 127.0.0.1:<targetPort>, the local workload. The application must accept
// connections on the loopback address (one listening on 0.0.0.0 does; one bound to the pod
// IP only does not, and IPv6-only pods need a route configuration served over xDS, later).
// Server-side policy can then move to an "inbound|<port>||<host>" route configuration
// served over RDS without changing the EnvoyFilter's shape.
//
// plainText. The plugin dials every upstream through the cluster Envoy requires to be named
// plainText (ORIGINAL_DST, CLUSTER_PROVIDED). It is added once per namespace that holds one
// of our listener filters, in the SIDECAR_OUTBOUND context (Istio inserts added clusters
// once, with the outbound ones; when a workload gets it from two namespaces, Istio drops the
// duplicate name). Its transport socket is Options.PlainTextTransportSocket, plaintext when
// nil: the plugin's upstream connections then do not get Istio's ISTIO_MUTUAL transport
// socket, so servers must accept plaintext (PeerAuthentication PERMISSIVE or DISABLE on the
// Meltemi ports), unless the option sets a TLS transport socket. The inbound plugin dials
// the local workload through the same cluster, so a transport socket and inbound filters
// exclude each other: with a transport socket Generate writes no inbound filter
// (Options.InboundWritten tells the cmd, which can say so at startup).
package envoyfilter

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/golang/v3alpha"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	// The TLS transport socket is the one a PlainTextTransportSocket is expected to carry:
	// linking its type lets protojson encode it inside the cluster.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	apinetworking "istio.io/api/networking/v1alpha3"
	networkingv1alpha3 "istio.io/client-go/pkg/apis/networking/v1alpha3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// Names and values of what the EnvoyFilters contain.
const (
	// GolangFilterName is Envoy's name of the contrib golang network filter.
	GolangFilterName = "envoy.filters.network.golang"
	// GolangConfigTypeURL is the type of its typed_config.
	GolangConfigTypeURL = "type.googleapis.com/envoy.extensions.filters.network.golang.v3alpha.Config"
	// TCPProxyFilterName is the filter Istio puts on TCP listeners, which ours replaces.
	TCPProxyFilterName = "envoy.filters.network.tcp_proxy"
	// VirtualInboundListener is the name of Istio's inbound listener.
	VirtualInboundListener = "virtualInbound"
	// PlainTextClusterName is the cluster the golang filter dials upstreams through; Envoy
	// fixes the name.
	PlainTextClusterName = "plainText"
	// PlainTextFilterName is the EnvoyFilter that adds it, one per namespace.
	PlainTextFilterName = "meltemi-plaintext"
	// PluginName is the name the plugin registers its filter factory under.
	PluginName = "meltemi"
	// PlainTextConnectTimeout bounds Envoy's connect on the plainText cluster; the plugin's
	// per-cluster connect timeout (default 5s) applies within it.
	PlainTextConnectTimeout = 30 * time.Second

	// Priority orders our patch sets after Istio's and other default (priority 0) ones, so
	// that the listeners and filters they match exist when ours apply.
	Priority = 10

	// LabelManagedBy / ManagedBy mark everything the controller writes; the writer's
	// garbage collection selects on them.
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "meltemi-controller"
	// LabelOwner names the object a filter comes from: "<Kind>.<namespace>.<name>" (cut to
	// a label value's 63 characters with a hash suffix when longer). OwnerShared is the
	// owner of the plainText filters, which serve every service of their namespace.
	LabelOwner  = "meltemi.io/owner"
	OwnerShared = "meltemi-controller"

	// ReasonNoVIP: a service has no address, so Istio creates no `<VIP>_<port>` listener.
	ReasonNoVIP = "NoVIP"
	// ReasonNotExported: the MetaRouter's exportTo and the service's share no namespace.
	ReasonNotExported = "NotExported"
	// ReasonUnsupportedAddress: an address that is not an IP (a CIDR range) names no
	// listener.
	ReasonUnsupportedAddress = model.ReasonUnsupportedAddress
	// ReasonInvalidOptions: the options cannot be encoded (a transport socket whose type is
	// not linked into the controller); Options.Validate reports it at startup.
	ReasonInvalidOptions = "InvalidOptions"
)

// Defaults of Options.
const (
	DefaultRootNamespace = "istio-system"
	DefaultLibraryPath   = "/usr/local/lib/meltemi/meltemi.so"
	DefaultLibraryID     = "meltemi"
	DefaultXDSAddress    = "meltemi-controller.meltemi-system.svc:15010"
	DefaultWorkloadLabel = "meltemi.io/plugin"
	DefaultWorkloadValue = "enabled"
)

// Options configure Generate. Zero fields take the defaults above.
type Options struct {
	RootNamespace  string            // default "istio-system"
	WorkloadLabels map[string]string // default {"meltemi.io/plugin": "enabled"}
	LibraryPath    string            // default "/usr/local/lib/meltemi/meltemi.so"
	LibraryID      string            // default "meltemi"
	// XDSAddress is what the plugin in the sidecars dials for its routes, clusters and
	// endpoints; default "meltemi-controller.meltemi-system.svc:15010".
	XDSAddress string
	// PlainTextTransportSocket is the transport socket of the plainText cluster; nil:
	// plaintext.
	PlainTextTransportSocket *corev3.TransportSocket
	// Inbound also writes the inbound filters (the cmd turns it on by default). Ignored
	// when PlainTextTransportSocket is set (see the package documentation).
	Inbound bool
}

func (o Options) withDefaults() Options {
	if o.RootNamespace == "" {
		o.RootNamespace = DefaultRootNamespace
	}
	if len(o.WorkloadLabels) == 0 {
		o.WorkloadLabels = map[string]string{DefaultWorkloadLabel: DefaultWorkloadValue}
	}
	if o.LibraryPath == "" {
		o.LibraryPath = DefaultLibraryPath
	}
	if o.LibraryID == "" {
		o.LibraryID = DefaultLibraryID
	}
	if o.XDSAddress == "" {
		o.XDSAddress = DefaultXDSAddress
	}
	return o
}

// Result is what Generate produces.
type Result struct {
	// Filters are sorted by namespace/name.
	Filters []*networkingv1alpha3.EnvoyFilter
	// Origins maps "namespace/name" of a filter to the objects it programs, sorted and
	// unique: an outbound filter the Service/ServiceEntry and the MetaRouter of that host
	// (whose routes it fetches); an inbound filter the service only (its routes are
	// inline); a plainText filter everything the other filters of its namespace program.
	Origins  map[string][]model.ObjectRef
	Problems []model.Problem
}

// Generate returns the EnvoyFilters for the model's services.
func Generate(m *model.Model, opts Options) *Result {
	g := &generator{
		opts:    opts.withDefaults(),
		filters: map[string]*networkingv1alpha3.EnvoyFilter{},
		origins: map[string]map[model.ObjectRef]bool{},
		plain:   map[string]bool{},
	}
	// Without the plainText cluster the plugin cannot reach any upstream: if it cannot be
	// encoded (Options.Validate says so at startup), no filter is written at all.
	if m == nil {
		m = &model.Model{}
	}
	plainText, err := g.plainTextCluster()
	for _, s := range m.Services {
		if s == nil || len(s.Ports) == 0 {
			continue
		}
		if err != nil {
			g.problem(s.Source, ReasonInvalidOptions, "no EnvoyFilter is written: the plainText cluster: %v", err)
		}
	}
	if err != nil {
		return g.result()
	}
	routers := routersByHost(m.Routers)
	for _, s := range m.Services {
		if s == nil || len(s.Ports) == 0 {
			continue
		}
		g.service(s, routers[s.Hostname])
	}
	g.plainTextFilters(plainText)
	return g.result()
}

// InboundWritten reports whether Generate writes inbound filters: Inbound is set and no
// plainText transport socket is (the inbound plugin reaches the local workload, which
// speaks plaintext, through the same cluster).
func (o Options) InboundWritten() bool {
	return o.Inbound && o.PlainTextTransportSocket == nil
}

// Validate reports options that would make Generate write filters Istio or Envoy rejects:
// the cmd calls it at startup. Zero fields are valid (they take the defaults).
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	for _, msg := range validation.IsDNS1123Label(o.RootNamespace) {
		errs = append(errs, fmt.Errorf("root namespace %q: %s", o.RootNamespace, msg))
	}
	for k, v := range o.WorkloadLabels {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, fmt.Errorf("workload label key %q: %s", k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(v) {
			errs = append(errs, fmt.Errorf("workload label %s value %q: %s", k, v, msg))
		}
	}
	if host, port, err := net.SplitHostPort(o.XDSAddress); err != nil || host == "" || port == "" {
		errs = append(errs, fmt.Errorf("xDS address %q: want host:port", o.XDSAddress))
	}
	if ts := o.PlainTextTransportSocket; ts != nil {
		if ts.GetName() == "" || ts.GetTypedConfig() == nil {
			errs = append(errs, errors.New("plainText transport socket: name and typed_config are required"))
		}
	}
	if _, err := (&generator{opts: o}).plainTextCluster(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

type generator struct {
	opts     Options
	filters  map[string]*networkingv1alpha3.EnvoyFilter // by "namespace/name"
	origins  map[string]map[model.ObjectRef]bool
	plain    map[string]bool // namespaces that need the plainText cluster
	problems []model.Problem
}

// routersByHost picks the router of each host as the translator does: the first, in model
// order, whose first host it is.
func routersByHost(routers []*model.Router) map[string]*model.Router {
	byHost := make(map[string]*model.Router, len(routers))
	for _, r := range routers {
		if r == nil || len(r.Spec.Hosts) == 0 {
			continue
		}
		if _, ok := byHost[r.Spec.Hosts[0]]; !ok {
			byHost[r.Spec.Hosts[0]] = r
		}
	}
	return byHost
}

func (g *generator) problem(obj model.ObjectRef, reason, format string, args ...any) {
	g.problems = append(g.problems, model.Problem{
		Object: obj, Condition: v1alpha1.ConditionProgrammed, Reason: reason, Message: fmt.Sprintf(format, args...),
	})
}

func (g *generator) service(s *model.Service, r *model.Router) {
	origins := []model.ObjectRef{s.Source}
	if r != nil {
		origins = append(origins, r.Source)
	}

	vips := g.vips(s)
	if len(vips) == 0 {
		g.problem(s.Source, ReasonNoVIP, "%s", noVIPMessage(s))
	} else {
		namespaces, ok := g.placement(s, r)
		if !ok {
			g.problem(r.Source, ReasonNotExported,
				"the exportTo of the MetaRouter and of %s share no namespace: no sidecar gets the Meltemi filter for it", s.Hostname)
		}
		// The filter of a port is the same in every namespace and for every VIP: encode it
		// once (encoding dominates Generate's time), give each patch its own copy.
		values := make([]*structpb.Struct, len(s.Ports))
		if len(namespaces) > 0 {
			for i, p := range s.Ports {
				value, err := g.outboundFilter(s, p)
				if err != nil {
					g.problem(s.Source, ReasonInvalidOptions, "port %d: %v", p.Number, err)
					continue
				}
				values[i] = value
			}
		}
		for _, ns := range namespaces {
			var patches []*apinetworking.EnvoyFilter_EnvoyConfigObjectPatch
			for i, p := range s.Ports {
				if values[i] == nil {
					continue
				}
				for _, vip := range vips {
					patches = append(patches, listenerPatch(apinetworking.EnvoyFilter_SIDECAR_OUTBOUND,
						&apinetworking.EnvoyFilter_ListenerMatch{
							Name:        vip + "_" + strconv.FormatUint(uint64(p.Number), 10),
							FilterChain: &apinetworking.EnvoyFilter_ListenerMatch_FilterChainMatch{Filter: tcpProxyMatch()},
						}, proto.Clone(values[i]).(*structpb.Struct)))
				}
			}
			if g.add(ns, "meltemi-outbound-"+s.Hostname, ownerOf(s.Source), nil, patches, origins) {
				g.plain[ns] = true
			}
		}
	}

	// With a transport socket on plainText the inbound plugin's connections to the local
	// workload would speak TLS to it: the inbound filters are left out (InboundWritten).
	if g.opts.InboundWritten() {
		var patches []*apinetworking.EnvoyFilter_EnvoyConfigObjectPatch
		for _, p := range s.Ports {
			for _, tp := range targetPorts(p) {
				value, err := g.inboundFilter(s, p, tp)
				if err != nil {
					g.problem(s.Source, ReasonInvalidOptions, "port %d: %v", p.Number, err)
					continue
				}
				patches = append(patches, listenerPatch(apinetworking.EnvoyFilter_SIDECAR_INBOUND,
					&apinetworking.EnvoyFilter_ListenerMatch{
						Name: VirtualInboundListener,
						FilterChain: &apinetworking.EnvoyFilter_ListenerMatch_FilterChainMatch{
							DestinationPort: tp,
							Filter:          tcpProxyMatch(),
						},
					}, value))
			}
		}
		if g.add(s.Namespace, "meltemi-inbound-"+s.Hostname, ownerOf(s.Source), commonLabels(s), patches, []model.ObjectRef{s.Source}) {
			g.plain[s.Namespace] = true
		}
	}
}

func noVIPMessage(s *model.Service) string {
	hint := "give it a ClusterIP (a headless Service has none)"
	if s.Source.Kind == "ServiceEntry" {
		hint = "the controller allocates a VIP from --vip-range to ServiceEntries without spec.addresses and writes it to spec.addresses; until then there is none"
	}
	return fmt.Sprintf("%s has no IP address: Istio creates the outbound listener <VIP>_<port>, whose tcp_proxy the Meltemi filter replaces, only for a service with one, and without it the traffic passes through unfiltered (Aeraki #171); %s",
		s.Hostname, hint)
}

// vips returns the service's addresses that name a listener, in the service's order.
func (g *generator) vips(s *model.Service) []string {
	var vips []string
	for _, a := range s.Addresses {
		if ip, err := netip.ParseAddr(a); err == nil {
			vips = append(vips, ip.WithZone("").String())
			continue
		}
		if pfx, err := netip.ParsePrefix(a); err == nil && pfx.IsSingleIP() {
			vips = append(vips, pfx.Addr().String())
			continue
		}
		g.problem(s.Source, ReasonUnsupportedAddress,
			"address %q of %s is not an IP address: it names no outbound listener the Meltemi filter could be put on", a, s.Hostname)
	}
	return slices.Compact(vips)
}

// exportSet is a set of namespaces; all means every namespace.
type exportSet struct {
	all bool
	ns  map[string]bool
}

func resolveExportTo(exportTo []string, own string) exportSet {
	if len(exportTo) == 0 {
		return exportSet{all: true}
	}
	set := exportSet{ns: map[string]bool{}}
	for _, e := range exportTo {
		switch e {
		case "*":
			return exportSet{all: true}
		case ".":
			set.ns[own] = true
		case "~", "":
			// "~": exported nowhere.
		default:
			set.ns[e] = true
		}
	}
	return set
}

func intersect(a, b exportSet) exportSet {
	switch {
	case a.all:
		return b
	case b.all:
		return a
	}
	out := exportSet{ns: map[string]bool{}}
	for ns := range a.ns {
		if b.ns[ns] {
			out.ns[ns] = true
		}
	}
	return out
}

// placement returns the namespaces the service's outbound filters go to; ok is false when
// the router's exportTo excludes every namespace the service is visible in.
func (g *generator) placement(s *model.Service, r *model.Router) (namespaces []string, ok bool) {
	set := resolveExportTo(s.ExportTo, s.Namespace)
	if r != nil && len(r.Spec.ExportTo) > 0 {
		narrowed := intersect(set, resolveExportTo(r.Spec.ExportTo, r.Source.Namespace))
		if !narrowed.all && len(narrowed.ns) == 0 && (set.all || len(set.ns) > 0) {
			return nil, false
		}
		set = narrowed
	}
	if set.all {
		return []string{g.opts.RootNamespace}, true
	}
	for ns := range set.ns {
		namespaces = append(namespaces, ns)
	}
	slices.Sort(namespaces)
	return namespaces, true
}

// commonLabels are the labels every endpoint of the service carries (for a Kubernetes
// Service, typically its selector's labels): the inbound filter selects on them too, so that
// it reaches the service's own workloads only and not another workload of the namespace
// that happens to serve a TCP port with the same number. Endpoints without labels do not
// count. nil when the endpoints share no label (or have none).
func commonLabels(s *model.Service) map[string]string {
	var common map[string]string
	first := true
	for _, p := range s.Ports {
		for _, e := range p.Endpoints {
			if len(e.Labels) == 0 {
				// Labels unknown (a pod the source has not seen yet, an endpoint without
				// any): no evidence either way, and skipping it keeps the selector from
				// flapping while pods start.
				continue
			}
			if first {
				common = maps.Clone(e.Labels)
				first = false
				continue
			}
			for k, v := range common {
				if e.Labels[k] != v {
					delete(common, k)
				}
			}
		}
	}
	for k, v := range common {
		if len(validation.IsQualifiedName(k)) > 0 || len(validation.IsValidLabelValue(v)) > 0 {
			delete(common, k) // not a Kubernetes label (a ServiceEntry endpoint's free-form one)
		}
	}
	if len(common) == 0 {
		return nil
	}
	return common
}

// targetPorts returns the distinct target ports of a port's endpoints, sorted.
func targetPorts(p *model.Port) []uint32 {
	var ports []uint32
	for _, e := range p.Endpoints {
		_, port, err := net.SplitHostPort(e.Address)
		if err != nil {
			continue
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			continue
		}
		ports = append(ports, uint32(n))
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

func tcpProxyMatch() *apinetworking.EnvoyFilter_ListenerMatch_FilterMatch {
	return &apinetworking.EnvoyFilter_ListenerMatch_FilterMatch{Name: TCPProxyFilterName}
}

func listenerPatch(ctx apinetworking.EnvoyFilter_PatchContext, lm *apinetworking.EnvoyFilter_ListenerMatch, value *structpb.Struct) *apinetworking.EnvoyFilter_EnvoyConfigObjectPatch {
	return &apinetworking.EnvoyFilter_EnvoyConfigObjectPatch{
		ApplyTo: apinetworking.EnvoyFilter_NETWORK_FILTER,
		Match: &apinetworking.EnvoyFilter_EnvoyConfigObjectMatch{
			Context:     ctx,
			ObjectTypes: &apinetworking.EnvoyFilter_EnvoyConfigObjectMatch_Listener{Listener: lm},
		},
		Patch: &apinetworking.EnvoyFilter_Patch{
			Operation: apinetworking.EnvoyFilter_Patch_REPLACE,
			Value:     value,
		},
	}
}

// outboundFilter is the golang filter of a service port on the client side: it fetches the
// port's routes over xDS from the controller.
func (g *generator) outboundFilter(s *model.Service, p *model.Port) (*structpb.Struct, error) {
	name := apiv1alpha1.ResourceName(apiv1alpha1.Outbound, p.Number, "", s.Hostname)
	return g.golangFilter(&apiv1alpha1.FilterConfig{
		Protocol:   p.Codec,
		StatPrefix: name,
		RouteSpecifier: &apiv1alpha1.FilterConfig_Rds{Rds: &apiv1alpha1.Rds{
			RouteConfigName: name,
			ConfigSource:    g.opts.XDSAddress,
		}},
	})
}

// inboundFilter is the golang filter of a service port on the server side: every request
// goes to the local workload on the target port (see the package documentation).
func (g *generator) inboundFilter(s *model.Service, p *model.Port, targetPort uint32) (*structpb.Struct, error) {
	name := apiv1alpha1.ResourceName(apiv1alpha1.Inbound, p.Number, "", s.Hostname)
	return g.golangFilter(&apiv1alpha1.FilterConfig{
		Protocol:   p.Codec,
		StatPrefix: name,
		RouteSpecifier: &apiv1alpha1.FilterConfig_RouteConfig{RouteConfig: &apiv1alpha1.RouteConfiguration{
			Name: name,
			Routes: []*apiv1alpha1.Route{{
				Name:  "default",
				Route: &apiv1alpha1.RouteAction{ClusterSpecifier: &apiv1alpha1.RouteAction_Cluster{Cluster: name}},
			}},
		}},
		Clusters: []*apiv1alpha1.Cluster{{
			Name:      name,
			Endpoints: []*apiv1alpha1.Endpoint{{Address: net.JoinHostPort("127.0.0.1", strconv.FormatUint(uint64(targetPort), 10))}},
		}},
	})
}

// golangFilter returns the listener filter (name + typed_config) that runs the plugin with
// cfg, as the Struct of its proto JSON form.
func (g *generator) golangFilter(cfg *apiv1alpha1.FilterConfig) (*structpb.Struct, error) {
	pluginConfig, err := apiv1alpha1.TypedStructAny(cfg)
	if err != nil {
		return nil, err
	}
	typed, err := anypb.New(&golangv3alpha.Config{
		IsTerminalFilter: true,
		LibraryId:        g.opts.LibraryID,
		LibraryPath:      g.opts.LibraryPath,
		PluginName:       PluginName,
		PluginConfig:     pluginConfig,
	})
	if err != nil {
		return nil, fmt.Errorf("packing the golang filter config: %w", err)
	}
	return toStruct(&listenerv3.Filter{
		Name:       GolangFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: typed},
	})
}

// plainTextCluster is the cluster the plugin dials upstreams through.
func (g *generator) plainTextCluster() (*structpb.Struct, error) {
	return toStruct(&clusterv3.Cluster{
		Name:                 PlainTextClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(PlainTextConnectTimeout),
		TransportSocket:      g.opts.PlainTextTransportSocket,
	})
}

// toStruct encodes m as Istio expects a patch value: its proto JSON form with proto field
// names, as a Struct.
func toStruct(m proto.Message) (*structpb.Struct, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	s := new(structpb.Struct)
	if err := protojson.Unmarshal(js, s); err != nil {
		return nil, fmt.Errorf("decoding %s as a Struct: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return s, nil
}

// plainTextFilters adds the plainText cluster to each namespace that holds one of our
// listener filters.
func (g *generator) plainTextFilters(value *structpb.Struct) {
	var namespaces []string
	for ns := range g.plain {
		namespaces = append(namespaces, ns)
	}
	slices.Sort(namespaces)
	for _, ns := range namespaces {
		var origins []model.ObjectRef
		for key, refs := range g.origins {
			if strings.HasPrefix(key, ns+"/") {
				for ref := range refs {
					origins = append(origins, ref)
				}
			}
		}
		patch := &apinetworking.EnvoyFilter_EnvoyConfigObjectPatch{
			ApplyTo: apinetworking.EnvoyFilter_CLUSTER,
			Match:   &apinetworking.EnvoyFilter_EnvoyConfigObjectMatch{Context: apinetworking.EnvoyFilter_SIDECAR_OUTBOUND},
			Patch: &apinetworking.EnvoyFilter_Patch{
				Operation: apinetworking.EnvoyFilter_Patch_ADD,
				Value:     proto.Clone(value).(*structpb.Struct),
			},
		}
		g.add(ns, PlainTextFilterName, OwnerShared, nil, []*apinetworking.EnvoyFilter_EnvoyConfigObjectPatch{patch}, origins)
	}
}

// add records a filter and reports whether it did: one without patches is not written.
func (g *generator) add(namespace, name, owner string, selector map[string]string, patches []*apinetworking.EnvoyFilter_EnvoyConfigObjectPatch, origins []model.ObjectRef) bool {
	if len(patches) == 0 {
		return false
	}
	name = dnsName(name)
	key := namespace + "/" + name
	ef := &networkingv1alpha3.EnvoyFilter{
		TypeMeta: metav1.TypeMeta{APIVersion: "networking.istio.io/v1alpha3", Kind: "EnvoyFilter"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      name,
			Namespace: namespace,
			Labels:    map[string]string{LabelManagedBy: ManagedBy, LabelOwner: owner},
		},
	}
	labels := make(map[string]string, len(g.opts.WorkloadLabels)+len(selector))
	for k, v := range selector {
		labels[k] = v
	}
	for k, v := range g.opts.WorkloadLabels {
		labels[k] = v // the plugin label always; it wins over a workload label of the same key
	}
	ef.Spec.WorkloadSelector = &apinetworking.WorkloadSelector{Labels: labels}
	ef.Spec.ConfigPatches = patches
	ef.Spec.Priority = Priority
	g.filters[key] = ef
	set := g.origins[key]
	if set == nil {
		set = map[model.ObjectRef]bool{}
		g.origins[key] = set
	}
	for _, o := range origins {
		set[o] = true
	}
	return true
}

func (g *generator) result() *Result {
	// Problems are sorted so that the result does not depend on the order of services.
	res := &Result{Origins: make(map[string][]model.ObjectRef, len(g.filters)), Problems: model.SortProblems(g.problems)}
	keys := make([]string, 0, len(g.filters))
	for key := range g.filters {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	for _, key := range keys {
		res.Filters = append(res.Filters, g.filters[key])
		var refs []model.ObjectRef
		for ref := range g.origins[key] {
			refs = append(refs, ref)
		}
		slices.SortFunc(refs, model.CompareRefs)
		res.Origins[key] = refs
	}
	return res
}

// ownerOf is the owner label value of an object: "<Kind>.<namespace>.<name>".
func ownerOf(ref model.ObjectRef) string {
	return labelValue(ref.Kind + "." + ref.Namespace + "." + ref.Name)
}

// maxName is the longest name we give: a DNS-1123 label's length, which every EnvoyFilter
// name then also satisfies as a subdomain and as a label value.
const maxName = 63

// dnsName makes s a DNS-1123 subdomain of at most 63 characters: lowercase, characters
// outside [a-z0-9.-] replaced by '-'. A name that had to change, or is too long, gets a hash
// of the original as a suffix so that distinct inputs keep distinct names.
func dnsName(s string) string {
	return shorten(s, true)
}

// labelValue makes s a label value: at most 63 characters of [A-Za-z0-9._-], starting and
// ending with an alphanumeric character, with a hash suffix when it had to change.
func labelValue(s string) string {
	return shorten(s, false)
}

func shorten(orig string, subdomain bool) string {
	s := orig
	if subdomain {
		s = strings.ToLower(s)
	}
	allowed := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '.' ||
			!subdomain && (r >= 'A' && r <= 'Z' || r == '_')
	}
	out := strings.Map(func(r rune) rune {
		if allowed(r) {
			return r
		}
		return '-'
	}, s)
	if out == orig && len(out) <= maxName && valid(out, subdomain) {
		return out
	}
	// Changed: make it valid whatever it became, then keep it distinct with a hash.
	sum := sha256.Sum256([]byte(orig))
	suffix := hex.EncodeToString(sum[:])[:10]
	if subdomain {
		// Each dot-separated part must start and end with an alphanumeric character.
		var parts []string
		for _, p := range strings.Split(out, ".") {
			if p = strings.Trim(p, "-"); p != "" {
				parts = append(parts, p)
			}
		}
		out = strings.Join(parts, ".")
	}
	out = strings.TrimLeft(out, "-._")
	if len(out) > maxName-len(suffix)-1 {
		out = out[:maxName-len(suffix)-1]
	}
	out = strings.TrimRight(out, "-._")
	if out == "" {
		return "m-" + suffix
	}
	return out + "-" + suffix
}

// valid reports whether s is a DNS-1123 subdomain (subdomain) or a label value.
func valid(s string, subdomain bool) bool {
	if subdomain {
		return len(validation.IsDNS1123Subdomain(s)) == 0
	}
	return s != "" && len(validation.IsValidLabelValue(s)) == 0
}
