//go:build kind

package kind

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/meltemi-mesh/meltemi/e2e/demo"
)

// The addresses the client pod calls: the Services of manifests/, by their short names (the
// client runs in their namespace). Their ClusterIPs are where the sidecar's outbound listeners
// with the plugin are.
const (
	thriftAddr       = "thrift-echo:9090"
	dubboAddr        = "dubbo-echo:20880"
	thriftAerakiAddr = "thrift-echo-aeraki:9090"
	dubboAerakiAddr  = "dubbo-echo-aeraki:20880"
)

// readyTimeout bounds how long a test waits for routing that run.sh already saw Programmed
// to show in calls (the sidecars receive EnvoyFilters and routes asynchronously).
const readyTimeout = 3 * time.Minute

// namespace is the demo apps' namespace (run.sh passes it; manifests/ use meltemi-e2e).
func namespace() string {
	if ns := os.Getenv("MELTEMI_E2E_NAMESPACE"); ns != "" {
		return ns
	}
	return "meltemi-e2e"
}

// kubectl runs kubectl (KUBECONFIG from the environment, as run.sh sets it) and returns its
// standard output, or an error with its standard error.
func kubectl(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// batch is a batch of identical calls from the client pod.
type batch struct {
	protocol string            // "thrift" (default) or "dubbo"
	addr     string            // service host:port
	mode     string            // Thrift transport/protocol; "header/binary" when empty
	headers  map[string]string // THeader headers
	version  string            // Dubbo service version
	n        int               // number of calls; 1 when 0
	msg      string            // message; "hello" when empty
}

func (b batch) String() string {
	return fmt.Sprintf("%s %s mode=%s headers=%v version=%q n=%d msg=%q",
		b.protocol, b.addr, b.mode, b.headers, b.version, b.n, b.msg)
}

// run makes the calls in the client pod (meltemi-demo call) and returns its report.
func (b batch) run(ctx context.Context) (demo.CallReport, error) {
	if b.protocol == "" {
		b.protocol = "thrift"
	}
	if b.mode == "" {
		b.mode = "header/binary"
	}
	if b.n == 0 {
		b.n = 1
	}
	if b.msg == "" {
		b.msg = "hello"
	}
	args := []string{"-n", namespace(), "exec", "deploy/client", "-c", "client", "--",
		"meltemi-demo", "call", "-protocol", b.protocol, "-addr", b.addr, "-mode", b.mode,
		"-n", fmt.Sprint(b.n), "-msg", b.msg}
	for k, v := range b.headers {
		args = append(args, "-header", k+"="+v)
	}
	if b.version != "" {
		args = append(args, "-version", b.version)
	}
	out, err := kubectl(ctx, args...)
	if err != nil {
		return demo.CallReport{}, err
	}
	var r demo.CallReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return demo.CallReport{}, fmt.Errorf("%v: report %q: %w", b, out, err)
	}
	return r, nil
}

// allFrom checks that every call of the batch succeeded and was answered by server.
func allFrom(b batch, r demo.CallReport, server string) error {
	n := max(b.n, 1)
	if r.Failed != 0 || r.Replies[server] != n || len(r.Replies) != 1 {
		return fmt.Errorf("%v: replies %v, %d failed %q; want all %d from %s", b, r.Replies, r.Failed, r.Errors, n, server)
	}
	return nil
}

// expectAllFrom runs b until all its calls are answered by server, for at most readyTimeout:
// the first batches after a deployment may still meet sidecars without their routes.
func expectAllFrom(t *testing.T, b batch, server string) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		r, err := b.run(t.Context())
		if err == nil {
			err = allFrom(b, r, server)
		}
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", readyTimeout, err)
		}
		time.Sleep(3 * time.Second)
	}
}

