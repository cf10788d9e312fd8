package demo

import (
	"encoding/json"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// YAMLToJSON converts a YAML document to JSON, the form the plugin's configuration API reads
// (Envoy reads its YAML the same way).
func YAMLToJSON(data []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("parsing YAML: %w", err)
	}
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("converting YAML to JSON: %w", err)
	}
	return js, nil
}

// LoadFilterConfig reads a FilterConfig in YAML (a file of envoy-config/filters), validates it,
// and returns it with its JSON form.
func LoadFilterConfig(path string) (*apiv1alpha1.FilterConfig, []byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	js, err := YAMLToJSON(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg, err := apiv1alpha1.FilterConfigFromJSON(js)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, js, nil
}

// PluginConfig returns what Envoy passes to the plugin for the FilterConfig in the YAML file
// path: a serialized google.protobuf.Any holding an xds.type.v3.TypedStruct, the input of
// abihost's --config-file. The file is validated first, so that a broken demo configuration
// fails here with the reason rather than as refused connections.
func PluginConfig(path string) ([]byte, error) {
	_, js, err := LoadFilterConfig(path)
	if err != nil {
		return nil, err
	}
	b, err := apiv1alpha1.PluginConfigFromJSON(js)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}
