package envoy

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meltemi-mesh/meltemi/codecs"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/plugin/engine"
	"github.com/meltemi-mesh/meltemi/plugin/internal/translate"
	"github.com/meltemi-mesh/meltemi/plugin/internal/xdsclient"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	xdsv3 "github.com/cncf/xds/go/xds/type/v3"
)

// DialFunc opens an upstream connection to addr and reports on f: network.CreateUpstreamConn.
type DialFunc func(addr string, f api.UpstreamFilter)

// Parser is the network.ConfigParser of the filter. Envoy's Go side calls it on Envoy's main
// thread once per filter configuration (each filter chain, each listener update), and keeps
// what it returns for the life of the process: Envoy never says when a configuration is
// dropped, so neither is its engine.
//
// Configurations whose routes come from RDS share the parser's xDS clients, one per
// control-plane address, created on first use. Since such a configuration lives (and
// watches its route configuration) for the life of the process, a configuration identical
// to one parsed before returns the same FilterConfig: Envoy's listener updates, which hand
// the unchanged configuration over again, add neither engines nor watches.
type Parser struct {
	// Registry holds the codecs that configurations can name.
	Registry *codecs.Registry
	// Dial opens upstream connections.
	Dial DialFunc
	// Log receives configuration errors, panics and the engines' logs.
	Log *slog.Logger
	// XDS configures the xDS clients of RDS configurations; the zero value is the
	// production setting (see xdsclient.Options). Its Logger defaults to Log.
	XDS xdsclient.Options
	// InitialFetchTimeout bounds how long the requests of an RDS configuration wait for its
	// first routes, as Envoy's initial_fetch_timeout; then they get no_route errors until
	// routes arrive. 0 means engine.DefaultInitialFetchTimeout (15 s).
	InitialFetchTimeout time.Duration

	registryErr error
	seq         atomic.Uint64 // numbers configurations in logs, as Envoy numbers their ids

	rdsMu   sync.Mutex
	xds     *xdsclient.Pool
	rdsSeen map[string]*FilterConfig // RDS configurations by their deterministic encoding
}

// DefaultXDSAddress is the control plane of RDS configurations whose config_source is empty,
// unless the environment variable MELTEMI_XDS_ADDRESS names another: Meltemi's controller,
// local (its file mode listens there by default).
const DefaultXDSAddress = "127.0.0.1:15010"

// xdsAddress returns the control plane that rds names.
func xdsAddress(rds *apiv1alpha1.Rds) string {
	if a := rds.GetConfigSource(); a != "" {
		return a
	}
	if a := os.Getenv("MELTEMI_XDS_ADDRESS"); a != "" {
		return a
	}
	return DefaultXDSAddress
}

// Close stops the parser's xDS clients: RDS configurations get no more updates and keep
// the routes they have. Envoy never calls it (the plugin lives as long as the process);
// tests and hosts that unload do.
func (p *Parser) Close() {
	p.rdsMu.Lock()
	pool := p.xds
	p.xds = nil
	p.rdsMu.Unlock()
	if pool != nil {
		pool.Close()
	}
}

// ParseConfig builds the filter configuration of a: an engine, or, when a is invalid, a
// configuration that rejects every connection. It never returns nil and never panics.
func (p *Parser) ParseConfig(a *anypb.Any) (out any) {
	n := p.seq.Add(1)
	log := p.Log.With("config", n)
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic while parsing the filter configuration",
				"panic", r, "stack", string(debug.Stack()))
			out = &FilterConfig{log: log, err: fmt.Errorf("panic while parsing: %v", r)}
		}
	}()
	fc, err := p.build(a, log)
	if err != nil {
		log.Error("invalid filter configuration: every connection of this filter will get an error reply and be closed",
			"err", err)
		return p.rejecting(a, log, err)
	}
	return fc
}

