package dubbo

import (
	"testing"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/codectest"
)

// fuzzSeeds are the conformance samples plus frames that reach the rarer paths: the
// full-decode fallback, the descriptor fallback, Java's surrogate pairs, duplicate keys,
// response type upgrades, attachments behind class definitions.
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, s := range samples(tb) {
		seeds = append(seeds, s.Bytes)
	}
	arg := map[any]any{"x-a": "1", "n": int32(2)}
	seeds = append(seeds,
		frameOf(flagsRequest, 0, 20, append(enc(tb, "2.0.2", "s", "", "m", "Ljava/util/Map;", arg), 'Q', 0x90)),
		frameOf(flagsRequest, 0, 21, enc(tb, "2.0.2", "s", "", "m", "Ljava.lang.String;", "a", map[string]string{"k": "v"})),
		frameOf(flagsRequest, 0, 22, cat(enc(tb, "2.0.2", "s", "", "m", ""),
			[]byte{'H'}, str("k"), []byte{0x02, 0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80}, str("k"), str("v2"),
			str("o"), []byte{'H', 'Z'}, []byte{'Z'})),
		frameOf(flagsRequest, 0, 23, cat(enc(tb, "2.0.2", "s", "", "m", ""), []byte{'C'}, str("P"), []byte{0x90},
			[]byte{'H'}, str("k"), str("v"), str("o"), []byte{0x60}, []byte{'Z'})),
		frameOf(flagsResponse, StatusOK, 24, enc(tb, int32(respNull))),
		frameOf(flagsResponse, StatusOK, 25, enc(tb, int32(respNullAtt), nil)),
		frameOf(flagsRequest, 0, 26, enc(tb, "2.0.2", "s", "", "m", "I", int32(1))),
	)
	return seeds
}

func FuzzDecode(f *testing.F) {
	c, err := Factory{}.New(codecs.Options{})
	if err != nil {
		f.Fatal(err)
	}
	codectest.FuzzDecode(f, c, fuzzSeeds(f)...)
}
