// Command dubboprovider is the Dubbo backend of the end-to-end benchmark: a dubbo-go v3
// provider of org.apache.dubbo.bench.EchoService (unversioned) whose Echo(String) returns
// its argument, with logging off so that it costs what a production provider costs.
//
//	dubboprovider -port 20880     (prints "ready PORT" once it listens)
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/meltemi-mesh/meltemi/e2e/bench/loadgen"
	"github.com/meltemi-mesh/meltemi/e2e/internal/dubbopeer"
)

// EchoProvider implements loadgen.DubboService.
type EchoProvider struct{}

// Echo returns its argument.
func (*EchoProvider) Echo(_ context.Context, msg string) (string, error) { return msg, nil }

func main() {
	port := flag.Int("port", 20880, "listening port")
	flag.Parse()
	if err := run(*port); err != nil {
		fmt.Fprintln(os.Stderr, "dubboprovider:", err)
		os.Exit(1)
	}
}

func run(port int) error {
	if err := dubbopeer.Quiet("error"); err != nil {
		return err
	}
	srv, err := dubbopeer.NewProvider("meltemi-bench-provider", port, "error",
		dubbopeer.Service{Impl: &EchoProvider{}, Interface: loadgen.DubboService})
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	if err := dubbopeer.WaitListening(fmt.Sprintf("127.0.0.1:%d", port), 20*time.Second, errc); err != nil {
		return err
	}
	fmt.Printf("ready %d\n", port)
	return <-errc
}
