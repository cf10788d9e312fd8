// Package dubbopeer builds the dubbo-go v3 providers that the end-to-end tests, the demo and
// the benchmark run as real Dubbo peers of the proxy: it quiets dubbo-go's logging, exports
// services over the dubbo protocol on a port, and tells when that port listens.
//
// Importing it also links in what a provider and a direct-URL consumer need from dubbo-go
// (the dubbo protocol, the proxy factory and the default filters), rather than dubbo-go's
// imports package, which also builds every registry, config centre and tracer client.
package dubbopeer

import (
	"errors"
	"fmt"
	"net"
	"time"

	"dubbo.apache.org/dubbo-go/v3"
	dubbologger "dubbo.apache.org/dubbo-go/v3/logger"
	"dubbo.apache.org/dubbo-go/v3/protocol"
	"dubbo.apache.org/dubbo-go/v3/server"
	getty "github.com/apache/dubbo-getty"
	gostlogger "github.com/dubbogo/gost/log/logger"

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
)

// Quiet silences getty's per-packet logging (errors only) and sets dubbo-go's process-wide
// logger to level ("warn", "error"): their informational logs otherwise dominate the run
// time and bury the output that matters.
func Quiet(level string) error {
	gostlogger.SetLoggerLevel(level)
	if err := getty.SetLoggerLevel(getty.LoggerLevelError); err != nil {
		return fmt.Errorf("getty logger: %w", err)
	}
	return nil
}

// Service is one export of a provider. dubbo-go keys services by the Go type name of Impl,
// so exporting one interface twice (say, with and without a version) needs two types.
type Service struct {
	Impl      any
	Interface string
	Version   string // "" for none
	Group     string // "" for none
}

// NewProvider returns a dubbo-go server named name that exports services over the dubbo
// protocol on port, with the instance's logger at logLevel. Its Serve blocks and does not
// say when it listens: see WaitListening.
func NewProvider(name string, port int, logLevel string, services ...Service) (*server.Server, error) {
	ins, err := dubbo.NewInstance(
		dubbo.WithName(name),
		dubbo.WithLogger(dubbologger.WithLevel(logLevel)),
		dubbo.WithProtocol(protocol.WithDubbo(), protocol.WithPort(port)),
	)
	if err != nil {
		return nil, fmt.Errorf("new instance: %w", err)
	}
	srv, err := ins.NewServer()
	if err != nil {
		return nil, fmt.Errorf("new server: %w", err)
	}
	for _, s := range services {
		opts := []server.ServiceOption{server.WithInterface(s.Interface)}
		if s.Version != "" {
			opts = append(opts, server.WithVersion(s.Version))
		}
		if s.Group != "" {
			opts = append(opts, server.WithGroup(s.Group))
		}
		if err := srv.Register(s.Impl, nil, opts...); err != nil {
			return nil, fmt.Errorf("register %s (version %q, group %q): %w", s.Interface, s.Version, s.Group, err)
		}
	}
	return srv, nil
}

// Serve runs NewProvider's server until the process ends.
func Serve(name string, port int, logLevel string, services ...Service) error {
	srv, err := NewProvider(name, port, logLevel, services...)
	if err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		return fmt.Errorf("serve on port %d: %w", port, err)
	}
	return nil
}

// WaitListening polls addr until it accepts a TCP connection, for at most timeout. served
// is where the server's Serve returns: if it does first, WaitListening returns its error.
func WaitListening(addr string, timeout time.Duration, served <-chan error) error {
	for deadline := time.Now().Add(timeout); ; {
		select {
		case err := <-served:
			if err == nil {
				err = errors.New("returned")
			}
			return fmt.Errorf("serve: %w", err)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not listening on %s after %v", addr, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
