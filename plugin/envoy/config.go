package envoy

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sync/atomic"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meltemi-mesh/meltemi/codecs"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/plugin/engine"
	"github.com/meltemi-mesh/meltemi/plugin/internal/translate"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	xdsv3 "github.com/cncf/xds/go/xds/type/v3"
)

// DialFunc opens an upstream connection to addr and reports on f: network.CreateUpstreamConn.
type DialFunc func(addr string, f api.UpstreamFilter)

// Parser is the network.ConfigParser of the filter. Envoy's Go side calls it on Envoy's main
// thread once per filter configuration (each filter chain, each listener update), and keeps
// what it returns for the life of the process: Envoy never says when a configuration is
// dropped, so neither is its engine.
type Parser struct {
	// Registry holds the codecs that configurations can name.
	Registry *codecs.Registry
	// Dial opens upstream connections.
	Dial DialFunc
	// Log receives configuration errors, panics and the engines' logs.
	Log *slog.Logger

	registryErr error
	seq         atomic.Uint64 // numbers configurations in logs, as Envoy numbers their ids
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
	fc := &FilterConfig{log: log}
	eng, err := engine.New(ec, engine.Options{Dialer: dialer{dial: p.Dial, fc: fc}, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("plugin_config: %w", err)
	}
	fc.engine = eng
	if cfg.GetRds() != nil {
		log.Warn("routes from RDS are not supported yet: every request will get a no-route error",
			"route_config_name", cfg.GetRds().GetRouteConfigName())
	}
	return fc, nil
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
