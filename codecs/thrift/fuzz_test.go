package thrift

import (
	"errors"
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/codectest"
)

// FuzzDecode runs the conformance kit's invariants on arbitrary streams. The limit is small
// so that inputs declaring large frames or zlib payloads stay quick to reject.
func FuzzDecode(f *testing.F) {
	c, err := Factory{}.New(codecs.Options{MaxFrameSize: 64 << 10})
	if err != nil {
		f.Fatal(err)
	}
	var seeds [][]byte
	for _, g := range loadGolden(f) {
		seeds = append(seeds, g.Bytes)
	}
	codectest.FuzzDecode(f, c, seeds...)
}

// FuzzSkip checks the struct skipper on arbitrary bytes: the first byte picks the protocol
// (low bit set: compact). A complete skip and a skip fed one byte at a time must agree, and
// the only errors are ErrMalformed and, when fed, ErrFrameTooLarge.
func FuzzSkip(f *testing.F) {
	for _, p := range protocols {
		e := &tenc{compact: p.compact}
		e.everything()
		sel := byte(0)
		if p.compact {
			sel = 1
		}
		f.Add(append([]byte{sel}, e.b...))
	}
	for _, g := range loadGolden(f) {
		fr := decodeOne(f, newCodec(f, nil), g.Bytes)
		sel := byte(0)
		if fr.protocol == protocolCompact {
			sel = 1
		}
		f.Add(append([]byte{sel}, fr.msg[fr.hdr.bodyOff:]...))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		compact, b := in[0]&1 == 1, in[1:]
		end, err := skipWhole(b, compact)
		if err == nil && (end < 1 || end > len(b)) {
			t.Fatalf("skip ended at %d of %d bytes", end, len(b))
		}
		if err != nil && !errors.Is(err, codecs.ErrMalformed) {
			t.Fatalf("complete skip: %v", err)
		}
		tend, terr := skipTrickle(b, compact, len(b))
		if (err == nil) != (terr == nil) || end != tend {
			t.Fatalf("complete skip: end %d err %v; fed a byte at a time: end %d err %v", end, err, tend, terr)
		}
		if terr != nil && !errors.Is(terr, codecs.ErrMalformed) && !errors.Is(terr, codecs.ErrFrameTooLarge) {
			t.Fatalf("fed skip: %v", terr)
		}
	})
}
