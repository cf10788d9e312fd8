package apiv1alpha1

import (
	"strings"
	"testing"
)

func TestJSONPathAt(t *testing.T) {
	js := `{"a": {"b": [1, {"c": "ü€", "d": [true, null]}], "e": "x"}, "f": 2}`
	tests := []struct {
		at   string // the text whose first byte is looked up
		want string
	}{
		{`"a"`, "a"},
		{`{"b"`, "a"},
		{`"b"`, "a.b"},
		{`1,`, "a.b[0]"},
		{`{"c"`, "a.b[1]"},
		{`"c"`, "a.b[1].c"},
		{`"ü€"`, "a.b[1].c"},
		{`"d"`, "a.b[1].d"},
		{`null`, "a.b[1].d[1]"},
		{`"e"`, "a.e"},
		{`"x"`, "a.e"},
		{`2}`, "f"},
	}
	for _, tt := range tests {
		off := strings.Index(js, tt.at)
		if got := jsonPathAt([]byte(js), off); got != tt.want {
			t.Errorf("jsonPathAt(%q) = %q, want %q", tt.at, got, tt.want)
		}
	}
	if got := jsonPathAt([]byte(`{"a": `), 100); got != "" {
		t.Errorf("past the end of truncated JSON: %q, want empty", got)
	}
}

func TestByteOffset(t *testing.T) {
	js := []byte("{\n  \"ü\": 1,\n  \"x\": 2\n}")
	// protojson counts columns in runes: "x" is at line 3, column 3.
	if got, want := byteOffset(js, 3, 3), strings.Index(string(js), `"x"`); got != want {
		t.Errorf("byteOffset(3, 3) = %d, want %d", got, want)
	}
	// The value 1 is at line 2, column 8, after the two-byte ü.
	if got, want := byteOffset(js, 2, 8), strings.Index(string(js), "1"); got != want {
		t.Errorf("byteOffset(2, 8) = %d, want %d", got, want)
	}
}

func TestFilterConfigFromJSONNamesField(t *testing.T) {
	js := "{\n  \"protocol\": \"dubbo\",\n  \"clusters\": [\n    {\"name\": \"c\", \"max_requests\": \"many\"}\n  ]\n}"
	_, err := FilterConfigFromJSON([]byte(js))
	if err == nil || !strings.HasPrefix(err.Error(), "FilterConfig JSON: clusters[0].max_requests: ") {
		t.Errorf("error = %v, want it to name clusters[0].max_requests", err)
	}
}
