// Command meltemi-demo runs the pieces of the `make run` demo (hack/run-demo.sh):
//
//	meltemi-demo thrift-server -name v1 -listen 127.0.0.1:9091
//	meltemi-demo dubbo-provider -name v2 -port 20882 -version 2.0.0
//	meltemi-demo plugin-config -o thrift.any envoy-config/filters/thrift.yaml
//	meltemi-demo client -thrift 127.0.0.1:9090 -dubbo 127.0.0.1:20880
//
// plugin-config validates a FilterConfig YAML file and writes the serialized
// google.protobuf.Any that Envoy would pass to the plugin for it (abihost's --config-file).
// client exits with status 1 when a call fails or reaches the wrong server.
package main

import (
	"flag"
	"fmt"
	"os"

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
		_ = fs.Parse(os.Args[2:])
		err = demo.ServeThrift(*name, *listen)
	case "dubbo-provider":
		name := fs.String("name", "v1", "provider name, put in every reply")
		port := fs.Int("port", 20881, "port of the dubbo protocol")
		version := fs.String("version", "", "service version (empty: none)")
		_ = fs.Parse(os.Args[2:])
		err = demo.ServeDubbo(*name, *port, *version)
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
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "meltemi-demo:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: meltemi-demo thrift-server|dubbo-provider|plugin-config|client [flags]")
	os.Exit(2)
}
