package dubbo

import (
	"strings"
	"testing"

	hessian2 "github.com/apache/dubbo-go-hessian2"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/codectest"
)

// benchRequest is a ~1 KiB request as dubbo-go writes one: a string, an int, an object with
// its class definition, a map and a list as arguments, and the usual attachments.
func benchRequest(tb testing.TB) []byte {
	order := map[string]any{
		"_class": "org.apache.dubbo.sample.Order", "id": int64(982374), "customer": "customer-0042",
		"note": strings.Repeat("deliver to the back door, ", 14), "total": 129.95, "paid": true,
	}
	body := enc(tb, "2.0.2", "org.apache.dubbo.sample.OrderService", "1.0.0", "PlaceOrder",
		"Ljava/lang/String;ILorg/apache/dubbo/sample/Order;Ljava/util/Map;Ljava/util/List;",
		"req-5f1c2a9e-8b7d-4e21-a3c6-0f9d2b4e7a11", int32(3), order,
		map[any]any{"channel": "web", "locale": "en-GB", "coupon": "SPRING24", "priority": int32(2)},
		[]any{"sku-1001", "sku-1002", "sku-2044", int32(1), int32(2), int32(1)},
		map[string]string{
			"path": "org.apache.dubbo.sample.OrderService", "interface": "org.apache.dubbo.sample.OrderService",
			"version": "1.0.0", "group": "checkout", "timeout": "3000", "x-tenant": "acme",
			"traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
			"x-request-id": "b3c1e6a0-4d2f-4f8e-9c1a-7e5d3b2a1f00",
		})
	return frameOf(flagsRequest, 0, 1, body)
}

func TestBenchRequestSize(t *testing.T) {
	b := benchRequest(t)
	if len(b) < 900 || len(b) > 1200 {
		t.Fatalf("benchmark request is %d bytes, want about 1 KiB", len(b))
	}
	f := decode(t, b)
	for k, want := range map[string]string{"service": "org.apache.dubbo.sample.OrderService", "method": "PlaceOrder",
		"version": "1.0.0", "x-tenant": "acme", "group": "checkout"} {
		if v, _ := f.Attribute(k); v != want {
			t.Fatalf("%s = %q, want %q", k, v, want)
		}
	}
}

// BenchmarkAttributeDecode: what routing pays per request: decode the frame from the
// connection's bytes and read service, method, version and one attachment.
func BenchmarkAttributeDecode(b *testing.B) {
	buf := benchRequest(b)
	conn := newConn(b, codecs.Options{})
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		f, _, err := conn.Decode(buf)
		if err != nil {
			b.Fatal(err)
		}
		s, _ := f.Attribute("service")
		m, _ := f.Attribute("method")
		v, _ := f.Attribute("version")
		t, _ := f.Attribute("x-tenant")
		if len(s)+len(m)+len(v)+len(t) == 0 {
			b.Fatal("attributes missing")
		}
	}
}

// BenchmarkFullDecodeHessian2 is the naive baseline: the same frame's body decoded fully with
// dubbo-go-hessian2 (fields, arguments and attachments), as a proxy that does not skip would.
func BenchmarkFullDecodeHessian2(b *testing.B) {
	buf := benchRequest(b)
	body := buf[HeaderLen:]
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		d := hessian2.NewDecoder(body)
		var last any
		for range 5 + 5 + 1 { // head strings, five arguments, attachments
			v, err := d.Decode()
			if err != nil {
				b.Fatal(err)
			}
			last = v
		}
		if m, ok := last.(map[any]any); !ok || m["x-tenant"] != "acme" {
			b.Fatalf("attachments %#v", last)
		}
	}
}

func BenchmarkSetRequestID(b *testing.B) {
	f := decode(b, benchRequest(b))
	b.ReportAllocs()
	id := uint64(0)
	for b.Loop() {
		id++
		if err := f.SetRequestID(id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMutationEncode: set one header and encode the frame into a reused buffer.
func BenchmarkMutationEncode(b *testing.B) {
	buf := benchRequest(b)
	f := decode(b, buf)
	out := make([]byte, 0, 2*len(buf))
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if err := f.SetHeader("x-meltemi-route", "orders-v2"); err != nil {
			b.Fatal(err)
		}
		var err error
		if out, err = f.AppendTo(out[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

func codectestSampleForBench(tb testing.TB) codectest.Sample {
	return codectest.Sample{Name: "benchmark request", Bytes: benchRequest(tb)}
}
