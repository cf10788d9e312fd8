// Command meltemi-controller is Meltemi's control plane: it reads MetaRouters,
// ApplicationProtocols, Services, ServiceEntries and DestinationRules from a directory of
// YAML files (--source=file, the default) or from Kubernetes (--source=kube), and serves the
// plugin its route configurations, clusters and endpoints over xDS (gRPC ADS). Metrics,
// liveness and readiness are served over HTTP on --metrics-address.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/controller"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/envoyfilter"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/istio"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/source/file"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/source/kube"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/xds"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stderr, nil)
	stop()
	switch {
	case err == nil:
	case errors.Is(err, flag.ErrHelp):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "meltemi-controller:", err)
		os.Exit(1)
	}
}

// DefaultConfigDir is the file source's directory when neither --config-dir nor
// MELTEMI_CONFIG_DIR says otherwise: the demo's mesh, relative to the repository root.
const DefaultConfigDir = "envoy-config/demo"

// addrs are the addresses run listens on, for tests that ask for port 0.
type addrs struct{ XDS, Metrics net.Addr }

// runSource is a source's Run.
type runSource func(ctx context.Context, out func(*model.Inputs)) error

// run is the whole program: it returns when ctx is done (nil) or something fails. listening,
// if not nil, is called once both listeners are bound.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer, listening func(addrs)) error {
	configDir := DefaultConfigDir
	if v := getenv("MELTEMI_CONFIG_DIR"); v != "" {
		configDir = v
	}
	fs := flag.NewFlagSet("meltemi-controller", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		source      = fs.String("source", "file", "where the configuration comes from: file or kube")
		dir         = fs.String("config-dir", configDir, "file source: the directory of YAML manifests (default from $MELTEMI_CONFIG_DIR if set)")
		namespaces  = fs.String("namespaces", "", "kube source: comma-separated namespaces to watch (default: all)")
		kubeconfig  = fs.String("kubeconfig", "", "kube source: kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)")
		xdsAddr     = fs.String("xds-address", "127.0.0.1:15010", "address of the xDS (gRPC ADS) server; in a cluster, :15010")
		metricsAddr = fs.String("metrics-address", "127.0.0.1:15014", "address of /metrics, /healthz and /readyz")
		debounce    = fs.Duration("debounce", xds.DefaultDebounce, "xDS pushes wait this long for further changes")
		maxDebounce = fs.Duration("max-debounce", xds.DefaultMaxDebounce, "xDS pushes wait at most this long under continuous changes")
		logLevel    = fs.String("log-level", "info", "debug, info, warn or error")
		logFormat   = fs.String("log-format", "text", "text or json")

		istioMode     = fs.Bool("istio", true, "kube source: write the EnvoyFilters that put the plugin into Istio sidecars, and ServiceEntry VIPs")
		rootNamespace = fs.String("root-namespace", envoyfilter.DefaultRootNamespace, "istio: Istio's config root namespace, where the EnvoyFilters of services exported to all namespaces go")
		workloadLabel = fs.String("workload-label", envoyfilter.DefaultWorkloadLabel+"="+envoyfilter.DefaultWorkloadValue, "istio: key=value pod label of the sidecars that carry the plugin; every EnvoyFilter selects it")
		pluginPath    = fs.String("plugin-path", envoyfilter.DefaultLibraryPath, "istio: path of the plugin (.so) in the sidecar image")
		xdsService    = fs.String("xds-service-address", envoyfilter.DefaultXDSAddress, "istio: host:port the plugin in the sidecars dials for its xDS (this controller's Service)")
		inbound       = fs.Bool("inbound", true, "istio: also put the plugin on the inbound filter chain of the services' target ports")
		plainTextTS   = fs.String("plaintext-transport-socket", "", "istio: YAML or JSON file holding an envoy.config.core.v3.TransportSocket for the plainText cluster the plugin dials upstreams through (default: plaintext)")
		vipRange      = fs.String("vip-range", istio.DefaultVIPRange, "istio: CIDR the VIPs of ServiceEntries without spec.addresses are allocated from; empty: allocate none")
		istioDebounce = fs.Duration("istio-debounce", time.Second, "istio: EnvoyFilter and VIP writes wait this long for further changes")
		leaderElect   = fs.Bool("leader-elect", true, "kube source: only the replica holding the Lease writes EnvoyFilters, VIPs and status (every replica serves xDS)")
		leaseNs       = fs.String("leader-election-namespace", "", "kube source: namespace of the Lease "+istio.LeaseName+" (default: $POD_NAMESPACE, else "+istio.DefaultLeaseNamespace+")")
		leaseDuration = fs.Duration("leader-election-lease-duration", 15*time.Second, "kube source: how long followers wait before taking over a Lease that is not renewed")
		renewDeadline = fs.Duration("leader-election-renew-deadline", 10*time.Second, "kube source: how long the leader keeps trying to renew before it stops writing")
		retryPeriod   = fs.Duration("leader-election-retry-period", 2*time.Second, "kube source: how often replicas try to acquire or renew the Lease")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	log, err := newLogger(stderr, *logLevel, *logFormat)
	if err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var (
		src    runSource
		sink   controller.StatusSink
		writer *istio.Writer
		leader *istio.Leader
		// ctrl is created below, after the writer that calls it back.
		ctrl *controller.Controller
	)
	switch *source {
	case "file":
		fsrc := &file.Source{Dir: *dir, Log: log.With("source", "file"), Metrics: reg}
		src = fsrc.Run
		sink = &logSink{log: log, last: map[model.ObjectRef]string{}}
	case "kube":
		cfg, err := kubeConfig(*kubeconfig)
		if err != nil {
			return err
		}
		// controller-runtime logs through its own process-wide logger, and complains (with a
		// stack trace) when none is set: it gets ours.
		ctrllog.SetLogger(logr.FromSlogHandler(log.With("component", "controller-runtime").Handler()))
		ksrc := &kube.Source{Config: cfg, Namespaces: splitList(*namespaces), Log: log.With("source", "kube")}
		w, err := kube.NewStatusWriter(cfg, ksrc.Reader(), log.With("component", "status"))
		if err != nil {
			return err
		}
		src = ksrc.Run
		sink = w
		if *istioMode {
			writer, err = newIstioWriter(cfg, istioFlags{
				rootNamespace: *rootNamespace, workloadLabel: *workloadLabel, pluginPath: *pluginPath,
				xdsService: *xdsService, inbound: *inbound, plainTextTS: *plainTextTS, vipRange: *vipRange,
				debounce: *istioDebounce,
			}, log, reg, func() { ctrl.RefreshStatus() })
			if err != nil {
				return err
			}
			w.EnvoyFilters = writer.EnvoyFilters
			sink = &istio.ProblemsSink{Sink: w, Problems: writer.Problems}
		}
		if *leaderElect {
			ns := *leaseNs
			if ns == "" {
				ns = cmp.Or(getenv("POD_NAMESPACE"), istio.DefaultLeaseNamespace)
			}
			leader = istio.NewLeader(istio.LeaderOptions{
				Config: cfg, Namespace: ns, LeaseDuration: *leaseDuration, RenewDeadline: *renewDeadline,
				RetryPeriod: *retryPeriod, Log: log.With("component", "leader"),
			})
			sink = &istio.LeaderOnlySink{Sink: sink, Leading: leader.Leading}
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "meltemi_controller_leader", Help: "1 while this replica holds the Lease and writes, else 0.",
			}, func() float64 {
				if leader.Leading() {
					return 1
				}
				return 0
			}))
		}
	default:
		return fmt.Errorf("--source=%q: want file or kube", *source)
	}

	var onSync func(*model.Inputs, *model.Model)
	if writer != nil {
		onSync = writer.Update
	}
	ctrl = controller.New(controller.Options{
		XDS:        xds.Options{Debounce: *debounce, MaxDebounce: *maxDebounce, Logger: log.With("component", "xds")},
		Sink:       sink,
		Logger:     log.With("component", "controller"),
		Registerer: reg,
		OnSync:     onSync,
	})

	var lc net.ListenConfig
	xdsL, err := lc.Listen(ctx, "tcp", *xdsAddr)
	if err != nil {
		return fmt.Errorf("xds listener: %w", err)
	}
	metricsL, err := lc.Listen(ctx, "tcp", *metricsAddr)
	if err != nil {
		xdsL.Close()
		return fmt.Errorf("metrics listener: %w", err)
	}
	if listening != nil {
		listening(addrs{XDS: xdsL.Addr(), Metrics: metricsL.Addr()})
	}
	log.Info("starting", "source", *source, "istio", writer != nil, "leaderElection", leader != nil, "xds", xdsL.Addr().String(), "metrics", metricsL.Addr().String(),
		"debounce", *debounce, "maxDebounce", *maxDebounce)

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		// Clients wait (their connection is accepted by the kernel, not answered) until
		// the first configuration is applied: answering with an empty one would tell a
		// client that reconnects after a restart that its resources are gone.
		select {
		case <-ctrl.Server().Ready():
		case <-gctx.Done():
			xdsL.Close()
			return nil
		}
		return ctrl.Server().Serve(gctx, xdsL)
	})
	g.Go(func() error { return ctrl.Run(gctx) })
	switch {
	case leader != nil:
		g.Go(func() error {
			return leader.Run(gctx, func(lctx context.Context) {
				// The new leader's status reports (skipped while following) start now.
				ctrl.RefreshStatus()
				if writer != nil {
					_ = writer.Run(lctx)
					return
				}
				<-lctx.Done()
			})
		})
	case writer != nil:
		g.Go(func() error { return writer.Run(gctx) })
	}
	g.Go(func() error { return serveHTTP(gctx, metricsL, httpHandler(reg, ctrl)) })
	g.Go(func() error {
		if err := src(gctx, ctrl.Sync); err != nil {
			return fmt.Errorf("%s source: %w", *source, err)
		}
		if gctx.Err() == nil {
			return fmt.Errorf("%s source stopped", *source)
		}
		return nil
	})
	err = g.Wait()
	log.Info("stopped", "err", err)
	return err
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level=%q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format=%q: want text or json", format)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// kubeConfig loads --kubeconfig, else $KUBECONFIG or ~/.kube/config, else the in-cluster
// service account.
func kubeConfig(path string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err == nil {
		return cfg, nil
	}
	if path == "" {
		if icfg, ierr := rest.InClusterConfig(); ierr == nil {
			return icfg, nil
		}
	}
	return nil, fmt.Errorf("kubeconfig: %w", err)
}

