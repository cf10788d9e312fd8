// Command boomplugin is Meltemi's plugin with one more codec, "thrift-boom", for the
// end-to-end tests of e2e/proxy only: it is the thrift codec, except that decoding a request
// for the method "boom", or a reply (or exception) for the method "boom_reply", panics. It
// shows what a bug inside a codec does to live traffic, on either side of the proxy.
package main

import (
	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/thrift"
	"github.com/meltemi-mesh/meltemi/plugin/envoy"
)

// Meltemi's own registration, with the extra codec: how a third-party codec is compiled in.
func init() { envoy.Register(boomFactory{}) }

func main() {}

// boomFactory makes thrift codecs whose Conns panic on a "boom" request.
type boomFactory struct{}

func (boomFactory) Name() string { return "thrift-boom" }

func (boomFactory) New(opts codecs.Options) (codecs.Codec, error) {
	c, err := thrift.Factory{}.New(opts)
	if err != nil {
		return nil, err
	}
	return boomCodec{c}, nil
}

type boomCodec struct{ codecs.Codec }

func (boomCodec) Name() string { return "thrift-boom" }

func (c boomCodec) NewConn() codecs.Conn { return boomConn{c.Codec.NewConn()} }

type boomConn struct{ codecs.Conn }

func (c boomConn) Decode(buf []byte) (codecs.Frame, int, error) {
	f, n, err := c.Conn.Decode(buf)
	if f == nil {
		return f, n, err
	}
	switch m, _ := f.Attribute("method"); {
	case m == "boom" && f.Kind().IsRequest():
		panic("thrift-boom: injected panic on a boom request")
	case m == "boom_reply" && f.Kind().IsResponse():
		panic("thrift-boom: injected panic on a boom_reply response")
	}
	return f, n, err
}
