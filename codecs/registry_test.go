package codecs

import (
	"errors"
	"strings"
	"testing"
)

type stubFactory struct{ name string }

func (s stubFactory) Name() string { return s.name }
func (s stubFactory) New(opts Options) (Codec, error) {
	if len(opts.Params) > 0 {
		return nil, errors.New("no params accepted")
	}
	return nil, nil
}

func TestRegistry(t *testing.T) {
	r, err := NewRegistry(stubFactory{"b"}, stubFactory{"a"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Names(), ","); got != "a,b" {
		t.Fatalf("Names = %q, want a,b", got)
	}
	if err := r.Register(stubFactory{"a"}); err == nil {
		t.Fatal("duplicate registration accepted")
	}
	if err := r.Register(stubFactory{""}); err == nil {
		t.Fatal("empty name accepted")
	}
	if _, err := r.New("nope", Options{}); err == nil || !strings.Contains(err.Error(), `unknown protocol "nope"`) {
		t.Fatalf("unknown protocol error = %v", err)
	}
	if _, err := r.New("a", Options{Params: map[string]string{"x": "y"}}); err == nil || !strings.Contains(err.Error(), "configure a") {
		t.Fatalf("bad options error = %v", err)
	}
	if _, err := r.New("a", Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestKindAndReasonNames(t *testing.T) {
	if KindErrorResponse.String() != "error_response" || Kind(99).String() != "kind(99)" {
		t.Fatal("kind names")
	}
	for _, r := range Reasons() {
		if strings.HasPrefix(r.String(), "reason(") {
			t.Fatalf("reason %d has no name", r)
		}
	}
	if !KindOneway.IsRequest() || KindHeartbeatRequest.IsRequest() || !KindErrorResponse.IsResponse() {
		t.Fatal("kind predicates")
	}
	if (Options{}).EffectiveMaxFrameSize() != DefaultMaxFrameSize || (Options{MaxFrameSize: 5}).EffectiveMaxFrameSize() != 5 {
		t.Fatal("max frame size default")
	}
}
