package main

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/envoyfilter"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/istio"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// istioFlags are the flags of Istio mode.
type istioFlags struct {
	rootNamespace, workloadLabel, pluginPath, xdsService, plainTextTS, vipRange string
	inbound                                                                     bool
	debounce                                                                    time.Duration
}

// generatorOptions turns the flags into the generator's options and checks them, so that
// a mistake stops the program at startup instead of writing filters Istio rejects.
func generatorOptions(f istioFlags) (envoyfilter.Options, error) {
	k, v, ok := strings.Cut(f.workloadLabel, "=")
	if !ok || k == "" {
		return envoyfilter.Options{}, fmt.Errorf("--workload-label=%q: want key=value", f.workloadLabel)
	}
	opts := envoyfilter.Options{
		RootNamespace:  f.rootNamespace,
		WorkloadLabels: map[string]string{k: v},
		LibraryPath:    f.pluginPath,
		XDSAddress:     f.xdsService,
		Inbound:        f.inbound,
	}
	if f.plainTextTS != "" {
		ts, err := readTransportSocket(f.plainTextTS)
		if err != nil {
			return envoyfilter.Options{}, fmt.Errorf("--plaintext-transport-socket: %w", err)
		}
		opts.PlainTextTransportSocket = ts
	}
	if err := opts.Validate(); err != nil {
		return envoyfilter.Options{}, fmt.Errorf("istio options: %w", err)
	}
	return opts, nil
}

// readTransportSocket reads an envoy.config.core.v3.TransportSocket from YAML or JSON
// (protojson field names, typed_config with its @type).
func readTransportSocket(path string) (*corev3.TransportSocket, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ts := &corev3.TransportSocket{}
	if err := protojson.Unmarshal(j, ts); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ts, nil
}

// newIstioWriter returns the writer of Istio mode: EnvoyFilters from the generator and
// ServiceEntry VIPs, written through cfg. refresh is called when the EnvoyFilters that
// program some object changed, for its status.
func newIstioWriter(cfg *rest.Config, f istioFlags, log *slog.Logger, reg prometheus.Registerer, refresh func()) (*istio.Writer, error) {
	opts, err := generatorOptions(f)
	if err != nil {
		return nil, err
	}
	if opts.Inbound && !opts.InboundWritten() {
		// The inbound plugin reaches the local workload through the same plainText
		// cluster: with a TLS socket there it would speak TLS to a plaintext app.
		log.Warn("--inbound is on but --plaintext-transport-socket is set: no inbound EnvoyFilters are written (server-side policy off)")
	}
	var vips netip.Prefix
	if f.vipRange != "" {
		if vips, err = netip.ParsePrefix(f.vipRange); err != nil {
			return nil, fmt.Errorf("--vip-range=%q: %w", f.vipRange, err)
		}
	}
	// Unstructured objects only: no scheme needed, and no cache (the writer lists what is
	// in the cluster before each write).
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, fmt.Errorf("istio client: %w", err)
	}
	wlog := log.With("component", "istio")
	return istio.NewWriter(istio.WriterOptions{
		Client: c,
		Generate: func(m *model.Model) *istio.Desired {
			r := envoyfilter.Generate(m, opts)
			for _, p := range r.Problems {
				wlog.Debug("no EnvoyFilter", "object", p.Object.String(), "reason", p.Reason, "message", p.Message)
			}
			return &istio.Desired{Filters: r.Filters, Origins: r.Origins, Problems: r.Problems}
		},
		VIPRange:   vips,
		Debounce:   f.debounce,
		OnWritten:  refresh,
		Log:        wlog,
		Registerer: reg,
	}), nil
}
