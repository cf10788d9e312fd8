package apiv1alpha1

import (
	"errors"
	"fmt"
	"strings"

	udpav1 "github.com/cncf/xds/go/udpa/type/v1"
	xdsv3 "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// FilterConfigTypeURL is the type URL that names FilterConfig, in an Any or in the type_url
// of a TypedStruct.
const FilterConfigTypeURL = "type.googleapis.com/meltemi.plugin.v1alpha1.FilterConfig"

// Message names that ParseFilterConfig accepts as the type of the Any it is given.
const (
	xdsTypedStructName  = "xds.type.v3.TypedStruct"
	udpaTypedStructName = "udpa.type.v1.TypedStruct"
	filterConfigName    = "meltemi.plugin.v1alpha1.FilterConfig"
)

// strictJSON rejects unknown fields: a misspelt field must not be silently ignored.
var strictJSON = protojson.UnmarshalOptions{}

// ParseFilterConfig turns the plugin_config that Envoy hands to the filter into a
// FilterConfig and validates it.
//
// a is normally an xds.type.v3.TypedStruct (or the older udpa.type.v1.TypedStruct), as
// Envoy's YAML writes it:
//
//	plugin_config:
//	  "@type": type.googleapis.com/xds.type.v3.TypedStruct
//	  type_url: type.googleapis.com/meltemi.plugin.v1alpha1.FilterConfig
//	  value: {protocol: dubbo, ...}
//
// The TypedStruct's type_url must name FilterConfig, or be empty as in the examples of
// Envoy's golang filter documentation. Its value is converted with protojson: unknown fields
// and values of the wrong type are errors. A FilterConfig packed directly in the Any is
// accepted too.
func ParseFilterConfig(a *anypb.Any) (*FilterConfig, error) {
	cfg, err := decodeFilterConfig(a)
	if err != nil {
		return nil, fmt.Errorf("plugin_config: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("plugin_config: invalid FilterConfig: %w", err)
	}
	return cfg, nil
}

func decodeFilterConfig(a *anypb.Any) (*FilterConfig, error) {
	if a == nil || (a.GetTypeUrl() == "" && len(a.GetValue()) == 0) {
		return nil, errors.New("missing: the filter needs a FilterConfig")
	}
	switch name := messageName(a.GetTypeUrl()); name {
	case xdsTypedStructName:
		var ts xdsv3.TypedStruct
		if err := proto.Unmarshal(a.GetValue(), &ts); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", name, err)
		}
		return fromTypedStruct(ts.GetTypeUrl(), ts.GetValue())
	case udpaTypedStructName:
		var ts udpav1.TypedStruct
		if err := proto.Unmarshal(a.GetValue(), &ts); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", name, err)
		}
		return fromTypedStruct(ts.GetTypeUrl(), ts.GetValue())
	case filterConfigName:
		cfg := new(FilterConfig)
		if err := proto.Unmarshal(a.GetValue(), cfg); err != nil {
			return nil, fmt.Errorf("decoding %s: %w", name, err)
		}
		if err := checkNoUnknown(cfg.ProtoReflect(), ""); err != nil {
			return nil, err
		}
		return cfg, nil
	default:
		return nil, fmt.Errorf("type %q: want %s wrapping %s, or %s",
			a.GetTypeUrl(), xdsTypedStructName, FilterConfigTypeURL, FilterConfigTypeURL)
	}
}

// messageName returns the message name of a type URL: what follows its last slash.
func messageName(typeURL string) string {
	return typeURL[strings.LastIndexByte(typeURL, '/')+1:]
}

func fromTypedStruct(typeURL string, value *structpb.Struct) (*FilterConfig, error) {
	if typeURL != "" && messageName(typeURL) != filterConfigName {
		return nil, fmt.Errorf("type_url %q: want %s", typeURL, FilterConfigTypeURL)
	}
	if value == nil {
		value = new(structpb.Struct)
	}
	// Envoy's own filters read a TypedStruct the same way, through its JSON form, so a
	// value means here what it would mean to them.
	js, err := protojson.Marshal(value)
	if err != nil {
		return nil, fmt.Errorf("value: %w", err)
	}
	cfg := new(FilterConfig)
	if err := strictJSON.Unmarshal(js, cfg); err != nil {
		return nil, fmt.Errorf("value: %w", withJSONPath(js, err))
	}
	return cfg, nil
}

// checkNoUnknown reports the first message, m or one nested in it, that holds fields this
// version of the API does not know: binary decoding keeps them silently, and they would
// otherwise be ignored.
func checkNoUnknown(m protoreflect.Message, path string) error {
	if len(m.GetUnknown()) > 0 {
		if path == "" {
			return errors.New("unknown fields in FilterConfig")
		}
		return fmt.Errorf("%s: unknown fields", path)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := joinPath(path, string(fd.Name()))
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = checkNoUnknown(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i))
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = checkNoUnknown(mv.Message(), fmt.Sprintf("%s[%q]", p, k.String()))
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = checkNoUnknown(v.Message(), p)
		}
		return err == nil
	})
	return err
}

func joinPath(parent, field string) string {
	if parent == "" {
		return field
	}
	return parent + "." + field
}

// FilterConfigFromJSON parses the JSON form of a FilterConfig (proto or JSON field names;
// YAML converted to JSON works the same) and validates it. Unknown fields are errors.
func FilterConfigFromJSON(data []byte) (*FilterConfig, error) {
	cfg := new(FilterConfig)
	if err := strictJSON.Unmarshal(data, cfg); err != nil {
		return nil, fmt.Errorf("FilterConfig JSON: %w", withJSONPath(data, err))
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid FilterConfig: %w", err)
	}
	return cfg, nil
}

// TypedStructAny returns the plugin_config that Envoy passes to the filter for cfg: an Any
// holding an xds.type.v3.TypedStruct whose value is cfg in its JSON form.
func TypedStructAny(cfg *FilterConfig) (*anypb.Any, error) {
	js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encoding FilterConfig: %w", err)
	}
	return TypedStructAnyFromJSON(js)
}

// PluginConfigFromJSON returns the bytes Envoy hands to the plugin's config entry point
// (envoyGoFilterOnNetworkFilterConfig) for a filter whose plugin_config is the TypedStruct of
// TypedStructAnyFromJSON(data): Envoy serializes the Any itself. Hosts that load the plugin
// without Envoy (the ABI host's --config-file) take these bytes. Like TypedStructAnyFromJSON,
// it does not validate data.
func PluginConfigFromJSON(data []byte) ([]byte, error) {
	a, err := TypedStructAnyFromJSON(data)
	if err != nil {
		return nil, err
	}
	b, err := proto.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("serializing plugin_config: %w", err)
	}
	return b, nil
}

// TypedStructAnyFromJSON returns the plugin_config that Envoy passes to the filter when its
// YAML holds data (a JSON object, the FilterConfig's JSON form) as the TypedStruct's value.
// Like Envoy, it does not check that data is a valid FilterConfig, so that tests can hand the
// filter invalid configurations too.
func TypedStructAnyFromJSON(data []byte) (*anypb.Any, error) {
	value := new(structpb.Struct)
	if err := protojson.Unmarshal(data, value); err != nil {
		return nil, fmt.Errorf("TypedStruct value: %w", err)
	}
	a, err := anypb.New(&xdsv3.TypedStruct{TypeUrl: FilterConfigTypeURL, Value: value})
	if err != nil {
		return nil, fmt.Errorf("packing TypedStruct: %w", err)
	}
	return a, nil
}
