package demo

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// Call is one call the demo client makes through a listener, and the upstream the routing
// must send it to.
type Call struct {
	Protocol string // "thrift" or "dubbo"
	// How the call is made, for the printout: the Thrift mode and headers, or the Dubbo
	// service version.
	Desc string
	Want string // the server that must answer: "v1" or "v2"

	thriftMode    ThriftMode
	thriftHeaders map[string]string
	dubboVersion  string
}

// Calls are the demo client's calls: Thrift in each transport and protocol, with and without
// the THeader header "version: v2", and Dubbo with and without service version 2.0.0.
var Calls = []Call{
	thriftCall(ThriftMode{"framed", "binary"}, nil, "v1"),
	thriftCall(ThriftMode{"buffered", "compact"}, nil, "v1"),
	thriftCall(ThriftMode{"header", "binary"}, nil, "v1"),
	thriftCall(ThriftMode{"header", "binary"}, map[string]string{"version": "v1"}, "v1"),
	thriftCall(ThriftMode{"header", "binary"}, map[string]string{"version": "v2"}, "v2"),
	thriftCall(ThriftMode{"header", "compact"}, map[string]string{"version": "v2"}, "v2"),
	dubboCall("", "v1"),
	dubboCall("2.0.0", "v2"),
}

func thriftCall(mode ThriftMode, headers map[string]string, want string) Call {
	desc := mode.String()
	for k, v := range headers {
		desc += fmt.Sprintf(" header %s=%s", k, v)
	}
	return Call{Protocol: "thrift", Desc: desc, Want: want, thriftMode: mode, thriftHeaders: headers}
}

func dubboCall(version, want string) Call {
	desc := "no service version"
	if version != "" {
		desc = "service version " + version
	}
	return Call{Protocol: "dubbo", Desc: desc, Want: want, dubboVersion: version}
}

// ClientOptions say where the demo client sends its calls.
type ClientOptions struct {
	Thrift, Dubbo string // listener addresses, ip:port
	// Wait is how long a call that fails is retried, so that the client can start while
	// the servers finish starting. 0: no retry.
	Wait time.Duration
	Out  io.Writer // one line per call
}

// RunClient makes Calls through the listeners, prints each result, and returns an error
// naming every call that failed or was answered by the wrong server.
func RunClient(o ClientOptions) error {
	dc, err := NewDubboClient(o.Dubbo)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(o.Wait)
	var errs []error
	for i, c := range Calls {
		msg := fmt.Sprintf("hello #%d", i+1)
		var reply string
		for {
			switch c.Protocol {
			case "thrift":
				reply, err = ThriftEcho(o.Thrift, c.thriftMode, c.thriftHeaders, msg)
			default:
				reply, err = dc.Echo(c.dubboVersion, msg)
			}
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		addr := o.Thrift
		if c.Protocol == "dubbo" {
			addr = o.Dubbo
		}
		line := fmt.Sprintf("%-6s %-15s %-38s -> ", c.Protocol, addr, c.Desc)
		switch {
		case err != nil:
			fmt.Fprintf(o.Out, "%sERROR %v\n", line, err)
			errs = append(errs, fmt.Errorf("%s %s: %w", c.Protocol, c.Desc, err))
		case reply != c.Want+": "+msg:
			fmt.Fprintf(o.Out, "%s%q  WRONG, want %s\n", line, reply, c.Want)
			errs = append(errs, fmt.Errorf("%s %s: reply %q, want %q from %s", c.Protocol, c.Desc, reply, c.Want+": "+msg, c.Want))
		default:
			fmt.Fprintf(o.Out, "%s%q  (routed to %s)\n", line, reply, c.Want)
		}
	}
	return errors.Join(errs...)
}
