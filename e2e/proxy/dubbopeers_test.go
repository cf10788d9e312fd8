package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"dubbo.apache.org/dubbo-go/v3/client"
	"dubbo.apache.org/dubbo-go/v3/common/constant"
	"dubbo.apache.org/dubbo-go/v3/common/extension"
	"dubbo.apache.org/dubbo-go/v3/filter"
	"dubbo.apache.org/dubbo-go/v3/protocol/base"
	dubboprotocol "dubbo.apache.org/dubbo-go/v3/protocol/dubbo"
	"dubbo.apache.org/dubbo-go/v3/protocol/result"
	remotinggetty "dubbo.apache.org/dubbo-go/v3/remoting/getty"

	"github.com/meltemi-mesh/meltemi/e2e/internal/dubbopeer"

	// What a direct-URL consumer needs besides what dubbopeer links in.
	_ "dubbo.apache.org/dubbo-go/v3/cluster/cluster/failfast"
	_ "dubbo.apache.org/dubbo-go/v3/cluster/cluster/failover"
	_ "dubbo.apache.org/dubbo-go/v3/cluster/loadbalance/random"
)

// The services the Dubbo providers export. Every provider exports echoService without a
// version, echoService version "2.0.0", and otherService; each names itself in its replies.
const (
	echoService  = "org.apache.dubbo.sample.EchoService"
	otherService = "org.apache.dubbo.sample.OtherService"
	version2     = "2.0.0"
)

// hangingMarker is what a provider prints when a call has reached it and hangs.
const hangingMarker = "meltemi-e2e: a call hangs"

// providerEnv, when set, makes the test binary a Dubbo provider instead of running tests:
// NAME:PORT.
const providerEnv = "MELTEMI_E2E_PROXY_DUBBO_PROVIDER"

