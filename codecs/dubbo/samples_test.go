package dubbo

import (
	"bytes"
	"encoding/binary"
	"testing"

	hessian2 "github.com/apache/dubbo-go-hessian2"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/codecs/codectest"
	"github.com/meltemi-mesh/meltemi/codecs/dubbo/internal/hessian"
)

// Flags bytes as real peers send them.
const (
	flagsRequest    = flagReq | flagTwoWay | SerializationHessian2             // 0xc2
	flagsOneway     = flagReq | SerializationHessian2                          // 0x82
	flagsHeartbeat  = flagReq | flagTwoWay | flagEvent | SerializationHessian2 // 0xe2
	flagsResponse   = SerializationHessian2                                    // 0x02
	flagsHBResponse = flagEvent | SerializationHessian2                        // 0x22
	flagsFastjson   = flagReq | flagTwoWay | 6                                 // another serialization
)

// enc writes values with dubbo-go-hessian2's encoder, in one stream as a Dubbo body is (class
// definitions and references are shared across the values).
func enc(t testing.TB, vs ...any) []byte {
	t.Helper()
	e := hessian2.NewEncoder()
	for _, v := range vs {
		if err := e.Encode(v); err != nil {
			t.Fatalf("dubbo-go-hessian2 encode %T: %v", v, err)
		}
	}
	return bytes.Clone(e.Buffer())
}