// httpHandler serves /metrics from reg, /healthz (the process is up) and /readyz (the first
// configuration was read and applied to the xDS server).
func httpHandler(reg *prometheus.Registry, ctrl *controller.Controller) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		select {
		case <-ctrl.Server().Ready():
		default:
			http.Error(w, "waiting for the first configuration", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

func serveHTTP(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return fmt.Errorf("metrics server: %w", err)
}

// logSink is the file source's status: files have no status subresource, so an object's
// status is logged when it changes.
type logSink struct {
	log  *slog.Logger
	last map[model.ObjectRef]string
}

func (s *logSink) Report(_ context.Context, statuses []controller.ObjectStatus) {
	seen := make(map[model.ObjectRef]bool, len(statuses))
	for _, st := range statuses {
		seen[st.Ref] = true
		var b strings.Builder
		for _, p := range st.Problems {
			fmt.Fprintf(&b, "%s=False %s: %s; ", p.Condition, p.Reason, p.Message)
		}
		if st.Nack != "" {
			fmt.Fprintf(&b, "rejected: %s; ", st.Nack)
		}
		fmt.Fprintf(&b, "programmed=%t", st.Programmed)
		summary := b.String()
		if s.last[st.Ref] == summary {
			continue
		}
		s.last[st.Ref] = summary
		// Not programmed without a problem is the normal state of an object no client
		// uses (yet): debug detail.
		level := slog.LevelDebug
		switch {
		case len(st.Problems) > 0 || st.Nack != "":
			level = slog.LevelWarn
		case st.Programmed:
			level = slog.LevelInfo
		}
		s.log.Log(context.Background(), level, "object status", "object", st.Ref.String(), "status", summary)
	}
	for ref := range s.last {
		if !seen[ref] {
			delete(s.last, ref)
		}
	}
}