// runSubprocessRole runs the role the environment asks for, if any, and then exits.
func runSubprocessRole() bool {
	spec := os.Getenv(providerEnv)
	if spec == "" {
		return false
	}
	quietDubboLogs()
	go func() {
		// The test process holds the other end of stdin: when it goes, so does the provider.
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	name, p, _ := strings.Cut(spec, ":")
	port, err := strconv.Atoi(p)
	if err == nil {
		err = runProvider(name, port)
	}
	fmt.Fprintln(os.Stderr, "provider:", err)
	os.Exit(1)
	return true
}

// EchoProvider is echoService as provider name serves it.
//
// Echo("sleep:<duration>") answers after that long; Echo("hang") never answers.
type EchoProvider struct{ name string }

// Echo returns "name:msg".
func (p *EchoProvider) Echo(_ context.Context, msg string) (string, error) {
	switch {
	case msg == "hang":
		// The test waits for this line before it kills the provider.
		fmt.Println(hangingMarker)
		select {}
	case strings.HasPrefix(msg, "sleep:"):
		d, err := time.ParseDuration(strings.TrimPrefix(msg, "sleep:"))
		if err != nil {
			return "", err
		}
		time.Sleep(d)
	}
	return p.name + ":" + msg, nil
}

// Greet returns "name:greet:msg": a second method, for routing on the method.
func (p *EchoProvider) Greet(_ context.Context, msg string) (string, error) {
	return p.name + ":greet:" + msg, nil
}

// EchoProviderV2 is the same service exported with version 2.0.0, and OtherProvider the
// same methods under otherService: dubbo-go keys services by their Go type name.
type (
	EchoProviderV2 struct{ EchoProvider }
	OtherProvider  struct{ EchoProvider }
)

func runProvider(name string, port int) error {
	return dubbopeer.Serve("meltemi-e2e-"+name, port, "warn",
		dubbopeer.Service{Impl: &EchoProvider{name}, Interface: echoService},
		dubbopeer.Service{Impl: &EchoProviderV2{EchoProvider{name}}, Interface: echoService, Version: version2},
		dubbopeer.Service{Impl: &OtherProvider{EchoProvider{name}}, Interface: otherService})
}

// quietDubboLogs silences getty's per-packet logging and dubbo-go's informational logging,
// and sets the consumer's process-wide getty configuration: one connection per address.
func quietDubboLogs() {
	if err := dubbopeer.Quiet("error"); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	extension.SetFilter(probeFilterName, func() filter.Filter { return probeFilter{} })
	conf := remotinggetty.GetDefaultClientConfig()
	conf.ConnectionNum = 1
	remotinggetty.SetClientConf(*conf)
}

// dubboProvider is a provider subprocess.
type dubboProvider struct {
	name, addr string
	cmd        *exec.Cmd
	exited     chan struct{}
	logs       *syncBuffer
}

// startDubboProviders starts the named providers in parallel and waits until each answers.
func startDubboProviders(t *testing.T, names ...string) []*dubboProvider {
	t.Helper()
	ps := make([]*dubboProvider, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { ps[i], errs[i] = startDubboProvider(name) })
	}
	wg.Wait()
	for _, p := range ps {
		if p != nil {
			t.Cleanup(func() {
				p.kill()
				if t.Failed() {
					t.Logf("provider %s output:\n%s", p.name, p.logs.String())
				}
			})
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return ps
}

func startDubboProvider(name string) (*dubboProvider, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &dubboProvider{name: name, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		exited: make(chan struct{}), logs: &syncBuffer{}}
	p.cmd = exec.Command(os.Args[0])
	p.cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s:%d", providerEnv, name, port))
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	// The provider exits when its stdin closes: if this process dies without killing it,
	// the pipe closes with it.
	if _, err := p.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start provider %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	// The provider listens before it has exported its services: ready means a real call
	// through a direct consumer succeeds.
	deadline := time.Now().Add(15 * time.Second)
	for {
		var got string
		err := dubboCall(newDubboConn(p.addr, echoService, ""), nil, "Echo", "ready?", &got, time.Second)
		closeDubboConsumers(p.addr)
		if err == nil && got == name+":ready?" {
			return p, nil
		}
		select {
		case <-p.exited:
			return p, fmt.Errorf("provider %s exited: %v\n%s", name, err, p.logs.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return p, fmt.Errorf("provider %s on %s not ready: %v (answered %q)", name, p.addr, err, got)
		}
	}
}

// waitOutput waits until the provider has printed s.
func (p *dubboProvider) waitOutput(s string, timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(p.logs.String(), s) {
			return true
		}
	}
	return false
}

// kill ends the provider at once, as a crash would.
func (p *dubboProvider) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// newDubboConn returns a dubbo-go consumer of service (and version, if not empty) connected
// directly to addr. Close it with closeDubboConsumers.
func newDubboConn(addr, service, version string) *client.Connection {
	cli, err := client.NewClient(
		client.WithClientURL("dubbo://"+addr),
		client.WithClientProtocolDubbo(),
		client.WithClientSerialization(constant.Hessian2Serialization),
		client.WithClientFilter(probeFilterName),
		// One attempt per call: failover would retry the proxy's error replies.
		client.WithClientClusterFailFast(),
	)
	if err != nil {
		panic(fmt.Sprintf("dubbo-go client: %v", err)) // options are constant
	}
	var opts []client.ReferenceOption
	if version != "" {
		opts = append(opts, client.WithVersion(version))
	}
	conn, err := cli.Dial(service, opts...)
	if err != nil {
		panic(fmt.Sprintf("dubbo-go dial %s: %v", addr, err)) // a direct URL dials lazily
	}
	return conn
}

// dubboConn is newDubboConn for a test: the consumer is closed when the test ends.
func dubboConn(t *testing.T, addr, service, version string) *client.Connection {
	t.Helper()
	t.Cleanup(func() { closeDubboConsumers(addr) })
	return newDubboConn(addr, service, version)
}

// closeDubboConsumers destroys the dubbo invokers connected to addr, which closes their
// connections. dubbo-go's Connection has no Close; its protocol keeps the invokers.
func closeDubboConsumers(addr string) {
	p, ok := dubboprotocol.GetProtocol().(interface{ Invokers() []base.Invoker })
	if !ok {
		panic(fmt.Sprintf("dubbo protocol %T does not list its invokers", dubboprotocol.GetProtocol()))
	}
	for _, inv := range p.Invokers() {
		// A destroyed invoker stays in the list, without its URL.
		if u := inv.GetURL(); u != nil && u.Location == addr {
			inv.Destroy()
		}
	}
}

// dubboCall makes one unary call of method(arg) with timeout; attachments, if any, are
// added to the request.
func dubboCall(conn *client.Connection, attachments map[string]string, method, arg string, reply *string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if attachments != nil {
		ctx = context.WithValue(ctx, probeKey{}, attachments)
	}
	// Without an explicit timeout CallUnary sends an empty one, which dubbo-go reads as 0.
	if err := conn.CallUnary(ctx, []any{arg}, reply, method, client.WithCallRequestTimeout(timeout)); err != nil {
		return fmt.Errorf("%s(%q): %w", method, arg, err)
	}
	return nil
}

// probeFilterName is the consumer filter that adds request attachments, which dubbo-go's
// CallUnary cannot.
const probeFilterName = "meltemi-e2e-attachments"

// probeKey is the context key of the attachments (map[string]string) to send.
type probeKey struct{}

type probeFilter struct{}

func (probeFilter) Invoke(ctx context.Context, next base.Invoker, inv base.Invocation) result.Result {
	if atts, ok := ctx.Value(probeKey{}).(map[string]string); ok {
		for k, v := range atts {
			inv.SetAttachment(k, v)
		}
	}
	return next.Invoke(ctx, inv)
}

func (probeFilter) OnResponse(_ context.Context, res result.Result, _ base.Invoker, _ base.Invocation) result.Result {
	return res
}

// syncBuffer collects a subprocess's output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() < 1<<20 { // a provider that logs without end must not exhaust memory
		s.b.Write(p)
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
