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
	"net"
	"os"
	"time"

	"dubbo.apache.org/dubbo-go/v3"
	dubbologger "dubbo.apache.org/dubbo-go/v3/logger"
	"dubbo.apache.org/dubbo-go/v3/protocol"
	"dubbo.apache.org/dubbo-go/v3/server"
	getty "github.com/apache/dubbo-getty"
	gostlogger "github.com/dubbogo/gost/log/logger"

	// What a provider needs, rather than dubbo-go's imports package, which also builds
	// every registry, config centre and tracer client.
	_ "dubbo.apache.org/dubbo-go/v3/filter/accesslog"
	_ "dubbo.apache.org/dubbo-go/v3/filter/echo"
	_ "dubbo.apache.org/dubbo-go/v3/filter/exec_limit"
	_ "dubbo.apache.org/dubbo-go/v3/filter/generic"
	_ "dubbo.apache.org/dubbo-go/v3/filter/graceful_shutdown"
	_ "dubbo.apache.org/dubbo-go/v3/filter/token"
	_ "dubbo.apache.org/dubbo-go/v3/filter/tps"
	_ "dubbo.apache.org/dubbo-go/v3/filter/tps/limiter"
	_ "dubbo.apache.org/dubbo-go/v3/filter/tps/strategy"
	_ "dubbo.apache.org/dubbo-go/v3/protocol/dubbo"
	_ "dubbo.apache.org/dubbo-go/v3/proxy/proxy_factory"

	"github.com/meltemi-mesh/meltemi/e2e/bench/loadgen"
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
	if err := getty.SetLoggerLevel(getty.LoggerLevelError); err != nil {
		return fmt.Errorf("getty logger: %w", err)
	}
	gostlogger.SetLoggerLevel("error")
	ins, err := dubbo.NewInstance(
		dubbo.WithName("meltemi-bench-provider"),
		dubbo.WithLogger(dubbologger.WithLevel("error")),
		dubbo.WithProtocol(protocol.WithDubbo(), protocol.WithPort(port)),
	)
	if err != nil {
		return fmt.Errorf("new instance: %w", err)
	}
	srv, err := ins.NewServer()
	if err != nil {
		return fmt.Errorf("new server: %w", err)
	}
	if err := srv.Register(&EchoProvider{}, nil, server.WithInterface(loadgen.DubboService)); err != nil {
		return fmt.Errorf("register: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve() }()
	// Serve does not say when it listens: poll the port.
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(20 * time.Second); ; {
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after 20s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("ready %d\n", port)
	return <-errc
}
