package builtin

import (
	"strings"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/dubbo"
)

type thirdParty struct{ name string }

func (p thirdParty) Name() string                             { return p.name }
func (p thirdParty) New(codecs.Options) (codecs.Codec, error) { return nil, nil }

func TestRegistry(t *testing.T) {
	r, err := Registry(thirdParty{"trpc"})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(r.Names(), ","); got != "dubbo,thrift,trpc" {
		t.Fatalf("names %q", got)
	}
	for _, name := range []string{"dubbo", "thrift"} {
		c, err := r.New(name, codecs.Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Name() != name {
			t.Fatalf("codec for %q is named %q", name, c.Name())
		}
	}
	if _, err := r.New("thrift", codecs.Options{Params: map[string]string{"transport": "carrier-pigeon"}}); err == nil {
		t.Fatal("bad thrift params accepted")
	}
	if _, err := Registry(dubbo.Factory{}); err == nil {
		t.Fatal("a second dubbo codec replaced the built-in one")
	}
}
