package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGeneratorOptions(t *testing.T) {
	base := istioFlags{rootNamespace: "istio-system", workloadLabel: "meltemi.io/plugin=enabled",
		pluginPath: "/p.so", xdsService: "ctl.ns.svc:15010", inbound: true}
	opts, err := generatorOptions(base)
	if err != nil {
		t.Fatal(err)
	}
	if opts.WorkloadLabels["meltemi.io/plugin"] != "enabled" || len(opts.WorkloadLabels) != 1 ||
		opts.LibraryPath != "/p.so" || opts.XDSAddress != "ctl.ns.svc:15010" || !opts.Inbound || opts.PlainTextTransportSocket != nil {
		t.Errorf("options %+v do not carry the flags", opts)
	}

	ts := filepath.Join(t.TempDir(), "ts.yaml")
	if err := os.WriteFile(ts, []byte(`name: envoy.transport_sockets.tls
typed_config:
  "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
  sni: example.com
`), 0o600); err != nil {
		t.Fatal(err)
	}
	f := base
	f.plainTextTS = ts
	opts, err = generatorOptions(f)
	if err != nil {
		t.Fatal(err)
	}
	if got := opts.PlainTextTransportSocket.GetName(); got != "envoy.transport_sockets.tls" {
		t.Errorf("transport socket %q", got)
	}

	for _, bad := range []func(*istioFlags){
		func(f *istioFlags) { f.workloadLabel = "novalue" },
		func(f *istioFlags) { f.workloadLabel = "bad key=x" },
		func(f *istioFlags) { f.xdsService = "noport" },
		func(f *istioFlags) { f.rootNamespace = "Not_A_Namespace" },
		func(f *istioFlags) { f.plainTextTS = filepath.Join(t.TempDir(), "missing.yaml") },
	} {
		f := base
		bad(&f)
		if _, err := generatorOptions(f); err == nil {
			t.Errorf("%+v: no error", f)
		}
	}
	if _, err := newIstioWriter(nil, istioFlags{workloadLabel: "a=b", vipRange: "240.240.0.0/99"}, nil, nil, nil); err == nil || !strings.Contains(err.Error(), "--vip-range") {
		t.Errorf("bad --vip-range: %v", err)
	}
}
