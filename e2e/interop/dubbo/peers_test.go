package dubbointerop

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
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
	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/meltemi-mesh/meltemi/e2e/internal/dubbopeer"

	// What a direct-URL consumer needs besides what dubbopeer links in.
	_ "dubbo.apache.org/dubbo-go/v3/cluster/cluster/failfast"
	_ "dubbo.apache.org/dubbo-go/v3/cluster/cluster/failover"
	_ "dubbo.apache.org/dubbo-go/v3/cluster/loadbalance/random"
)

// The service both peers agree on. The provider exports it twice: with echoVersion and
// echoGroup (what the dubbo-go consumer calls) and without either (for clients that send no
// version, as the raw client's null-version request does).
const (
	echoInterface = "org.apache.dubbo.sample.EchoService"
	echoVersion   = "1.0.0"
	echoGroup     = "meltemi"
)

// callTimeout bounds every call and every socket operation of a test client.
const callTimeout = 5 * time.Second

// heartbeatPeriod is how often the dubbo-go consumer sends a heartbeat on an open connection
// (getty's client cron); short, so that a test sees several within a second or two.
const heartbeatPeriod = 500 * time.Millisecond

// providerEnv, when set in the environment, makes the test binary a provider listening on
// the port it names instead of running tests.
const providerEnv = "MELTEMI_DUBBO_INTEROP_PROVIDER_PORT"

// providerAddr is the address of the provider subprocess TestMain starts. It is written
// once, before any test runs.
var providerAddr string

// absent is what the provider's Attachment method answers for an attachment it did not get.
const absent = "<absent>"

// User is a POJO the peers exchange, registered with hessian under a Java class name.
type User struct {
	Name string
	Age  int32
}

// JavaClassName is the class hessian writes and looks up for User.
func (*User) JavaClassName() string { return "org.apache.dubbo.sample.User" }

// EchoProvider is the provider's implementation of echoInterface, version echoVersion.
type EchoProvider struct{}

// Echo returns its argument.
func (*EchoProvider) Echo(_ context.Context, msg string) (string, error) { return msg, nil }

// Add takes two hessian ints.
func (*EchoProvider) Add(_ context.Context, a, b int32) (int32, error) { return a + b, nil }

// Greet takes and returns a POJO.
func (*EchoProvider) Greet(_ context.Context, u *User) (*User, error) {
	return &User{Name: "hello " + u.Name, Age: u.Age + 1}, nil
}

// Attachment returns the value of the request attachment key as the provider received it,
// or absent: it makes the attachments the relay forwarded observable to the test.
func (*EchoProvider) Attachment(ctx context.Context, key string) (string, error) {
	atts, _ := ctx.Value(constant.AttachmentKey).(map[string]any)
	v, ok := atts[key]
	if !ok {
		return absent, nil
	}
	return fmt.Sprint(v), nil
}

// PlainEchoProvider is the same service exported without version and group. dubbo-go keys
// services by their Go type name, hence a type of its own.
type PlainEchoProvider struct{ EchoProvider }

// runProvider serves both exports on port until the process is killed.
func runProvider(port int) error {
	return dubbopeer.Serve("meltemi-interop-provider", port, "warn",
		dubbopeer.Service{Impl: &EchoProvider{}, Interface: echoInterface, Version: echoVersion, Group: echoGroup},
		dubbopeer.Service{Impl: &PlainEchoProvider{}, Interface: echoInterface})
}

// quietLogs silences getty's per-packet logging and dubbo-go's informational logging, which
// otherwise dominate the run time.
func quietLogs() {
	if err := dubbopeer.Quiet("warn"); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

// probeFilterName is the consumer filter that lets a test add request attachments and read
// the response's attachments, which dubbo-go's CallUnary does not return.
const probeFilterName = "meltemi-interop-probe"

// probeKey is the context key of a *probe.
type probeKey struct{}

// probe travels in a call's context to the probe filter.
type probe struct {
	send map[string]string // attachments to add to the request

	mu  sync.Mutex
	got map[string]any // the response's attachments
}

func (p *probe) received() map[string]any {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.got
}

type probeFilter struct{}

func (probeFilter) Invoke(ctx context.Context, next base.Invoker, inv base.Invocation) result.Result {
	if p, ok := ctx.Value(probeKey{}).(*probe); ok {
		for k, v := range p.send {
			inv.SetAttachment(k, v)
		}
	}
	return next.Invoke(ctx, inv)
}

func (probeFilter) OnResponse(ctx context.Context, res result.Result, _ base.Invoker, _ base.Invocation) result.Result {
	if p, ok := ctx.Value(probeKey{}).(*probe); ok {
		p.mu.Lock()
		p.got = res.Attachments()
		p.mu.Unlock()
	}
	return res
}

func TestMain(m *testing.M) {
	hessian.RegisterPOJO(&User{})
	quietLogs()
	if p := os.Getenv(providerEnv); p != "" {
		go func() {
			// The test process holds the other end: when it goes, so does the provider.
			_, _ = io.Copy(io.Discard, os.Stdin)
			os.Exit(0)
		}()
		port, err := strconv.Atoi(p)
		if err == nil {
			err = runProvider(port)
		}
		fmt.Fprintln(os.Stderr, "provider:", err)
		os.Exit(1)
	}

	extension.SetFilter(probeFilterName, func() filter.Filter { return probeFilter{} })
	// getty's client configuration is process-wide. One connection per provider address
	// keeps what the relay sees predictable; the heartbeat period is shortened so the
	// heartbeat test does not wait a minute.
	conf := remotinggetty.GetDefaultClientConfig()
	conf.ConnectionNum = 1
	conf.HeartbeatPeriod = heartbeatPeriod.String()
	conf.HeartbeatTimeout = "2s"
	remotinggetty.SetClientConf(*conf)

	stop, logs, err := startProvider()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start provider:", err)
		os.Stderr.Write(logs.Bytes())
		os.Exit(1)
	}
	code := m.Run()
	stop()
	if code != 0 {
		fmt.Fprintln(os.Stderr, "--- provider output:")
		os.Stderr.Write(logs.Bytes())
	}
	os.Exit(code)
}

