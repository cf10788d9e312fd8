package engine

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// benchDown discards what the engine writes.
type benchDown struct{ n int }

func (d *benchDown) Write(b []byte) { d.n += len(b) }
func (d *benchDown) Close()         {}

// benchUpstream remembers the request id of the last frame written, read by idAt.
type benchUpstream struct {
	idAt func(b []byte) uint64
	id   uint64
}

func (u *benchUpstream) Write(b []byte) { u.id = u.idAt(b) }
func (u *benchUpstream) Close()         {}

// benchRoundTrip measures one request from a client, through routing and the shared pool,
// and its response back, with in-memory connections.
func benchRoundTrip(b *testing.B, c codecs.Codec, req, resp []byte, idAt func([]byte) uint64, setID func([]byte, uint64)) {
	r := Route{Timeout: 30 * time.Second, Match: []AttributeMatch{{Name: "method", Kind: MatchPrefix, Value: "Place"}}}
	e, d := newEngine(b, oneCluster(c, r, Cluster{}))
	down := &benchDown{}
	s := e.NewSession(down)
	s.OnData(req)
	up := &benchUpstream{idAt: idAt}
	h := d.get(b, 0).h
	h.OnReady(up)
	resp = append([]byte(nil), resp...)
	setID(resp, up.id)
	h.OnData(resp)
	if down.n != len(resp) {
		b.Fatalf("client got %d bytes, want %d", down.n, len(resp))
	}
	b.SetBytes(int64(len(req) + len(resp)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s.OnData(req)
		setID(resp, up.id)
		h.OnData(resp)
	}
	b.StopTimer()
	if st := e.Stats(); st.Responses != st.Requests || len(st.LocalReplies) != 0 {
		b.Fatalf("stats %+v", st)
	}
}

// BenchmarkRequestResponse: a ~1 KiB request and a short response through the engine.
func BenchmarkRequestResponse(b *testing.B) {
	b.Run("dubbo", func(b *testing.B) {
		atts := map[string]string{"x-tenant": "acme", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
		req := dubboFrame(b, 0xc2, 0, 1, "2.0.2", "org.apache.dubbo.sample.OrderService", "1.0.0", "PlaceOrder",
			"Ljava/lang/String;", strings.Repeat("x", 800), atts)
		resp := dubboResponse(b, 1, strings.Repeat("y", 200), nil)
		benchRoundTrip(b, dubboCodec(b), req, resp,
			func(w []byte) uint64 { return binary.BigEndian.Uint64(w[4:12]) },
			func(r []byte, id uint64) { binary.BigEndian.PutUint64(r[4:12], id) })
	})
	b.Run("thrift", func(b *testing.B) {
		req := thriftMsg(tCall, "PlaceOrder", 1, stringField(1, strings.Repeat("x", 1000)))
		resp := reply("PlaceOrder", 1, strings.Repeat("y", 200))
		seqAt := 4 + 4 + 4 + len("PlaceOrder")
		benchRoundTrip(b, thriftCodec(b), req, resp,
			func(w []byte) uint64 { return uint64(binary.BigEndian.Uint32(w[seqAt:])) },
			func(r []byte, id uint64) { binary.BigEndian.PutUint32(r[seqAt:], uint32(id)) })
	})
	b.Run("thrift-pingpong", func(b *testing.B) {
		req := thriftMsg(tCall, "PlaceOrder", 1, stringField(1, strings.Repeat("x", 1000)))
		resp := reply("PlaceOrder", 1, strings.Repeat("y", 200))
		seqAt := 4 + 4 + 4 + len("PlaceOrder")
		benchRoundTrip(b, pingPongThrift(b), req, resp,
			func(w []byte) uint64 { return uint64(binary.BigEndian.Uint32(w[seqAt:])) },
			func(r []byte, id uint64) { binary.BigEndian.PutUint32(r[seqAt:], uint32(id)) })
	})
}
