package codecs_test

import (
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/dubbo"
	"github.com/meltemi-mesh/meltemi/codecs/thrift"
)

// bareCodec does not implement Multiplexer.
type bareCodec struct{}

func (bareCodec) Name() string         { return "bare" }
func (bareCodec) NewConn() codecs.Conn { return nil }

// pingPongCodec declares it cannot multiplex.
type pingPongCodec struct{ bareCodec }

func (pingPongCodec) Multiplexes() bool { return false }

func TestMultiplexes(t *testing.T) {
	if !codecs.Multiplexes(bareCodec{}) {
		t.Error("a codec without Multiplexer must be taken to multiplex")
	}
	if codecs.Multiplexes(pingPongCodec{}) {
		t.Error("a codec whose Multiplexes returns false must not be taken to multiplex")
	}
	for _, f := range []codecs.Factory{dubbo.Factory{}, thrift.Factory{}} {
		c, err := f.New(codecs.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !codecs.Multiplexes(c) {
			t.Errorf("%s: built-in codecs have request ids and multiplex", f.Name())
		}
	}
}