func (p *Parser) build(a *anypb.Any, log *slog.Logger) (*FilterConfig, error) {
	if p.registryErr != nil {
		return nil, p.registryErr
	}
	cfg, err := apiv1alpha1.ParseFilterConfig(a)
	if err != nil {
		return nil, err
	}
	log = log.With("stat_prefix", cfg.EffectiveStatPrefix())
	codec, err := translate.Codec(p.Registry, cfg)
	if err != nil {
		return nil, err
	}
	ec, err := translate.EngineConfig(cfg, codec)
	if err != nil {
		return nil, err
	}
	var key string
	if cfg.GetRds() != nil {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cfg)
		if err != nil {
			return nil, fmt.Errorf("plugin_config: %w", err)
		}
		key = string(b)
		p.rdsMu.Lock()
		defer p.rdsMu.Unlock()
		if fc, ok := p.rdsSeen[key]; ok {
			log.Info("filter configuration identical to an earlier one: sharing its engine and RDS watch",
				"route_config_name", cfg.GetRds().GetRouteConfigName())
			return fc, nil
		}
	}
	fc := &FilterConfig{log: log}
	eng, err := engine.New(ec, engine.Options{Dialer: dialer{dial: p.Dial, fc: fc}, Logger: log,
		// Like a listener warming on RDS in Envoy: the first requests wait for the routes
		// instead of failing while the control plane answers.
		WaitForUpdate: cfg.GetRds() != nil, InitialFetchTimeout: p.InitialFetchTimeout})
	if err != nil {
		return nil, fmt.Errorf("plugin_config: %w", err)
	}
	fc.engine = eng
	if rds := cfg.GetRds(); rds != nil {
		if err := p.watch(fc, rds, cfg.EffectiveRouteTimeout()); err != nil {
			eng.Close()
			return nil, err
		}
		if p.rdsSeen == nil {
			p.rdsSeen = map[string]*FilterConfig{}
		}
		p.rdsSeen[key] = fc
	}
	return fc, nil
}

// watch subscribes fc's engine to the route configuration rds names: each complete snapshot
// is translated and swapped into the engine; a snapshot that does not translate or compile
// is rejected (the xDS client NACKs it) and the engine keeps its routes. Until the first
// snapshot the engine has no routes: requests get the protocol's "no route" error. Called
// with p.rdsMu held.
func (p *Parser) watch(fc *FilterConfig, rds *apiv1alpha1.Rds, routeTimeout time.Duration) error {
	addr := xdsAddress(rds)
	if p.xds == nil {
		opts := p.XDS
		if opts.Logger == nil {
			opts.Logger = p.Log
		}
		p.xds = xdsclient.NewPool(opts)
	}
	client, err := p.xds.Client(addr)
	if err != nil {
		return fmt.Errorf("rds: %w", err)
	}
	name := rds.GetRouteConfigName()
	log := fc.log.With("route_config_name", name, "xds_server", addr)
	eng := fc.engine
	client.WatchRoutes(name, func(s xdsclient.Snapshot) error {
		clusters, endpoints := withMissing(s)
		routes, ecs, err := translate.FromXDS(s.Routes, clusters, endpoints, routeTimeout)
		if err == nil {
			err = eng.Update(routes, ecs)
		}
		if err != nil {
			log.Error("routes from RDS rejected: keeping the previous ones", "err", err)
			return err
		}
		log.Info("routes from RDS applied", "routes", len(routes), "clusters", len(ecs),
			"missing_clusters", s.MissingClusters, "missing_endpoints", s.MissingEndpoints)
		return nil
	})
	log.Info("routes come from RDS")
	return nil
}

// withMissing returns the clusters and assignments of s, with the ones the server does not
// have standing in as clusters without endpoints: requests routed to them get the
// protocol's "unavailable" error, and the other routes work.
func withMissing(s xdsclient.Snapshot) (map[string]*clusterv3.Cluster, map[string]*endpointv3.ClusterLoadAssignment) {
	if len(s.MissingClusters) == 0 && len(s.MissingEndpoints) == 0 {
		return s.Clusters, s.Endpoints
	}
	clusters := maps.Clone(s.Clusters)
	endpoints := maps.Clone(s.Endpoints)
	for _, n := range s.MissingClusters {
		clusters[n] = &clusterv3.Cluster{
			Name:                 n,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment:       &endpointv3.ClusterLoadAssignment{ClusterName: n},
		}
	}
	for _, n := range s.MissingEndpoints {
		endpoints[n] = &endpointv3.ClusterLoadAssignment{ClusterName: n}
	}
	return clusters, endpoints
}

