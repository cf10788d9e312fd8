package thrift

import (
	"testing"
)

// BenchmarkAttributeDecode decodes a request of about 1 KiB and reads what routing reads.
func BenchmarkAttributeDecode(b *testing.B) {
	b.Run("framed_binary", func(b *testing.B) {
		frame := goldenFile(b, "framed_binary_call_calculate.bin").Bytes
		conn := newCodec(b, nil).NewConn()
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			f, _, err := conn.Decode(frame)
			if err != nil {
				b.Fatal(err)
			}
			if m, _ := f.Attribute("method"); m != "calculate" {
				b.Fatalf("method %q", m)
			}
		}
	})
	b.Run("header_compact", func(b *testing.B) {
		frame := goldenFile(b, "header_compact_call_calculate_1k.bin").Bytes
		conn := newCodec(b, nil).NewConn()
		b.SetBytes(int64(len(frame)))
		b.ReportAllocs()
		for b.Loop() {
			f, _, err := conn.Decode(frame)
			if err != nil {
				b.Fatal(err)
			}
			m, _ := f.Attribute("method")
			u, _ := f.Attribute("user")
			if m != "calculate" || u != "alice" {
				b.Fatalf("method %q user %q", m, u)
			}
		}
	})
}

// BenchmarkSetRequestID rewrites the seqid of a decoded frame in place.
func BenchmarkSetRequestID(b *testing.B) {
	for name, file := range map[string]string{
		"framed_binary":  "framed_binary_call_calculate.bin",
		"header_compact": "header_compact_oneway_zip.bin",
	} {
		b.Run(name, func(b *testing.B) {
			f := decodeOne(b, newCodec(b, nil), goldenFile(b, file).Bytes)
			b.ReportAllocs()
			id := uint64(1 << 28) // five-byte varints: the compact rewrite stays in place
			for b.Loop() {
				id++
				if err := f.SetRequestID(id); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkMutationEncode sets a header on a THeader request and encodes it into a reused
// buffer.
func BenchmarkMutationEncode(b *testing.B) {
	g := goldenFile(b, "header_compact_call_calculate_1k.bin")
	f := decodeOne(b, newCodec(b, nil), g.Bytes)
	buf := make([]byte, 0, 2048)
	b.SetBytes(int64(len(g.Bytes)))
	b.ReportAllocs()
	for b.Loop() {
		if err := f.SetHeader("x-route", "v2"); err != nil {
			b.Fatal(err)
		}
		out, err := f.AppendTo(buf[:0])
		if err != nil {
			b.Fatal(err)
		}
		buf = out
	}
}
