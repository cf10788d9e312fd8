package envoyfilter

import (
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	xdsv3 "github.com/cncf/xds/go/xds/type/v3"
	golangv3alpha "github.com/envoyproxy/go-control-plane/contrib/envoy/extensions/filters/network/golang/v3alpha"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	apinetworking "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// strict decodes like Istio's validation and Envoy do: unknown fields are errors.
var strict = protojson.UnmarshalOptions{DiscardUnknown: false}

// TestGoldenPatchesUnmarshalStrictly reads every golden file back as a reader would: each
// spec strictly as Istio's EnvoyFilter, each patch value strictly as the Envoy type it
// patches (a listener filter whose typed_config is the contrib golang Config, whose
// plugin_config is a TypedStruct holding a valid FilterConfig; or a Cluster), and checks
// that the matches are what Istio needs to find Istio's own listeners and filters.
func TestGoldenPatchesUnmarshalStrictly(t *testing.T) {
	var patches, listeners, clusters int
	for _, name := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			_, opts := loadCase(t, name)
			opts = opts.withDefaults()
			data, err := os.ReadFile(filepath.Join("testdata", name+".golden.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			js, err := yaml.YAMLToJSON(data)
			if err != nil {
				t.Fatal(err)
			}
			var golden struct {
				Filters []struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
					Metadata   struct {
						Name      string            `json:"name"`
						Namespace string            `json:"namespace"`
						Labels    map[string]string `json:"labels"`
					} `json:"metadata"`
					Spec json.RawMessage `json:"spec"`
				} `json:"filters"`
				Origins map[string][]model.ObjectRef `json:"origins"`
			}
			if err := json.Unmarshal(js, &golden); err != nil {
				t.Fatal(err)
			}
			if len(golden.Origins) != len(golden.Filters) {
				t.Errorf("%d origins for %d filters", len(golden.Origins), len(golden.Filters))
			}
			for _, f := range golden.Filters {
				key := f.Metadata.Namespace + "/" + f.Metadata.Name
				if f.APIVersion != "networking.istio.io/v1alpha3" || f.Kind != "EnvoyFilter" {
					t.Errorf("%s: %s %s", key, f.APIVersion, f.Kind)
				}
				checkMeta(t, key, f.Metadata.Name, f.Metadata.Labels)
				if len(golden.Origins[key]) == 0 {
					t.Errorf("%s has no origin", key)
				}
				spec := new(apinetworking.EnvoyFilter)
				if err := strict.Unmarshal(f.Spec, spec); err != nil {
					t.Fatalf("%s: spec: %v", key, err)
				}
				// Every filter selects the plugin label; inbound ones may narrow further to the
				// service's workloads.
				sel := spec.GetWorkloadSelector().GetLabels()
				if strings.HasPrefix(f.Metadata.Name, "meltemi-inbound-") {
					for k, v := range opts.WorkloadLabels {
						if sel[k] != v {
							t.Errorf("%s: workload selector %v lacks %s=%s", key, sel, k, v)
						}
					}
				} else if !reflect.DeepEqual(sel, opts.WorkloadLabels) {
					t.Errorf("%s: workload selector %v, want %v", key, sel, opts.WorkloadLabels)
				}
				if spec.GetPriority() <= 0 || len(spec.GetTargetRefs()) != 0 || len(spec.GetConfigPatches()) == 0 {
					t.Errorf("%s: priority %d, targetRefs %v, %d patches", key, spec.GetPriority(), spec.GetTargetRefs(), len(spec.GetConfigPatches()))
				}
				for i, p := range spec.GetConfigPatches() {
					patches++
					switch p.GetApplyTo() {
					case apinetworking.EnvoyFilter_NETWORK_FILTER:
						listeners++
						checkListenerPatch(t, key, i, p, opts)
					case apinetworking.EnvoyFilter_CLUSTER:
						clusters++
						if f.Metadata.Name != PlainTextFilterName {
							t.Errorf("%s: cluster patch outside %s", key, PlainTextFilterName)
						}
						checkClusterPatch(t, key, i, p, opts)
					default:
						t.Errorf("%s patch %d: applyTo %v", key, i, p.GetApplyTo())
					}
				}
			}
		})
	}
	t.Logf("%d patches: %d listener filters, %d clusters", patches, listeners, clusters)
	if listeners == 0 || clusters == 0 {
		t.Errorf("golden files hold %d listener and %d cluster patches; want both kinds", listeners, clusters)
	}
}

