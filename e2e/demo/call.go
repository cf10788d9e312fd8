package demo

import (
	"fmt"
	"strings"
	"time"
)

// CallOptions describe a batch of identical calls: what the kind-cluster e2e asks the client
// pod to make (`meltemi-demo call`) to measure where the mesh routes them.
type CallOptions struct {
	Protocol string     // "thrift" or "dubbo"
	Addr     string     // host:port of the service
	Mode     ThriftMode // Thrift only
	// Headers are THeader headers (Thrift, header transport only).
	Headers map[string]string
	// Version is the Dubbo service version ("" for none).
	Version string
	N       int    // number of calls, at least 1
	Msg     string // the message of every call ("sleep=3s ..." makes the server slow)
}

// CallReport is the result of a batch: which server answered how many calls, the errors,
// and the slowest and fastest call. It is printed as JSON for the e2e tests.
type CallReport struct {
	// Replies counts replies by the name of the server that sent them ("v1", "v2").
	Replies map[string]int `json:"replies"`
	// Errors are the errors of the failed calls, in order, at most maxReportedErrors.
	Errors []string `json:"errors,omitempty"`
	// Failed is the number of failed calls (Errors may be truncated).
	Failed int `json:"failed"`
	// MinMillis and MaxMillis are the fastest and slowest call, failed ones included.
	MinMillis int64 `json:"minMillis"`
	MaxMillis int64 `json:"maxMillis"`
}

// maxReportedErrors bounds CallReport.Errors so a batch of failures stays readable.
const maxReportedErrors = 10

// RunCalls makes o.N calls one after another, each on its own connection for Thrift (so that
// every call is routed afresh) and on one client for Dubbo, and reports who answered.
// A reply not of the form "<server>: <msg>" counts as a failure.
func RunCalls(o CallOptions) (CallReport, error) {
	if o.N < 1 {
		return CallReport{}, fmt.Errorf("calls: n = %d, want at least 1", o.N)
	}
	var call func() (string, error)
	switch o.Protocol {
	case "thrift":
		call = func() (string, error) { return ThriftEcho(o.Addr, o.Mode, o.Headers, o.Msg) }
	case "dubbo":
		if len(o.Headers) > 0 {
			return CallReport{}, fmt.Errorf("calls: the dubbo client sends no headers")
		}
		dc, err := NewDubboClient(o.Addr)
		if err != nil {
			return CallReport{}, err
		}
		call = func() (string, error) { return dc.Echo(o.Version, o.Msg) }
	default:
		return CallReport{}, fmt.Errorf("calls: protocol %q, want thrift or dubbo", o.Protocol)
	}
	r := CallReport{Replies: map[string]int{}}
	for i := range o.N {
		start := time.Now()
		reply, err := call()
		ms := time.Since(start).Milliseconds()
		if i == 0 || ms < r.MinMillis {
			r.MinMillis = ms
		}
		r.MaxMillis = max(r.MaxMillis, ms)
		if err == nil {
			server, msg, ok := strings.Cut(reply, ": ")
			if ok && msg == o.Msg {
				r.Replies[server]++
				continue
			}
			err = fmt.Errorf("reply %q, want \"<server>: %s\"", reply, o.Msg)
		}
		r.Failed++
		if len(r.Errors) < maxReportedErrors {
			r.Errors = append(r.Errors, err.Error())
		}
	}
	return r, nil
}

// ParseThriftMode reads "transport/protocol", e.g. "header/binary".
func ParseThriftMode(s string) (ThriftMode, error) {
	t, p, ok := strings.Cut(s, "/")
	if !ok || t == "" || p == "" {
		return ThriftMode{}, fmt.Errorf("thrift mode %q, want transport/protocol (e.g. header/binary)", s)
	}
	return ThriftMode{Transport: t, Protocol: p}, nil
}
