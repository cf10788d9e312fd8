package apiv1alpha1

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// FuzzFilterConfigFromJSON checks that any JSON, valid or not, gives a config or an error,
// never a panic, and that an accepted config survives the trip through a TypedStruct.
func FuzzFilterConfigFromJSON(f *testing.F) {
	f.Add([]byte(demoJSON))
	f.Add([]byte("{" + minimalJSON + "}"))
	f.Add([]byte(`{"protocol": "dubbo", "max_frame_size": -1}`))
	f.Add([]byte("{\n \"clusters\": [{\"endpoints\": [{\"address\": 5}]}]\n}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := FilterConfigFromJSON(data)
		if err != nil {
			return
		}
		a, err := TypedStructAny(cfg)
		if err != nil {
			t.Fatalf("TypedStructAny of a valid config: %v", err)
		}
		got, err := ParseFilterConfig(a)
		if err != nil {
			t.Fatalf("ParseFilterConfig of a valid config: %v", err)
		}
		if !proto.Equal(got, cfg) {
			t.Fatalf("round trip changed the config:\n got %v\nwant %v", got, cfg)
		}
	})
}

// FuzzParseFilterConfig feeds the bytes of an Any, as Envoy hands them over, to the parser.
func FuzzParseFilterConfig(f *testing.F) {
	for _, js := range []string{demoJSON, "{" + minimalJSON + "}"} {
		a, err := TypedStructAnyFromJSON([]byte(js))
		if err != nil {
			f.Fatal(err)
		}
		b, err := proto.Marshal(a)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		a := new(anypb.Any)
		if proto.Unmarshal(data, a) != nil {
			return
		}
		cfg, err := ParseFilterConfig(a)
		if err == nil && cfg.Validate() != nil {
			t.Fatalf("ParseFilterConfig returned an invalid config: %v", cfg)
		}
	})
}