// syncBuffer collects a subprocess's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A provider that logs without end must not exhaust memory; the start is what matters.
	if s.b.Len() < 1<<20 {
		s.b.Write(p)
	}
	return len(p), nil
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

// startProvider runs the provider subprocess and waits until it answers a call. stop kills
// it: dubbo-go's graceful shutdown is slow and nothing of the provider needs to survive.
// The port is picked free beforehand, so another process may take it first; dubbo-go would
// only log that, so a provider that never answers is retried on another port.
func startProvider() (stop func(), logs *syncBuffer, err error) {
	logs = &syncBuffer{}
	for attempt := 0; ; attempt++ {
		stop, err = startProviderOnce(logs)
		if err == nil || attempt == 2 {
			return stop, logs, err
		}
		fmt.Fprintf(logs, "--- attempt %d: %v\n", attempt+1, err)
	}
}

func startProviderOnce(logs *syncBuffer) (stop func(), err error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), providerEnv+"="+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = logs, logs
	// The provider exits when its stdin closes: if this process dies without killing it
	// (a test timeout, say), the pipe closes with it.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", os.Args[0], err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-exited
		stdin.Close()
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	// The provider listens before it has exported its services: ready means a real call
	// succeeds. It starts in well under a second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		lastErr := probeProvider(addr)
		if lastErr == nil {
			providerAddr = addr
			return stop, nil
		}
		select {
		case err := <-exited:
			exited <- err
			stop()
			return nil, fmt.Errorf("provider exited: %v (last probe: %v)", err, lastErr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("provider on %s not ready: %w", addr, lastErr)
		}
	}
}

func probeProvider(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	rc := &rawConn{c: c}
	req := echoRequest("ready?")
	if err := rc.send(mustFrame(requestFrame(1, req))); err != nil {
		return err
	}
	resp, err := rc.read()
	if err != nil {
		return err
	}
	v, _, err := resp.result()
	if err != nil {
		return err
	}
	if v != "ready?" {
		return fmt.Errorf("probe answered %v", v)
	}
	return nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", ":0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// newConsumer returns a dubbo-go consumer of the versioned service, connected directly to
// addr. The consumer's connection is closed when the test ends (before the relay stops).
func newConsumer(t *testing.T, addr string) *client.Connection {
	t.Helper()
	cli, err := client.NewClient(
		client.WithClientURL("dubbo://"+addr),
		client.WithClientProtocolDubbo(),
		client.WithClientSerialization(constant.Hessian2Serialization),
		client.WithClientFilter(probeFilterName),
		// One attempt per call: failover would retry our error replies.
		client.WithClientClusterFailFast(),
	)
	if err != nil {
		t.Fatalf("new client: %v", err)
	}
	conn, err := cli.Dial(echoInterface, client.WithVersion(echoVersion), client.WithGroup(echoGroup))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { closeConsumers(addr) })
	return conn
}

// closeConsumers destroys the dubbo invokers connected to addr, which closes their
// connections. dubbo-go's Connection has no Close; its protocol keeps the invokers.
func closeConsumers(addr string) {
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

// call makes one unary call with a timeout; pr, if not nil, goes to the probe filter.
func call(conn *client.Connection, pr *probe, method string, args []any, reply any) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	if pr != nil {
		ctx = context.WithValue(ctx, probeKey{}, pr)
	}
	// Without an explicit timeout CallUnary sends an empty one, which dubbo-go reads as 0.
	err := conn.CallUnary(ctx, args, reply, method, client.WithCallRequestTimeout(callTimeout))
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	return nil
}
