package demo

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// configDir is envoy-config/, relative to this package.
const configDir = "../../envoy-config"

// demoListeners are the demo's listeners, the plugin configuration file of each, and the file
// of envoy-config/demo holding the ServiceEntry whose routes the listener serves.
var demoListeners = []struct{ addr, file, protocol, mesh string }{
	{"127.0.0.1:9090", "filters/thrift.yaml", "thrift", "demo/thrift-echo.yaml"},
	{"127.0.0.1:20880", "filters/dubbo.yaml", "dubbo", "demo/dubbo-echo.yaml"},
}

// controllerXDS is the address of the controller's xDS server in the demo (hack/run-demo.sh
// starts it there).
const controllerXDS = "127.0.0.1:15010"

// TestDemoConfigs checks that each demo configuration is a valid FilterConfig that takes its
// routes from the controller, names the route configuration the controller serves for the
// listener's service (its ServiceEntry in envoy-config/demo, at the listener's port), and
// survives the trip through the Any that the plugin receives. What those routes do is checked
// end to end by TestRunDemo.
func TestDemoConfigs(t *testing.T) {
	for _, l := range demoListeners {
		path := filepath.Join(configDir, l.file)
		cfg, _, err := LoadFilterConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.GetProtocol() != l.protocol {
			t.Errorf("%s: protocol %q, want %q", path, cfg.GetProtocol(), l.protocol)
		}
		if cfg.GetRouteConfig() != nil || len(cfg.GetClusters()) != 0 {
			t.Errorf("%s: inline routes or clusters; want everything from the controller", path)
		}
		_, port, err := net.SplitHostPort(l.addr)
		if err != nil {
			t.Fatal(err)
		}
		host := serviceEntryHost(t, filepath.Join(configDir, l.mesh), l.protocol, port)
		n, _ := strconv.ParseUint(port, 10, 32)
		want := apiv1alpha1.ResourceName(apiv1alpha1.Outbound, uint32(n), "", host)
		if got := cfg.GetRds().GetRouteConfigName(); got != want {
			t.Errorf("%s: rds.route_config_name %q, want %q (the routes of %s)", path, got, want, l.mesh)
		}
		if got := cfg.GetRds().GetConfigSource(); got != controllerXDS {
			t.Errorf("%s: rds.config_source %q, want the demo controller's %s", path, got, controllerXDS)
		}

		b, err := PluginConfig(path)
		if err != nil {
			t.Fatal(err)
		}
		var a anypb.Any
		if err := proto.Unmarshal(b, &a); err != nil {
			t.Fatal(err)
		}
		got, err := apiv1alpha1.ParseFilterConfig(&a)
		if err != nil {
			t.Fatalf("%s: the plugin would refuse its Any: %v", path, err)
		}
		if !proto.Equal(got, cfg) {
			t.Errorf("%s: the plugin would read %v, want %v", path, got, cfg)
		}
	}
}

// serviceEntryHost returns the host of the one ServiceEntry in the manifest file path that
// has a port number port named for protocol ("tcp-<protocol>...", the convention that makes
// the controller serve it).
func serviceEntryHost(t *testing.T, path, protocol, port string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	type serviceEntry struct {
		Kind string
		Spec struct {
			Hosts []string
			Ports []struct {
				Number int
				Name   string
			}
		}
	}
	var hosts []string
	dec := yaml.NewDecoder(f)
	for {
		var se serviceEntry
		if err := dec.Decode(&se); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if se.Kind != "ServiceEntry" {
			continue
		}
		for _, p := range se.Spec.Ports {
			if strconv.Itoa(p.Number) == port && strings.HasPrefix(p.Name, "tcp-"+protocol) {
				hosts = append(hosts, se.Spec.Hosts...)
			}
		}
	}
	if len(hosts) != 1 {
		t.Fatalf("%s: ServiceEntry hosts with a %s port %s: %v, want one", path, protocol, port, hosts)
	}
	return hosts[0]
}

func TestPluginConfigRejectsInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(path, []byte("protocol: thrift\nroute_config: {routes: [{route: {cluster: nowhere}}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := PluginConfig(path); err == nil || !strings.Contains(err.Error(), "nowhere") {
		t.Errorf("PluginConfig of a route to a missing cluster: %v, want an error naming it", err)
	}
}