// TestMetaRoutersProgrammed checks what run.sh waited for and what the routing below relies
// on: our MetaRouters are Accepted and Programmed, and every EnvoyFilter the controller wrote
// is scoped to the sidecars that carry the plugin.
func TestMetaRoutersProgrammed(t *testing.T) {
	for _, name := range []string{"thrift-echo", "dubbo-echo"} {
		for _, cond := range []string{"Accepted", "Programmed"} {
			out, err := kubectl(t.Context(), "-n", namespace(), "get", "metarouters.metaprotocol.meltemi.io", name,
				"-o", fmt.Sprintf(`jsonpath={.status.conditions[?(@.type==%q)].status}`, cond))
			if err != nil {
				t.Fatal(err)
			}
			if out != "True" {
				t.Errorf("MetaRouter %s: condition %s is %q, want True", name, cond, out)
			}
		}
	}

	out, err := kubectl(t.Context(), "get", "envoyfilters.networking.istio.io", "-A",
		"-l", "app.kubernetes.io/managed-by=meltemi-controller", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Items []struct {
			Metadata struct{ Namespace, Name string }
			Spec     struct {
				WorkloadSelector *struct{ Labels map[string]string } `json:"workloadSelector"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) == 0 {
		t.Fatal("no EnvoyFilters labelled app.kubernetes.io/managed-by=meltemi-controller")
	}
	for _, ef := range list.Items {
		if ws := ef.Spec.WorkloadSelector; ws == nil || ws.Labels["meltemi.io/plugin"] != "enabled" {
			t.Errorf("EnvoyFilter %s/%s: workloadSelector %v, want meltemi.io/plugin: enabled",
				ef.Metadata.Namespace, ef.Metadata.Name, ws)
		}
	}
}

// TestVersionRouting: Thrift calls with the THeader header version=v2 reach v2, others v1,
// in every transport and protocol; Dubbo calls for service version 2.0.0 reach v2, others v1.
func TestVersionRouting(t *testing.T) {
	expectAllFrom(t, batch{addr: thriftAddr, headers: map[string]string{"version": "v2"}, n: 20}, "v2")
	for _, tc := range []struct {
		b    batch
		want string
	}{
		{batch{addr: thriftAddr, n: 10}, "v1"},
		{batch{addr: thriftAddr, headers: map[string]string{"version": "v1"}, n: 10}, "v1"},
		{batch{addr: thriftAddr, mode: "header/compact", headers: map[string]string{"version": "v2"}, n: 10}, "v2"},
		{batch{addr: thriftAddr, mode: "framed/binary", n: 10}, "v1"},
		{batch{addr: thriftAddr, mode: "buffered/compact", n: 10}, "v1"},
		{batch{protocol: "dubbo", addr: dubboAddr, version: "2.0.0", n: 10}, "v2"},
		{batch{protocol: "dubbo", addr: dubboAddr, n: 10}, "v1"},
	} {
		t.Run(tc.b.String(), func(t *testing.T) {
			if tc.b.protocol == "dubbo" {
				// The Dubbo listener is programmed independently of the Thrift one.
				expectAllFrom(t, tc.b, tc.want)
				return
			}
			r, err := tc.b.run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := allFrom(tc.b, r, tc.want); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestAttributeRouting: the exact, prefix and regex matches of the Thrift MetaRouter, on
// values that match and values that only nearly do.
func TestAttributeRouting(t *testing.T) {
	expectAllFrom(t, batch{addr: thriftAddr, headers: map[string]string{"version": "v2"}}, "v2")
	for _, tc := range []struct {
		match, key, value, want string
	}{
		{"exact", "version", "v2", "v2"},
		{"exact", "version", "v2x", "v1"},
		{"exact", "version", "V2", "v1"},
		{"prefix", "user", "beta-7", "v2"},
		{"prefix", "user", "beta-", "v2"},
		{"prefix", "user", "alpha-7", "v1"},
		{"prefix", "user", "xbeta-7", "v1"},
		{"regex", "region", "eu-west-1", "v2"},
		{"regex", "region", "eu-north-12", "v2"},
		{"regex", "region", "eu-south-1", "v1"},
		{"regex", "region", "eu-west-1a", "v1"},
		{"regex", "region", "xeu-west-1", "v1"},
	} {
		t.Run(fmt.Sprintf("%s/%s=%s", tc.match, tc.key, tc.value), func(t *testing.T) {
			b := batch{addr: thriftAddr, headers: map[string]string{tc.key: tc.value}, n: 5}
			r, err := b.run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := allFrom(b, r, tc.want); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestWeightedSplit: the 80/20 route sends about a fifth of 400 calls to v2. With p = 0.2
// the standard deviation of v2's share is 0.02: the tolerance of ±0.08 fails a correct split
// about once in 15,000 runs, and a 50/50 or 100/0 split every time.
func TestWeightedSplit(t *testing.T) {
	expectAllFrom(t, batch{addr: thriftAddr, headers: map[string]string{"version": "v2"}}, "v2")
	const n = 400
	b := batch{addr: thriftAddr, headers: map[string]string{"scenario": "split"}, n: n}
	r, err := b.run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r.Failed != 0 || r.Replies["v1"]+r.Replies["v2"] != n {
		t.Fatalf("replies %v, %d failed %q; want %d from v1 and v2", r.Replies, r.Failed, r.Errors, n)
	}
	share := float64(r.Replies["v2"]) / n
	t.Logf("v1 %d, v2 %d: v2's share %.3f (route: 0.2)", r.Replies["v1"], r.Replies["v2"], share)
	if share < 0.12 || share > 0.28 {
		t.Errorf("v2's share %.3f, want 0.20 ± 0.08", share)
	}
}

// TestTimeout: a call the server answers after 3s on the route with a 1s timeout fails at
// about 1s; the same call on the default route (10s) succeeds after 3s, so the failure comes
// from the route's timeout and not from the server or the client.
func TestTimeout(t *testing.T) {
	expectAllFrom(t, batch{addr: thriftAddr, headers: map[string]string{"version": "v2"}}, "v2")
	slow := batch{addr: thriftAddr, headers: map[string]string{"scenario": "timeout"}, n: 3, msg: "sleep=3s timeout"}
	r, err := slow.run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if r.Failed != 3 || len(r.Replies) != 0 {
		t.Errorf("%v: replies %v, %d failed; want every call to time out", slow, r.Replies, r.Failed)
	}
	// The timeout is 1s; the margin is for the exec'd client's connection setup.
	if r.MinMillis < 900 || r.MaxMillis > 2500 {
		t.Errorf("%v: calls took %d..%d ms, want about 1000 (the route's timeout), well under the server's 3000",
			slow, r.MinMillis, r.MaxMillis)
	}
	t.Logf("timed-out calls: %d..%d ms, errors %q", r.MinMillis, r.MaxMillis, r.Errors)

	control := batch{addr: thriftAddr, n: 1, msg: "sleep=3s control"}
	r, err = control.run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := allFrom(control, r, "v1"); err != nil {
		t.Error(err)
	}
	if r.MinMillis < 2900 {
		t.Errorf("%v: answered in %d ms, want after the server's 3s", control, r.MinMillis)
	}
}

// serverCalls is the sum of the calls answered by the pods of a Deployment (GET /stats on
// 8081, through the API server's pod proxy).
func serverCalls(t *testing.T, app, version string) int64 {
	t.Helper()
	out, err := kubectl(t.Context(), "-n", namespace(), "get", "pods", "-l", "app="+app+",version="+version,
		"-o", "jsonpath={.items[*].metadata.name}")
	if err != nil {
		t.Fatal(err)
	}
	pods := strings.Fields(out)
	if len(pods) == 0 {
		t.Fatalf("no pods app=%s,version=%s", app, version)
	}
	var sum int64
	for _, pod := range pods {
		body, err := kubectl(t.Context(), "get", "--raw",
			fmt.Sprintf("/api/v1/namespaces/%s/pods/%s:8081/proxy/stats", namespace(), pod))
		if err != nil {
			t.Fatal(err)
		}
		var s demo.StatsReport
		if err := json.Unmarshal([]byte(body), &s); err != nil {
			t.Fatalf("pod %s: stats %q: %v", pod, body, err)
		}
		sum += s.Calls
	}
	return sum
}

// TestMirror: every call on the mirror route is answered by v1 and copied to v2, whose
// replies are dropped: v2's call counter grows by exactly the number of calls. The tests run
// one after another, so no other calls reach v2 meanwhile.
func TestMirror(t *testing.T) {
	expectAllFrom(t, batch{addr: thriftAddr, headers: map[string]string{"version": "v2"}}, "v2")
	const n = 50
	v1Before, v2Before := serverCalls(t, "thrift-echo", "v1"), serverCalls(t, "thrift-echo", "v2")
	b := batch{addr: thriftAddr, headers: map[string]string{"scenario": "mirror"}, n: n}
	r, err := b.run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := allFrom(b, r, "v1"); err != nil {
		t.Fatal(err)
	}
	// Mirrored calls are sent alongside the originals but may finish after them.
	deadline := time.Now().Add(30 * time.Second)
	var mirrored int64
	for {
		mirrored = serverCalls(t, "thrift-echo", "v2") - v2Before
		if mirrored >= n || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	if mirrored != n {
		t.Errorf("v2 (the mirror) received %d calls, want %d copies", mirrored, n)
	}
	if got := serverCalls(t, "thrift-echo", "v1") - v1Before; got != n {
		t.Errorf("v1 received %d calls, want %d", got, n)
	}
}

// TestAerakiRouters: MetaRouters of Aeraki's group (metaprotocol.aeraki.io), on Services
// named in Aeraki's convention, route as Aeraki would: Thrift by method and header, Dubbo by
// interface and service version.
func TestAerakiRouters(t *testing.T) {
	expectAllFrom(t, batch{addr: thriftAerakiAddr, headers: map[string]string{"version": "v2"}, n: 10}, "v2")
	expectAllFrom(t, batch{protocol: "dubbo", addr: dubboAerakiAddr, version: "2.0.0", n: 10}, "v2")
	for _, tc := range []struct {
		b    batch
		want string
	}{
		{batch{addr: thriftAerakiAddr, n: 10}, "v1"},
		{batch{addr: thriftAerakiAddr, headers: map[string]string{"version": "v3"}, n: 10}, "v1"},
		{batch{addr: thriftAerakiAddr, mode: "header/compact", headers: map[string]string{"version": "v2"}, n: 10}, "v2"},
		{batch{protocol: "dubbo", addr: dubboAerakiAddr, n: 10}, "v1"},
	} {
		t.Run(tc.b.String(), func(t *testing.T) {
			r, err := tc.b.run(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if err := allFrom(tc.b, r, tc.want); err != nil {
				t.Error(err)
			}
		})
	}
}
