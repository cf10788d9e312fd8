package demo

import (
	"context"
	"fmt"
	"time"

	"github.com/apache/thrift/lib/go/thrift"

	"github.com/meltemi-mesh/meltemi/e2e/demo/gen-go/echo"
)

// callTimeout bounds every demo call and connection attempt.
const callTimeout = 5 * time.Second

type thriftEcho struct {
	name  string
	stats *Stats
}

func (h thriftEcho) Echo(_ context.Context, msg string) (string, error) {
	return reply(h.name, h.stats, msg), nil
}

// ServeThrift serves the Thrift Echo service on addr until the process ends, replying
// "<name>: <msg>". It speaks every transport and protocol the demo listener detects: Go's
// THeader server transport recognises framed and unframed (buffered) binary and compact
// clients as well as THeader ones, and answers each in its own mode.
func ServeThrift(name, addr string) error {
	return ServeThriftStats(name, addr, nil)
}

// ServeThriftStats is ServeThrift counting the calls it serves in stats (nil: no counting).
// A message "sleep=<duration> ..." is answered after that delay (at most 30s).
func ServeThriftStats(name, addr string, stats *Stats) error {
	conf := &thrift.TConfiguration{}
	sock, err := thrift.NewTServerSocket(addr)
	if err != nil {
		return fmt.Errorf("thrift server %s: %w", name, err)
	}
	srv := thrift.NewTSimpleServer4(echo.NewEchoProcessor(thriftEcho{name: name, stats: stats}), sock,
		thrift.NewTHeaderTransportFactoryConf(nil, conf), thrift.NewTHeaderProtocolFactoryConf(conf))
	if err := srv.Serve(); err != nil {
		return fmt.Errorf("thrift server %s on %s: %w", name, addr, err)
	}
	return nil
}

// ThriftMode is one way a Thrift client writes its calls.
type ThriftMode struct {
	Transport string // "framed", "buffered" or "header"
	Protocol  string // "binary" or "compact"
}

func (m ThriftMode) String() string { return m.Transport + "/" + m.Protocol }

// ThriftEcho calls echo(msg) on addr in mode, with THeader headers when headers is not empty
// (mode must then be THeader), on a connection of its own.
func ThriftEcho(addr string, mode ThriftMode, headers map[string]string, msg string) (string, error) {
	if len(headers) > 0 && mode.Transport != "header" {
		return "", fmt.Errorf("%s cannot carry headers", mode)
	}
	c, err := DialThrift(addr, mode)
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.Echo(headers, msg)
}

// ThriftClient is an apache/thrift Echo client on one connection, in one mode, for as many
// calls as its user makes.
type ThriftClient struct {
	mode  ThriftMode
	trans thrift.TTransport
	cli   *echo.EchoClient
}

// DialThrift connects to addr with a client that speaks mode.
func DialThrift(addr string, mode ThriftMode) (*ThriftClient, error) {
	conf := &thrift.TConfiguration{ConnectTimeout: callTimeout, SocketTimeout: callTimeout}
	sock := thrift.NewTSocketConf(addr, conf)
	var trans thrift.TTransport
	var prot thrift.TProtocol
	switch mode.Transport {
	case "framed":
		trans = thrift.NewTFramedTransportConf(sock, conf)
	case "buffered":
		trans = thrift.NewTBufferedTransport(sock, 4096)
	case "header":
		if mode.Protocol == "compact" {
			conf.THeaderProtocolID = thrift.THeaderProtocolIDPtrMust(thrift.THeaderProtocolCompact)
		}
		trans = thrift.NewTHeaderTransportConf(sock, conf)
		prot = thrift.NewTHeaderProtocolConf(trans, conf)
	default:
		return nil, fmt.Errorf("unknown Thrift transport %q", mode.Transport)
	}
	if prot == nil {
		switch mode.Protocol {
		case "binary":
			prot = thrift.NewTBinaryProtocolConf(trans, conf)
		case "compact":
			prot = thrift.NewTCompactProtocolConf(trans, conf)
		default:
			return nil, fmt.Errorf("unknown Thrift protocol %q", mode.Protocol)
		}
	}
	if err := trans.Open(); err != nil {
		return nil, fmt.Errorf("thrift %s: connecting to %s: %w", mode, addr, err)
	}
	return &ThriftClient{mode: mode, trans: trans, cli: echo.NewEchoClient(thrift.NewTStandardClient(prot, prot))}, nil
}

// Echo calls echo(msg), with THeader headers when headers is not empty.
func (c *ThriftClient) Echo(headers map[string]string, msg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	keys := make([]string, 0, len(headers))
	for k, v := range headers {
		ctx = thrift.SetHeader(ctx, k, v)
		keys = append(keys, k)
	}
	ctx = thrift.SetWriteHeaderList(ctx, keys)
	reply, err := c.cli.Echo(ctx, msg)
	if err != nil {
		return "", fmt.Errorf("echo over %s: %w", c.mode, err)
	}
	return reply, nil
}

// Close closes the connection.
func (c *ThriftClient) Close() error { return c.trans.Close() }
