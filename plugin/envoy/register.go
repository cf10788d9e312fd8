package envoy

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/envoyproxy/envoy/contrib/golang/filters/network/source/go/pkg/network"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/builtin"
)

// PluginName is the plugin_name that Envoy's golang filter configuration must give to load
// Meltemi's filter.
const PluginName = "meltemi"

// Register registers Meltemi's filter with Envoy's golang network filter API. The plugin's
// main package calls it from init, when the library is loaded. Logs go to stderr, which
// Envoy's process and Istio's sidecar keep: Envoy's own Go logging API needs a part of
// Envoy's Go SDK (api_impl) that starts a background poller at load time.
//
// extra are third-party codecs compiled into the plugin, added to the built-in dubbo and
// thrift codecs; a name clash is reported by every configuration that uses the registry.
func Register(extra ...codecs.Factory) {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("filter", PluginName)
	reg, err := builtin.Registry(extra...)
	if err != nil {
		// Cannot happen with the shipped codecs; every configuration then reports it.
		log.Error("codec registry", "err", err)
	}
	p := &Parser{Registry: reg, Dial: network.CreateUpstreamConn, Log: log}
	if err != nil {
		p.registryErr = fmt.Errorf("codec registry: %w", err)
	}
	network.RegisterNetworkFilterConfigParser(p)
	network.RegisterNetworkFilterConfigFactory(PluginName, Factory{})
}

// Factory is the network.ConfigFactory of the filter. Envoy's Go side calls it for every
// new connection with what Parser returned for the connection's filter configuration.
type Factory struct{}

// CreateFactoryFromConfig returns the filter configuration that Parser built.
func (Factory) CreateFactoryFromConfig(config any) network.FilterFactory {
	if fc, ok := config.(*FilterConfig); ok && fc != nil {
		return fc
	}
	// Only if the parser was not registered: reject rather than hand Envoy a nil factory.
	return unusable
}