// rejecting returns the configuration that answers every connection with an error. When a
// names a known protocol, its codec decodes the first request so that the client gets a
// proper error reply; otherwise connections are just closed.
func (p *Parser) rejecting(a *anypb.Any, log *slog.Logger, cause error) *FilterConfig {
	fc := &FilterConfig{log: log, err: cause}
	if p.Registry == nil {
		return fc
	}
	protocol, params := sniffProtocol(a)
	if protocol == "" {
		return fc
	}
	// The parameters may be what is invalid; decoding with the defaults still answers most
	// clients.
	c, err := p.Registry.New(protocol, codecs.Options{Params: params})
	if err != nil {
		c, err = p.Registry.New(protocol, codecs.Options{})
	}
	if err == nil {
		fc.rejectCodec = c
	}
	return fc
}

// sniffProtocol reads protocol and codec_params from an invalid plugin_config, as far as it
// can be read, for the error replies.
func sniffProtocol(a *anypb.Any) (protocol string, params map[string]string) {
	if a == nil {
		return "", nil
	}
	fields := func(v map[string]any) (string, map[string]string) {
		s, _ := v["protocol"].(string)
		var ps map[string]string
		if m, ok := v["codec_params"].(map[string]any); ok {
			ps = make(map[string]string, len(m))
			for k, x := range m {
				if xs, ok := x.(string); ok {
					ps[k] = xs
				}
			}
		}
		return s, ps
	}
	lenient := proto.UnmarshalOptions{DiscardUnknown: true}
	switch {
	case a.MessageIs(&xdsv3.TypedStruct{}):
		var ts xdsv3.TypedStruct
		if lenient.Unmarshal(a.GetValue(), &ts) == nil {
			return fields(ts.GetValue().AsMap())
		}
	case a.MessageIs(&udpav1.TypedStruct{}):
		var ts udpav1.TypedStruct
		if lenient.Unmarshal(a.GetValue(), &ts) == nil {
			return fields(ts.GetValue().AsMap())
		}
	case a.MessageIs(&apiv1alpha1.FilterConfig{}):
		var cfg apiv1alpha1.FilterConfig
		if lenient.Unmarshal(a.GetValue(), &cfg) == nil {
			return cfg.GetProtocol(), cfg.GetCodecParams()
		}
	}
	return "", nil
}

// FilterConfig is one filter configuration: the network.FilterFactory that creates the
// filter of each connection.
type FilterConfig struct {
	log    *slog.Logger
	engine *engine.Engine // nil when the configuration is invalid

	// err is why the configuration is invalid; rejectCodec, when known, decodes the first
	// request of each connection to answer it with an error.
	err         error
	rejectCodec codecs.Codec

	panics   atomic.Uint64
	rejected atomic.Uint64
}

// unusable answers connections whose configuration did not come from Parser, which only
// happens if Register was bypassed.
var unusable = &FilterConfig{
	log: slog.New(slog.NewTextHandler(os.Stderr, nil)).With("filter", PluginName),
	err: errors.New("the filter configuration was not parsed by Meltemi's parser"),
}

// Engine returns the configuration's engine, nil when the configuration is invalid.
func (fc *FilterConfig) Engine() *engine.Engine { return fc.engine }

// Err returns why the configuration is invalid, nil when it is valid.
func (fc *FilterConfig) Err() error { return fc.err }

// Panics returns how many panics the adapter recovered from for this configuration (the
// engine counts its own).
func (fc *FilterConfig) Panics() uint64 { return fc.panics.Load() }

// Rejected returns how many connections were refused because the configuration is invalid.
func (fc *FilterConfig) Rejected() uint64 { return fc.rejected.Load() }

// CreateFilter returns the filter of one new downstream connection. Envoy's Go side sets a
// finalizer on it that releases Envoy's handle: it must be a distinct heap object each time.
func (fc *FilterConfig) CreateFilter(cb api.ConnectionCallback) api.DownstreamFilter {
	return &downstream{fc: fc, cb: cb}
}

// recovered logs and counts a panic recovered in an entry point.
func (fc *FilterConfig) recovered(where string, v any) {
	fc.panics.Add(1)
	fc.log.Error("panic recovered: closing the connection", "where", where, "panic", v,
		"stack", string(debug.Stack()))
}