// frameOf puts the 16-byte Dubbo header in front of body.
func frameOf(flags byte, status Status, id uint64, body []byte) []byte {
	b := appendHeader(nil, flags, status, id, uint32(len(body)))
	return append(b, body...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// str writes a string in its shortest form.
func str(s string) []byte { return hessian.AppendString(nil, s) }

// longStr writes a string in the long 'S' form even when it is short, as some encoders do.
func longStr(s string) []byte {
	return append([]byte{'S', byte(len(s) >> 8), byte(len(s))}, s...)
}

const (
	svc      = "org.apache.dubbo.sample.UserProvider"
	userDesc = "Ljava/lang/String;I[Ljava/lang/Object;"
)

// dubboGoRequestBody is a request body as dubbo-go writes one: every field, argument and
// attachment encoded by dubbo-go-hessian2.
func dubboGoRequestBody(t testing.TB, atts map[string]string) []byte {
	return enc(t, "2.0.2", svc, "1.0.0", "GetUser", userDesc,
		"A001", int32(7), []any{"x", int64(1)}, atts)
}

func sampleAtts() map[string]string {
	return map[string]string{
		"path": svc, "interface": svc, "version": "1.0.0", "group": "blue",
		"timeout": "3000", "x-tenant": "acme",
	}
}

// samples are the frames the conformance kit and the fuzzer start from.
func samples(t testing.TB) []codectest.Sample {
	reqAttrs := map[string]string{
		"service": svc, "interface": svc, "method": "GetUser", "version": "1.0.0", "group": "blue",
		"param_types": userDesc, "dubbo_version": "2.0.2", "x-tenant": "acme", "timeout": "3000", "path": svc,
	}
	user := func(name string, age int32) map[string]any {
		return map[string]any{"_class": "com.example.User", "name": name, "age": age}
	}
	shared := map[any]any{"k": "v"}
	exception := map[string]any{"_class": "java.lang.IllegalStateException", "detailMessage": "boom"}

	s := []codectest.Sample{
		{
			Name:  "request (dubbo-go-hessian2)",
			Bytes: frameOf(flagsRequest, 0, 1, dubboGoRequestBody(t, sampleAtts())),
			Kind:  codecs.KindRequest, ID: 1, Attrs: reqAttrs, CarriesHeaders: true,
			Absent: []string{"x-absent", "message_type"},
		},
		{
			Name:  "oneway",
			Bytes: frameOf(flagsOneway, 0, 2, enc(t, "2.0.2", "com.example.Log", "", "Write", "Ljava/lang/String;", "line", map[string]string{"x-b3": "abc"})),
			Kind:  codecs.KindOneway, ID: 2, CarriesHeaders: true,
			Attrs: map[string]string{"service": "com.example.Log", "method": "Write", "version": "", "x-b3": "abc"},
		},
		{
			Name:  "heartbeat request",
			Bytes: frameOf(flagsHeartbeat, 0, 3, []byte{'N'}),
			Kind:  codecs.KindHeartbeatRequest, ID: 3,
			Absent: []string{"service", "method"},
		},
		{
			Name:  "heartbeat response",
			Bytes: frameOf(flagsHBResponse, StatusOK, 3, []byte{'N'}),
			Kind:  codecs.KindHeartbeatResponse, ID: 3,
		},
		{
			Name:  "ok response with attachments",
			Bytes: frameOf(flagsResponse, StatusOK, 4, enc(t, int32(respValueAtt), "hello", map[string]string{"x-served-by": "p1"})),
			Kind:  codecs.KindResponse, ID: 4, CarriesHeaders: true,
			Attrs: map[string]string{"x-served-by": "p1"}, Absent: []string{"service"},
		},
		{
			Name:  "ok response without attachments",
			Bytes: frameOf(flagsResponse, StatusOK, 5, enc(t, int32(respValue), []any{int32(1), "two"})),
			Kind:  codecs.KindResponse, ID: 5, CarriesHeaders: true,
		},
		{
			Name:  "error response (status 70)",
			Bytes: frameOf(flagsResponse, StatusServiceError, 6, enc(t, "java.lang.RuntimeException: provider failed")),
			Kind:  codecs.KindErrorResponse, ID: 6, Absent: []string{"service"},
		},
		{
			Name:  "exception response (type 0)",
			Bytes: frameOf(flagsResponse, StatusOK, 7, enc(t, int32(respException), exception)),
			Kind:  codecs.KindErrorResponse, ID: 7, CarriesHeaders: true,
		},
		{
			Name:  "request with a null service version",
			Bytes: frameOf(flagsRequest, 0, 8, enc(t, "2.0.2", "com.example.Echo", nil, "Echo", "Ljava/lang/String;", "hi", map[string]string{"path": "com.example.Echo"})),
			Kind:  codecs.KindRequest, ID: 8, CarriesHeaders: true,
			Attrs: map[string]string{"service": "com.example.Echo", "version": "", "method": "Echo", "path": "com.example.Echo"},
		},
		{
			Name: "request with long-form strings",
			Bytes: frameOf(flagsRequest, 0, 9, cat(longStr("2.0.2"), longStr("com.example.Long"), longStr("2.1"),
				longStr("Get"), longStr("Ljava/lang/String;"), longStr("arg"),
				[]byte{'H'}, longStr("group"), longStr("green"), longStr("x-long"), longStr("yes"), []byte{'Z'})),
			Kind: codecs.KindRequest, ID: 9, CarriesHeaders: true,
			Attrs: map[string]string{"service": "com.example.Long", "version": "2.1", "method": "Get", "group": "green", "x-long": "yes"},
		},
		{
			Name: "request with a chunked attachment",
			Bytes: frameOf(flagsRequest, 0, 10, cat(enc(t, "2.0.2", "com.example.Chunk", "", "Put", "I", int32(3)),
				[]byte{'H'}, str("x-chunked"), []byte{'R', 0, 3, 'a', 'b', 'c', 'R', 0, 2, 'd', 'e', 0x01, 'f'},
				str("x-plain"), str("p"), []byte{'Z'})),
			Kind: codecs.KindRequest, ID: 10, CarriesHeaders: true,
			Attrs: map[string]string{"service": "com.example.Chunk", "x-chunked": "abcdef", "x-plain": "p"},
		},
		{
			Name: "request with typed attachments map",
			Bytes: frameOf(flagsRequest, 0, 11, cat(enc(t, "2.0.2", "com.example.Typed", "1", "Do", ""),
				[]byte{'M'}, str("java.util.HashMap"), str("group"), str("g1"), str("x-typed"), str("t"), []byte{'Z'})),
			Kind: codecs.KindRequest, ID: 11, CarriesHeaders: true,
			Attrs: map[string]string{"service": "com.example.Typed", "param_types": "", "group": "g1", "x-typed": "t"},
		},
		{
			Name: "request with objects, class definitions and refs",
			Bytes: frameOf(flagsRequest, 0, 12, enc(t, "2.0.2", "com.example.Users", "", "Save", "Ljava/util/List;Lcom/example/User;",
				[]any{user("ann", 42), user("bob", 7), shared, shared}, user("cy", 1),
				map[string]string{"x-after-objects": "ok"})),
			Kind: codecs.KindRequest, ID: 12, CarriesHeaders: true,
			Attrs: map[string]string{"service": "com.example.Users", "method": "Save", "x-after-objects": "ok"},
		},
		{
			Name: "request with a map argument",
			Bytes: frameOf(flagsRequest, 0, 13, enc(t, "2.0.2", "com.example.Maps", "", "Merge", "Ljava/util/Map;",
				map[any]any{"k": int32(1), int32(2): "v", "nested": map[any]any{"a": []any{nil, true}}},
				map[string]string{"x-map": "m"})),
			Kind: codecs.KindRequest, ID: 13, CarriesHeaders: true,
			Attrs: map[string]string{"service": "com.example.Maps", "x-map": "m"},
		},
		{
			Name: "request with compact ints and longs",
			Bytes: frameOf(flagsRequest, 0, 14, enc(t, "2.0.2", "com.example.Calc", "", "Add", "IJIJDZ",
				int32(5), int64(-3), int32(1000), int64(100000), 2.5, true, map[string]string{"x-calc": "1"})),
			Kind: codecs.KindRequest, ID: 14, CarriesHeaders: true,
			Attrs: map[string]string{"service": "com.example.Calc", "param_types": "IJIJDZ", "x-calc": "1"},
		},
		{
			Name:  "request in another serialization",
			Bytes: frameOf(flagsFastjson, 0, 15, []byte(`"2.0.2"\n"com.example.Json"`)),
			Kind:  codecs.KindRequest, ID: 15,
			Absent: []string{"service", "method", "version"},
		},
	}
	for i := range s {
		s[i].Stream = "dubbo"
		s[i].SizeKnownAt = HeaderLen
	}
	return s
}

func TestConformance(t *testing.T) {
	s := samples(t)
	// The samples must exercise the encodings they are named for.
	mustContain := map[string][]byte{
		"request with objects, class definitions and refs": {'C', 0x60, 'Q'},
		"request with compact ints and longs":              {0x95, 0xdd},
	}
	for _, smp := range s {
		for _, b := range mustContain[smp.Name] {
			if !bytes.Contains(smp.Bytes[HeaderLen:], []byte{b}) {
				t.Errorf("%s: body %x has no byte %#x", smp.Name, smp.Bytes, b)
			}
		}
		if got := binary.BigEndian.Uint32(smp.Bytes[12:]); int(got) != len(smp.Bytes)-HeaderLen {
			t.Fatalf("%s: bad test frame length", smp.Name)
		}
	}
	codectest.Run(t, codectest.Suite{
		Factory:    Factory{},
		Samples:    s,
		NewID:      0xfeedface12345678,
		Heartbeats: true,
	})
}
