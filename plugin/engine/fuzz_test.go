package engine

import (
	"bytes"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// FuzzSession feeds arbitrary client bytes, in arbitrary pieces, through a session whose
// upstream answers every request it receives. Whatever the bytes, the engine must not panic,
// must write nothing empty (the fakes panic on that), and every request it forwarded must be
// answered once the server replied. Each input runs through a multiplexed pool and through
// a ping-pong pool.
func FuzzSession(f *testing.F) {
	f.Add([]byte{3}, bytes.Join([][]byte{call("a", 1), call("b", 1), thriftMsg(tOneway, "c", 2, nil)}, nil))
	f.Add([]byte{1, 7}, append(call("Svc:m", 9), 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0))
	f.Add([]byte{0}, call("m", 1)[4:])
	f.Add([]byte{5}, reply("m", 1, "x"))
	f.Fuzz(func(t *testing.T, cuts, stream []byte) {
		fuzzSession(t, thriftCodec(t), cuts, stream)
		fuzzSession(t, pingPongThrift(t), cuts, stream)
	})
}

func fuzzSession(t *testing.T, c codecs.Codec, cuts, stream []byte) {
	cfg := Config{Codec: c,
		Routes: []Route{
			{Cluster: "c", Match: []AttributeMatch{{Name: "method", Kind: MatchRegex, Value: "[a-m].*"}},
				OnewayMethods: []string{"log"}},
			{Cluster: "c", Match: []AttributeMatch{{Name: "service", Kind: MatchPresent}}},
		},
		Clusters: []Cluster{{Name: "c", Endpoints: []Endpoint{{Address: "10.0.0.1:1"}}}}}
	e, d := newEngine(t, cfg)
	cl := newClient(t, e)
	rest := stream
	for i := 0; len(rest) > 0; i++ {
		n := len(rest)
		if len(cuts) > 0 {
			n = min(int(cuts[i%len(cuts)])+1, len(rest))
		}
		cl.s.OnData(rest[:n])
		rest = rest[n:]
	}
	// Answer until nothing new arrives: a ping-pong connection gets the next waiting
	// request once it answered one.
	var srvs []*fakeServer
	for progress := true; progress; {
		progress = false
		for len(srvs) < d.count() {
			srvs = append(srvs, d.ready(t, len(srvs), c))
			progress = true
		}
		for _, srv := range srvs {
			for _, r := range srv.requests() {
				progress = true
				if r.Kind() == codecs.KindRequest {
					srv.h.OnData(replyTo(t, r, "ok"))
				}
			}
		}
	}
	st := e.Stats()
	if st.Panics != 0 {
		t.Fatalf("%d panics", st.Panics)
	}
	if n := e.testCluster("c").active.Load(); n != 0 && !cl.down.isClosed() {
		t.Fatalf("%d requests unanswered after the server replied to all", n)
	}
}
