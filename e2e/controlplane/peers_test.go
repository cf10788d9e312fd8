package controlplane_test

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"dubbo.apache.org/dubbo-go/v3/client"
	"dubbo.apache.org/dubbo-go/v3/common/constant"
	"dubbo.apache.org/dubbo-go/v3/protocol/base"
	dubboprotocol "dubbo.apache.org/dubbo-go/v3/protocol/dubbo"
	"github.com/apache/thrift/lib/go/thrift"

	"github.com/meltemi-mesh/meltemi/e2e/demo"
	"github.com/meltemi-mesh/meltemi/e2e/demo/gen-go/echo"
)

// A peer kind: how to start a server that names itself in its replies ("<name>: <msg>") and
// how to call one.
type peers struct {
	protocol string
	// start runs a server named name on a free port and returns its address; it stops when
	// the test ends.
	start func(t *testing.T, name string) string
	// dial returns a client of the listener at addr; worker numbers the load's clients, so
	// that they can differ in how they call.
	dial func(addr string, worker int) (caller, error)
}

// caller is one client connection.
type caller interface {
	// echo calls Echo(msg) and returns the reply.
	echo(msg string) (string, error)
	close()
}

var thriftPeers = peers{protocol: "thrift", start: startThriftServer, dial: dialThrift}

var dubboPeers = peers{protocol: "dubbo", start: startDubboProvider, dial: dialDubbo}

// startThriftServer runs an apache/thrift Go Echo server. Go's THeader server transport
// detects framed, unframed and THeader clients, binary and compact, and answers each in kind.
func startThriftServer(t *testing.T, name string) string {
	t.Helper()
	conf := &thrift.TConfiguration{}
	sock, err := thrift.NewTServerSocket("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := sock.Listen(); err != nil {
		t.Fatal(err)
	}
	srv := thrift.NewTSimpleServer4(echo.NewEchoProcessor(thriftEcho{name}), sock,
		thrift.NewTHeaderTransportFactoryConf(nil, conf), thrift.NewTHeaderProtocolFactoryConf(conf))
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve()
	}()
	// The host, started later, is stopped before (cleanups run last-in first-out), so the
	// proxy's upstream connections are closed by now and Stop, which waits for them, returns.
	t.Cleanup(func() {
		stopped := make(chan struct{})
		go func() {
			_ = srv.Stop()
			close(stopped)
		}()
		select {
		case <-stopped:
		case <-time.After(callTimeout):
			t.Errorf("thrift server %s did not stop", name)
		}
		<-served
	})
	return sock.Addr().String()
}

type thriftEcho struct{ name string }

func (h thriftEcho) Echo(_ context.Context, msg string) (string, error) {
	return h.name + ": " + msg, nil
}

// thriftModes are the ways the load's clients write their calls, one per worker in turn.
var thriftModes = []demo.ThriftMode{{Transport: "framed", Protocol: "binary"},
	{Transport: "header", Protocol: "compact"}, {Transport: "buffered", Protocol: "binary"},
	{Transport: "header", Protocol: "binary"}}

// thriftCaller is an apache/thrift client on one connection, kept for every call.
type thriftCaller struct{ c *demo.ThriftClient }

func dialThrift(addr string, worker int) (caller, error) {
	c, err := demo.DialThrift(addr, thriftModes[worker%len(thriftModes)])
	if err != nil {
		return nil, err
	}
	return thriftCaller{c}, nil
}

func (c thriftCaller) echo(msg string) (string, error) { return c.c.Echo(nil, msg) }

func (c thriftCaller) close() { _ = c.c.Close() }

// startDubboProvider runs the demo's dubbo-go provider of demo.DubboInterface (no service
// version) as a subprocess, and waits until it answers a call.
func startDubboProvider(t *testing.T, name string) string {
	t.Helper()
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	addr := freeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	log := &syncBuffer{}
	cmd := exec.Command(demoBin, "dubbo-provider", "-name", name, "-port", port)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// Consumers first: a connection the provider resets makes getty log an error.
		closeDubboConsumers(addr)
		_ = cmd.Process.Kill()
		<-exited
	})
	for deadline := time.Now().Add(30 * time.Second); ; {
		select {
		case <-exited:
			t.Fatalf("dubbo provider %s exited: %s", name, log.String())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dubbo provider %s not listening on %s after 30s: %s", name, addr, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Listening is not yet exported: the first call says when the service is.
	c, err := dialDubbo(addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; {
		reply, err := c.echo("ping")
		if err == nil && reply == name+": ping" {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("dubbo provider %s at %s: %q, %v; want %q", name, addr, reply, err, name+": ping")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// dubboCaller is a dubbo-go consumer of demo.DubboInterface connected directly to one
// address (no registry).
type dubboCaller struct {
	addr string
	conn *client.Connection
}

func dialDubbo(addr string, _ int) (caller, error) {
	cli, err := client.NewClient(
		client.WithClientURL("dubbo://"+addr),
		client.WithClientProtocolDubbo(),
		client.WithClientSerialization(constant.Hessian2Serialization),
		// One attempt per call: a retry would hide the proxy's errors from the count.
		client.WithClientClusterFailFast(),
	)
	if err != nil {
		return nil, fmt.Errorf("dubbo-go client: %w", err)
	}
	conn, err := cli.Dial(demo.DubboInterface)
	if err != nil {
		return nil, fmt.Errorf("dubbo-go dial %s: %w", addr, err)
	}
	return &dubboCaller{addr: addr, conn: conn}, nil
}

func (c *dubboCaller) echo(msg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var reply string
	// Without an explicit timeout CallUnary sends an empty one, which dubbo-go reads as 0.
	if err := c.conn.CallUnary(ctx, []any{msg}, &reply, "Echo", client.WithCallRequestTimeout(callTimeout)); err != nil {
		return "", err
	}
	return reply, nil
}

// close does nothing: dubbo-go consumers of one address share their connections, which
// closeDubboConsumers closes when the test ends.
func (c *dubboCaller) close() {}

// closeDubboConsumers destroys the dubbo invokers connected to addr, which closes their
// connections. dubbo-go's Connection has no Close; its protocol keeps the invokers.
func closeDubboConsumers(addr string) {
	p, ok := dubboprotocol.GetProtocol().(interface{ Invokers() []base.Invoker })
	if !ok {
		return
	}
	for _, inv := range p.Invokers() {
		// A destroyed invoker stays in the list, without its URL.
		if u := inv.GetURL(); u != nil && u.Location == addr {
			inv.Destroy()
		}
	}
}

// serverOf returns the server that answered reply to msg ("<server>: <msg>").
func serverOf(reply, msg string) (string, error) {
	server, got, ok := strings.Cut(reply, ": ")
	if !ok || got != msg || server == "" {
		return "", fmt.Errorf("reply %q to %q: want \"<server>: %s\"", reply, msg, msg)
	}
	return server, nil
}