// TestEnvoyBootstrap checks that envoy-demo.yaml is a valid Envoy bootstrap with the plugin on
// each demo listener, configured exactly as the demo file of that listener, and the plainText
// cluster the plugin's upstream connections need.
func TestEnvoyBootstrap(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(configDir, "envoy-demo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	js, err := YAMLToJSON(data)
	if err != nil {
		t.Fatal(err)
	}
	var bs bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{Resolver: golangFilterResolver{}}).Unmarshal(js, &bs); err != nil {
		t.Fatalf("envoy-demo.yaml is not a Bootstrap: %v", err)
	}
	if err := bs.Validate(); err != nil {
		t.Errorf("envoy-demo.yaml: Envoy's validation rules: %v", err)
	}

	listeners := bs.GetStaticResources().GetListeners()
	if len(listeners) != len(demoListeners) {
		t.Fatalf("%d listeners, want %d", len(listeners), len(demoListeners))
	}
	for i, l := range demoListeners {
		sa := listeners[i].GetAddress().GetSocketAddress()
		if got := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()); got != l.addr {
			t.Errorf("listener %d at %s, want %s", i, got, l.addr)
		}
		chains := listeners[i].GetFilterChains()
		if len(chains) != 1 || len(chains[0].GetFilters()) != 1 {
			t.Fatalf("listener %s: want one filter chain with one filter", l.addr)
		}
		f := chains[0].GetFilters()[0]
		if f.GetName() != "envoy.filters.network.golang" {
			t.Errorf("listener %s: filter %q, want envoy.filters.network.golang", l.addr, f.GetName())
		}
		gc := golangConfig(t, f.GetTypedConfig())
		for field, want := range map[string]any{"is_terminal_filter": true, "library_id": "meltemi",
			"library_path": "bin/meltemi.so", "plugin_name": "meltemi"} {
			if got := gc.Get(gc.Descriptor().Fields().ByName(protoreflect.Name(field))).Interface(); got != want {
				t.Errorf("listener %s: %s = %v, want %v", l.addr, field, got, want)
			}
		}
		pc := new(anypb.Any)
		proto.Merge(pc, gc.Get(gc.Descriptor().Fields().ByName("plugin_config")).Message().Interface())
		got, err := apiv1alpha1.ParseFilterConfig(pc)
		if err != nil {
			t.Fatalf("listener %s: the plugin would refuse its plugin_config: %v", l.addr, err)
		}
		want, _, err := LoadFilterConfig(filepath.Join(configDir, l.file))
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Errorf("listener %s: plugin_config differs from %s:\n got %v\nwant %v", l.addr, l.file, got, want)
		}
	}

	clusters := bs.GetStaticResources().GetClusters()
	if len(clusters) != 1 || clusters[0].GetName() != "plainText" ||
		clusters[0].GetType() != clusterv3.Cluster_ORIGINAL_DST ||
		clusters[0].GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
		t.Errorf("clusters %v, want the one plainText ORIGINAL_DST CLUSTER_PROVIDED cluster", clusters)
	}
}

// golangFilterName is the message of envoy.filters.network.golang's configuration. It is a
// contrib extension: go-control-plane's envoy module does not have it, so the test builds
// its descriptor from the proto quoted in shared/reference/envoy-golang-network-abi.md §1.5.
const golangFilterName = "envoy.extensions.filters.network.golang.v3alpha.Config"

var golangFilterType = func() protoreflect.MessageType {
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("contrib/envoy/extensions/filters/network/golang/v3alpha/golang.proto"),
		Package:    proto.String("envoy.extensions.filters.network.golang.v3alpha"),
		Dependency: []string{"google/protobuf/any.proto"},
		Syntax:     proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Config"),
			Field: []*descriptorpb.FieldDescriptorProto{
				scalarField("is_terminal_filter", 1, descriptorpb.FieldDescriptorProto_TYPE_BOOL),
				scalarField("library_id", 2, descriptorpb.FieldDescriptorProto_TYPE_STRING),
				scalarField("library_path", 3, descriptorpb.FieldDescriptorProto_TYPE_STRING),
				scalarField("plugin_name", 4, descriptorpb.FieldDescriptorProto_TYPE_STRING),
				{
					Name: proto.String("plugin_config"), JsonName: proto.String("pluginConfig"), Number: proto.Int32(5),
					Label:    descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
					Type:     descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(),
					TypeName: proto.String(".google.protobuf.Any"),
				},
			},
		}},
	}, protoregistry.GlobalFiles)
	if err != nil {
		panic(fmt.Sprintf("golang filter descriptor: %v", err))
	}
	return dynamicpb.NewMessageType(fd.Messages().Get(0))
}()

func scalarField(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type) *descriptorpb.FieldDescriptorProto {
	return &descriptorpb.FieldDescriptorProto{
		Name: proto.String(name), Number: proto.Int32(num),
		Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: typ.Enum(),
	}
}

// golangFilterResolver resolves the golang filter's configuration type and every type that
// the Go protobuf registry knows (Envoy's, from go-control-plane, and xds.type.v3.TypedStruct).
type golangFilterResolver struct{}

func (golangFilterResolver) FindMessageByName(name protoreflect.FullName) (protoreflect.MessageType, error) {
	if name == golangFilterName {
		return golangFilterType, nil
	}
	return protoregistry.GlobalTypes.FindMessageByName(name)
}

func (r golangFilterResolver) FindMessageByURL(url string) (protoreflect.MessageType, error) {
	return r.FindMessageByName(protoreflect.FullName(url[strings.LastIndexByte(url, '/')+1:]))
}

func (golangFilterResolver) FindExtensionByName(name protoreflect.FullName) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByName(name)
}

func (golangFilterResolver) FindExtensionByNumber(m protoreflect.FullName, n protoreflect.FieldNumber) (protoreflect.ExtensionType, error) {
	return protoregistry.GlobalTypes.FindExtensionByNumber(m, n)
}

// golangConfig unpacks a filter's typed_config as the golang filter's configuration.
func golangConfig(t *testing.T, a *anypb.Any) protoreflect.Message {
	t.Helper()
	if got := a.GetTypeUrl(); got != "type.googleapis.com/"+golangFilterName {
		t.Fatalf("typed_config is a %s, want %s", got, golangFilterName)
	}
	m := golangFilterType.New()
	if err := proto.Unmarshal(a.GetValue(), m.Interface()); err != nil {
		t.Fatalf("typed_config: %v", err)
	}
	return m
}
