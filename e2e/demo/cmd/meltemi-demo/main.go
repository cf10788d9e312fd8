// Command meltemi-demo runs the pieces of the `make run` demo (hack/run-demo.sh):
//
//	meltemi-demo thrift-server -name v1 -listen 127.0.0.1:9091
//	meltemi-demo dubbo-provider -name v2 -port 20882 -version 2.0.0
//	meltemi-demo plugin-config -o thrift.any envoy-config/filters/thrift.yaml
//	meltemi-demo client -thrift 127.0.0.1:9090 -dubbo 127.0.0.1:20880
//	meltemi-demo call -protocol thrift -addr thrift-echo:9090 -header version=v2 -n 100
//	meltemi-demo wait
//
// plugin-config validates a FilterConfig YAML file and writes the serialized
// google.protobuf.Any that Envoy would pass to the plugin for it (abihost's --config-file).
// client exits with status 1 when a call fails or reaches the wrong server.
//
// The kind-cluster e2e (e2e/kind) uses the rest: the servers' -stats-listen serves GET /stats
// (the calls each server answered: mirror targets are counted there), call makes a batch of
// identical calls and prints a JSON demo.CallReport (who answered how many), and wait keeps
// the client pod alive for `kubectl exec` until it is told to stop.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/meltemi-mesh/meltemi/e2e/demo"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	var err error
	switch os.Args[1] {
	case "thrift-server":
		name := fs.String("name", "v1", "server name, put in every reply")
		listen := fs.String("listen", "127.0.0.1:9091", "listen address")
		statsListen := fs.String("stats-listen", "", "serve GET /stats (calls answered) on this address")
		_ = fs.Parse(os.Args[2:])
		stats := startStats(*name, *statsListen)
		err = demo.ServeThriftStats(*name, *listen, stats)
	case "dubbo-provider":
		name := fs.String("name", "v1", "provider name, put in every reply")
		port := fs.Int("port", 20881, "port of the dubbo protocol")
		version := fs.String("version", "", "service version (empty: none)")
		statsListen := fs.String("stats-listen", "", "serve GET /stats (calls answered) on this address")
		_ = fs.Parse(os.Args[2:])
		stats := startStats(*name, *statsListen)
		err = demo.ServeDubboStats(*name, *port, *version, stats)
	case "plugin-config":
		out := fs.String("o", "", "output file (required)")
		_ = fs.Parse(os.Args[2:])
		if *out == "" || fs.NArg() != 1 {
			usage()
		}
		var b []byte
		if b, err = demo.PluginConfig(fs.Arg(0)); err == nil {
			err = os.WriteFile(*out, b, 0o644)
		}
	case "client":
		o := demo.ClientOptions{Out: os.Stdout}
		fs.StringVar(&o.Thrift, "thrift", "127.0.0.1:9090", "Thrift listener")
		fs.StringVar(&o.Dubbo, "dubbo", "127.0.0.1:20880", "Dubbo listener")
		fs.DurationVar(&o.Wait, "wait", 0, "how long failing calls are retried")
		_ = fs.Parse(os.Args[2:])
		err = demo.RunClient(o)
	case "call":
		err = call(fs)
	case "wait":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
		<-sig
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meltemi-demo:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: meltemi-demo thrift-server|dubbo-provider|plugin-config|client|call|wait [flags]")
	os.Exit(2)
}

// startStats starts the stats endpoint on addr when addr is set, and returns the counter the
// server fills (nil, counting nothing, when addr is empty). A failing endpoint ends the
// process: the e2e that reads it would otherwise fail later and obscurely.
func startStats(name, addr string) *demo.Stats {
	if addr == "" {
		return nil
	}
	stats := &demo.Stats{Name: name}
	go func() {
		err := demo.ServeStats(addr, stats)
		fmt.Fprintln(os.Stderr, "meltemi-demo:", err)
		os.Exit(1)
	}()
	return stats
}

// headerFlags collects repeated -header key=value flags.
type headerFlags map[string]string

func (h headerFlags) String() string { return fmt.Sprint(map[string]string(h)) }

func (h headerFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("header %q, want key=value", s)
	}
	h[k] = v
	return nil
}

// call makes a batch of calls and prints its demo.CallReport as JSON. It fails only when
// the calls cannot be made at all: failed calls are in the report for the caller to judge.
func call(fs *flag.FlagSet) error {
	o := demo.CallOptions{Headers: headerFlags{}}
	fs.StringVar(&o.Protocol, "protocol", "thrift", "thrift or dubbo")
	fs.StringVar(&o.Addr, "addr", "", "service address host:port (required)")
	mode := fs.String("mode", "header/binary", "Thrift transport/protocol")
	fs.Var(headerFlags(o.Headers), "header", "THeader header key=value (repeatable)")
	fs.StringVar(&o.Version, "version", "", "Dubbo service version")
	fs.IntVar(&o.N, "n", 1, "number of calls")
	fs.StringVar(&o.Msg, "msg", "hello", `message ("sleep=3s ..." makes the server wait 3s)`)
	_ = fs.Parse(os.Args[2:])
	if o.Addr == "" {
		usage()
	}
	var err error
	if o.Mode, err = demo.ParseThriftMode(*mode); err != nil {
		return err
	}
	if len(o.Headers) == 0 {
		o.Headers = nil
	}
	r, err := demo.RunCalls(o)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