func checkMeta(t *testing.T, key, name string, labels map[string]string) {
	t.Helper()
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 || len(name) > 63 {
		t.Errorf("%s: name %q: %v (length %d)", key, name, errs, len(name))
	}
	if labels[LabelManagedBy] != ManagedBy || labels[LabelOwner] == "" {
		t.Errorf("%s: labels %v", key, labels)
	}
	for k, v := range labels {
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			t.Errorf("%s: label %s=%q: %v", key, k, v, errs)
		}
	}
}

// valueJSON is a patch value in its JSON form, as Istio reads it.
func valueJSON(t *testing.T, v *structpb.Struct) []byte {
	t.Helper()
	if v == nil {
		t.Fatal("no patch value")
	}
	js, err := protojson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func checkListenerPatch(t *testing.T, key string, i int, p *apinetworking.EnvoyFilter_EnvoyConfigObjectPatch, opts Options) {
	t.Helper()
	if op := p.GetPatch().GetOperation(); op != apinetworking.EnvoyFilter_Patch_REPLACE {
		t.Errorf("%s patch %d: operation %v, want REPLACE", key, i, op)
	}
	m := p.GetMatch()
	lm := m.GetListener()
	fc := lm.GetFilterChain()
	if lm == nil || fc.GetFilter().GetName() != TCPProxyFilterName || fc.GetFilter().GetSubFilter() != nil ||
		lm.GetPortNumber() != 0 || lm.GetListenerFilter() != "" || fc.GetName() != "" || fc.GetSni() != "" ||
		fc.GetTransportProtocol() != "" || fc.GetApplicationProtocols() != "" || m.GetProxy() != nil || m.GetRouteConfiguration() != nil {
		t.Errorf("%s patch %d: match %v: want only a listener name, the tcp_proxy filter and (inbound) a destination port", key, i, m)
	}

	filter := new(listenerv3.Filter)
	if err := strict.Unmarshal(valueJSON(t, p.GetPatch().GetValue()), filter); err != nil {
		t.Fatalf("%s patch %d: listener filter: %v", key, i, err)
	}
	if filter.GetName() != GolangFilterName || filter.GetTypedConfig().GetTypeUrl() != GolangConfigTypeURL {
		t.Errorf("%s patch %d: filter %q, typed_config %q", key, i, filter.GetName(), filter.GetTypedConfig().GetTypeUrl())
	}
	msg, err := filter.GetTypedConfig().UnmarshalNew()
	if err != nil {
		t.Fatalf("%s patch %d: typed_config: %v", key, i, err)
	}
	gc, ok := msg.(*golangv3alpha.Config)
	if !ok {
		t.Fatalf("%s patch %d: typed_config is %T", key, i, msg)
	}
	if !gc.GetIsTerminalFilter() || gc.GetLibraryId() != opts.LibraryID || gc.GetLibraryPath() != opts.LibraryPath || gc.GetPluginName() != PluginName {
		t.Errorf("%s patch %d: golang config %v", key, i, gc)
	}
	msg, err = gc.GetPluginConfig().UnmarshalNew()
	if err != nil {
		t.Fatalf("%s patch %d: plugin_config: %v", key, i, err)
	}
	ts, ok := msg.(*xdsv3.TypedStruct)
	if !ok || ts.GetTypeUrl() != apiv1alpha1.FilterConfigTypeURL {
		t.Fatalf("%s patch %d: plugin_config %T %v", key, i, msg, msg)
	}
	cfgJSON, err := protojson.Marshal(ts.GetValue())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := apiv1alpha1.FilterConfigFromJSON(cfgJSON)
	if err != nil {
		t.Fatalf("%s patch %d: %v", key, i, err)
	}
	if cfg.GetProtocol() == "" || cfg.GetStatPrefix() == "" {
		t.Errorf("%s patch %d: filter config %v", key, i, cfg)
	}

	switch m.GetContext() {
	case apinetworking.EnvoyFilter_SIDECAR_OUTBOUND:
		// <VIP>_<port>, the port being the one of the route configuration.
		vip, port, ok := strings.Cut(lm.GetName(), "_")
		ip, err := netip.ParseAddr(vip)
		if !ok || err != nil || ip.String() != vip || fc.GetDestinationPort() != 0 {
			t.Errorf("%s patch %d: outbound listener %q (destination port %d): want <VIP>_<port>", key, i, lm.GetName(), fc.GetDestinationPort())
		}
		rds := cfg.GetRds()
		dir, rport, subset, _, err := apiv1alpha1.ParseResourceName(rds.GetRouteConfigName())
		if err != nil || dir != apiv1alpha1.Outbound || subset != "" || strconv.FormatUint(uint64(rport), 10) != port {
			t.Errorf("%s patch %d: listener %q, rds %q (%v)", key, i, lm.GetName(), rds.GetRouteConfigName(), err)
		}
		if rds.GetConfigSource() != opts.XDSAddress || cfg.GetStatPrefix() != rds.GetRouteConfigName() {
			t.Errorf("%s patch %d: rds %v, stat_prefix %q", key, i, rds, cfg.GetStatPrefix())
		}
	case apinetworking.EnvoyFilter_SIDECAR_INBOUND:
		if lm.GetName() != VirtualInboundListener || fc.GetDestinationPort() == 0 {
			t.Errorf("%s patch %d: inbound listener %q, destination port %d", key, i, lm.GetName(), fc.GetDestinationPort())
		}
		rc := cfg.GetRouteConfig()
		if dir, _, _, _, err := apiv1alpha1.ParseResourceName(rc.GetName()); err != nil || dir != apiv1alpha1.Inbound {
			t.Errorf("%s patch %d: inbound route configuration %q (%v)", key, i, rc.GetName(), err)
		}
		local := net.JoinHostPort("127.0.0.1", strconv.FormatUint(uint64(fc.GetDestinationPort()), 10))
		if len(cfg.GetClusters()) != 1 || len(cfg.GetClusters()[0].GetEndpoints()) != 1 || cfg.GetClusters()[0].GetEndpoints()[0].GetAddress() != local {
			t.Errorf("%s patch %d: inbound clusters %v, want one to %s", key, i, cfg.GetClusters(), local)
		}
	default:
		t.Errorf("%s patch %d: context %v", key, i, m.GetContext())
	}
}

func checkClusterPatch(t *testing.T, key string, i int, p *apinetworking.EnvoyFilter_EnvoyConfigObjectPatch, opts Options) {
	t.Helper()
	m := p.GetMatch()
	// Istio adds a cluster with ADD whatever the cluster match says; ours has none, and the
	// outbound context so that Istio inserts it once.
	if p.GetPatch().GetOperation() != apinetworking.EnvoyFilter_Patch_ADD || m.GetContext() != apinetworking.EnvoyFilter_SIDECAR_OUTBOUND ||
		m.GetObjectTypes() != nil || m.GetProxy() != nil {
		t.Errorf("%s patch %d: cluster patch %v", key, i, p)
	}
	c := new(clusterv3.Cluster)
	if err := strict.Unmarshal(valueJSON(t, p.GetPatch().GetValue()), c); err != nil {
		t.Fatalf("%s patch %d: cluster: %v", key, i, err)
	}
	if c.GetName() != PlainTextClusterName || c.GetType() != clusterv3.Cluster_ORIGINAL_DST || c.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED ||
		c.GetConnectTimeout().AsDuration() != PlainTextConnectTimeout {
		t.Errorf("%s patch %d: cluster %v", key, i, c)
	}
	want := opts.PlainTextTransportSocket
	if !proto.Equal(c.GetTransportSocket(), want) {
		t.Errorf("%s patch %d: transport socket %v, want %v", key, i, c.GetTransportSocket(), want)
	}
	if ts := c.GetTransportSocket(); ts != nil {
		if _, err := ts.GetTypedConfig().UnmarshalNew(); err != nil {
			t.Errorf("%s patch %d: transport socket: %v", key, i, err)
		}
	}
}
