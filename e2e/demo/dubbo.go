package demo

import (
	"context"
	"fmt"
	"os"
	"sync"

	"dubbo.apache.org/dubbo-go/v3/client"
	"dubbo.apache.org/dubbo-go/v3/common/constant"

	"github.com/meltemi-mesh/meltemi/e2e/internal/dubbopeer"

	// What a direct-URL consumer needs besides what dubbopeer links in.
	_ "dubbo.apache.org/dubbo-go/v3/cluster/cluster/failfast"
	_ "dubbo.apache.org/dubbo-go/v3/cluster/cluster/failover"
	_ "dubbo.apache.org/dubbo-go/v3/cluster/loadbalance/random"
)

// DubboInterface is the Dubbo service of the demo: Echo(String) -> String.
const DubboInterface = "org.apache.dubbo.sample.EchoService"

// DubboEchoService implements DubboInterface, replying "<name>: <msg>".
type DubboEchoService struct {
	name  string
	stats *Stats
}

// Echo returns the provider's name and msg, after the delay a message "sleep=<duration> ..."
// asks for.
func (s *DubboEchoService) Echo(_ context.Context, msg string) (string, error) {
	return reply(s.name, s.stats, msg), nil
}

// quietDubbo keeps dubbo-go and getty to warnings: their informational logs would bury the
// demo's output.
var quietDubbo = sync.OnceFunc(func() {
	if err := dubbopeer.Quiet("warn"); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
})

// ServeDubbo serves DubboInterface over the dubbo protocol on port until the process ends,
// with service version version ("" for none), replying "<name>: <msg>".
func ServeDubbo(name string, port int, version string) error {
	return ServeDubboStats(name, port, version, nil)
}

// ServeDubboStats is ServeDubbo counting the calls it serves in stats (nil: no counting).
func ServeDubboStats(name string, port int, version string, stats *Stats) error {
	quietDubbo()
	err := dubbopeer.Serve("meltemi-demo-"+name, port, "warn",
		dubbopeer.Service{Impl: &DubboEchoService{name: name, stats: stats}, Interface: DubboInterface, Version: version})
	if err != nil {
		return fmt.Errorf("dubbo provider %s: %w", name, err)
	}
	return nil
}

// DubboClient calls DubboInterface at one address (a direct URL, no registry).
type DubboClient struct{ cli *client.Client }

// NewDubboClient returns a client of the provider or proxy at addr ("ip:port").
func NewDubboClient(addr string) (*DubboClient, error) {
	quietDubbo()
	cli, err := client.NewClient(
		client.WithClientURL("dubbo://"+addr),
		client.WithClientProtocolDubbo(),
		client.WithClientSerialization(constant.Hessian2Serialization),
		// One attempt per call: the demo shows what the proxy answers.
		client.WithClientClusterFailFast(),
	)
	if err != nil {
		return nil, fmt.Errorf("dubbo client for %s: %w", addr, err)
	}
	return &DubboClient{cli: cli}, nil
}

// Echo calls Echo(msg) on the service version version ("" for none).
func (c *DubboClient) Echo(version, msg string) (string, error) {
	var opts []client.ReferenceOption
	if version != "" {
		opts = append(opts, client.WithVersion(version))
	}
	conn, err := c.cli.Dial(DubboInterface, opts...)
	if err != nil {
		return "", fmt.Errorf("dubbo dial %s: %w", DubboInterface, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var reply string
	// Without an explicit timeout CallUnary sends an empty one, which dubbo-go reads as 0.
	if err := conn.CallUnary(ctx, []any{msg}, &reply, "Echo", client.WithCallRequestTimeout(callTimeout)); err != nil {
		return "", fmt.Errorf("dubbo Echo (version %q): %w", version, err)
	}
	return reply, nil
}
