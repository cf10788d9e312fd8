package envoy

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/envoy/contrib/golang/common/go/api"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/plugin/internal/xdsclient/xdstest"
)

// upstreams makes every dial of a fakeEnvoy ready at once and tells which upstream a
// request went to.
type upstreams struct {
	env   *fakeEnvoy
	seen  int
	conns []upConn
}

type upConn struct {
	addr string
	conn *fakeConn
}

// send sends one Thrift call for method on a new downstream connection of fc, and returns
// the address of the upstream that received it, or the downstream's error reply.
func (u *upstreams) send(t *testing.T, fc *FilterConfig, method string) (addr string, reply []byte) {
	t.Helper()
	down := &fakeConn{}
	f := fc.CreateFilter(down)
	f.OnNewConnection()
	defer f.OnEvent(api.RemoteClose)
	before := make([]int, len(u.conns))
	for i, c := range u.conns {
		before[i] = len(c.conn.written())
	}
	f.OnData(framed(thriftCall, method, 1, stringStruct(1, "x")), false)
	waitFor(t, "the request upstream or a reply", func() bool {
		u.env.mu.Lock()
		dials := slices.Clone(u.env.dials[u.seen:])
		u.seen = len(u.env.dials)
		u.env.mu.Unlock()
		for _, d := range dials {
			up := &fakeConn{}
			d.f.OnPoolReady(up)
			u.conns = append(u.conns, upConn{d.addr, up})
			before = append(before, 0)
		}
		for i, c := range u.conns {
			if len(c.conn.written()) > before[i] {
				addr = c.addr
				return true
			}
		}
		reply = down.written()
		return len(reply) > 0
	})
	return addr, reply
}

// sendUntil sends calls until one reaches want.
func (u *upstreams) sendUntil(t *testing.T, fc *FilterConfig, method, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		addr, reply := u.send(t, fc, method)
		if addr == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls to %s do not reach %s: last went to %q, reply %q", method, want, addr, reply)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func xdsRoutes(name string, routes ...*apiv1alpha1.Route) *apiv1alpha1.RouteConfiguration {
	return &apiv1alpha1.RouteConfiguration{Name: name, Routes: routes}
}

func methodRoute(method, cluster string) *apiv1alpha1.Route {
	return &apiv1alpha1.Route{
		Name: method,
		Match: &apiv1alpha1.RouteMatch{Attributes: []*apiv1alpha1.AttributeMatcher{{Name: "method",
			MatchSpecifier: &apiv1alpha1.AttributeMatcher_Exact{Exact: method}}}},
		Route: &apiv1alpha1.RouteAction{ClusterSpecifier: &apiv1alpha1.RouteAction_Cluster{Cluster: cluster}},
	}
}

func xdsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: name},
	}
}

func xdsEndpoints(name string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1",
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}}}}}}}}
}

func rdsConfig(routeConfig, addr string) string {
	return fmt.Sprintf(`{"protocol": "thrift", "rds": {"route_config_name": %q, "config_source": %q}}`, routeConfig, addr)
}

func TestRDSRoutesFromXDS(t *testing.T) {
	s := xdstest.Start(t, "127.0.0.1:0")
	env := &fakeEnvoy{}
	p := newParser(t, env)
	fc := filterConfig(t, p, configAny(t, rdsConfig("r", s.Addr)))
	if fc.Err() != nil {
		t.Fatalf("rds config rejected: %v", fc.Err())
	}
	u := &upstreams{env: env}

	// Nothing served yet: no route.
	if addr, reply := u.send(t, fc, "echo"); addr != "" || !bytes.Contains(reply, []byte("no_route")) {
		t.Fatalf("before any route: went to %q, reply %q", addr, reply)
	}

	const echo = "outbound|9090||echo.demo"
	xdstest.Set(t, s.Clusters, echo, xdsCluster(echo))
	xdstest.Set(t, s.Endpoints, echo, xdsEndpoints(echo, 9091))
	xdstest.Set(t, s.Routes, "r", xdsRoutes("r", methodRoute("echo", echo)))
	u.sendUntil(t, fc, "echo", "127.0.0.1:9091")
	if _, reply := u.send(t, fc, "other"); !bytes.Contains(reply, []byte("no_route")) {
		t.Fatalf("unrouted method: reply %q", reply)
	}

	// The endpoint moves: new requests follow it.
	xdstest.Set(t, s.Endpoints, echo, xdsEndpoints(echo, 9092))
	u.sendUntil(t, fc, "echo", "127.0.0.1:9092")

	// Routes that do not translate are NACKed, and the last good ones stay.
	bad := methodRoute("echo", echo)
	bad.Match.Attributes[0].MatchSpecifier = &apiv1alpha1.AttributeMatcher_Regex{Regex: "("}
	xdstest.Set(t, s.Routes, "r", xdsRoutes("r", bad))
	waitFor(t, "NACK", func() bool {
		rs := s.Requests(apiv1alpha1.RouteConfigurationTypeURL)
		return rs[len(rs)-1].GetErrorDetail() != nil
	})
	rs := s.Requests(apiv1alpha1.RouteConfigurationTypeURL)
	if msg := rs[len(rs)-1].GetErrorDetail().GetMessage(); !strings.Contains(msg, "regex") {
		t.Errorf("NACK detail %q does not say what is wrong", msg)
	}
	if addr, reply := u.send(t, fc, "echo"); addr != "127.0.0.1:9092" {
		t.Fatalf("after a NACK: went to %q, reply %q", addr, reply)
	}

	// A route to a cluster the server does not have: that route answers an error, the
	// others work.
	xdstest.Set(t, s.Routes, "r", xdsRoutes("r", methodRoute("echo", echo), methodRoute("ghost", "ghost")))
	deadline := time.Now().Add(10 * time.Second)
	for {
		addr, reply := u.send(t, fc, "ghost")
		if addr != "" {
			t.Fatalf("a missing cluster's request went to %q", addr)
		}
		if !bytes.Contains(reply, []byte("no_route")) {
			typ, _, _, _ := parseFramed(t, reply)
			if typ != thriftException {
				t.Fatalf("missing cluster: reply type %d, want an exception", typ)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the route to the missing cluster never arrived")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if addr, _ := u.send(t, fc, "echo"); addr != "127.0.0.1:9092" {
		t.Fatalf("echo beside a missing cluster went to %q", addr)
	}

	// The control plane goes away: routing goes on with the last routes.
	s.Stop()
	time.Sleep(100 * time.Millisecond)
	if addr, reply := u.send(t, fc, "echo"); addr != "127.0.0.1:9092" {
		t.Fatalf("control plane down: went to %q, reply %q", addr, reply)
	}
	if fc.Panics() != 0 || fc.Engine().Stats().Panics != 0 {
		t.Errorf("panics: adapter %d, engine %d", fc.Panics(), fc.Engine().Stats().Panics)
	}
}

func TestRDSConfigRepeatedSharesOneWatch(t *testing.T) {
	s := xdstest.Start(t, "127.0.0.1:0")
	const echo = "echo"
	xdstest.Set(t, s.Clusters, echo, xdsCluster(echo))
	xdstest.Set(t, s.Endpoints, echo, xdsEndpoints(echo, 9091))
	xdstest.Set(t, s.Routes, "r", xdsRoutes("r", methodRoute("echo", echo)))
	env := &fakeEnvoy{}
	p := newParser(t, env)
	fc1 := filterConfig(t, p, configAny(t, rdsConfig("r", s.Addr)))
	// Envoy hands the same configuration over again on a listener update.
	for range 20 {
		if fc := filterConfig(t, p, configAny(t, rdsConfig("r", s.Addr))); fc != fc1 {
			t.Fatal("an identical rds configuration got a new FilterConfig")
		}
	}
	// Another one naming the same route configuration shares the subscription.
	fc2 := filterConfig(t, p, configAny(t, `{"protocol": "thrift", "stat_prefix": "other",
	  "rds": {"route_config_name": "r", "config_source": "`+s.Addr+`"}}`))
	if fc2 == fc1 {
		t.Fatal("a different configuration shares the FilterConfig")
	}
	u := &upstreams{env: env}
	u.sendUntil(t, fc1, "echo", "127.0.0.1:9091")
	u.sendUntil(t, fc2, "echo", "127.0.0.1:9091")
	for _, r := range s.Requests(apiv1alpha1.RouteConfigurationTypeURL) {
		if names := r.GetResourceNames(); !slices.Equal(names, []string{"r"}) {
			t.Fatalf("route subscription %v, want [r] once", names)
		}
	}
}

func TestRDSDefaultAddressFromEnvironment(t *testing.T) {
	s := xdstest.Start(t, "127.0.0.1:0")
	t.Setenv("MELTEMI_XDS_ADDRESS", s.Addr)
	xdstest.Set(t, s.Clusters, "c", xdsCluster("c"))
	xdstest.Set(t, s.Endpoints, "c", xdsEndpoints("c", 9093))
	xdstest.Set(t, s.Routes, "r", xdsRoutes("r", methodRoute("echo", "c")))
	env := &fakeEnvoy{}
	fc := filterConfig(t, newParser(t, env), configAny(t, `{"protocol": "thrift", "rds": {"route_config_name": "r"}}`))
	(&upstreams{env: env}).sendUntil(t, fc, "echo", "127.0.0.1:9093")
}

// A request that arrives before the first routes waits for them, as connections to an
// Envoy listener warming on RDS do, and is then routed.
func TestRDSRequestBeforeRoutesWaitsForThem(t *testing.T) {
	s := xdstest.Start(t, "127.0.0.1:0")
	env := &fakeEnvoy{}
	p := newParser(t, env)
	p.InitialFetchTimeout = 10 * time.Second
	fc := filterConfig(t, p, configAny(t, rdsConfig("r", s.Addr)))
	down := &fakeConn{}
	f := fc.CreateFilter(down)
	f.OnNewConnection()
	defer f.OnEvent(api.RemoteClose)
	f.OnData(framed(thriftCall, "echo", 1, stringStruct(1, "x")), false)
	time.Sleep(200 * time.Millisecond)
	if got := down.written(); len(got) != 0 {
		t.Fatalf("answered before any route arrived: %q", got)
	}

	const echo = "outbound|9090||echo.demo"
	xdstest.Set(t, s.Clusters, echo, xdsCluster(echo))
	xdstest.Set(t, s.Endpoints, echo, xdsEndpoints(echo, 9091))
	xdstest.Set(t, s.Routes, "r", xdsRoutes("r", methodRoute("echo", echo)))
	waitFor(t, "the held request to be dialed upstream", func() bool {
		env.mu.Lock()
		defer env.mu.Unlock()
		return len(env.dials) > 0 && env.dials[0].addr == "127.0.0.1:9091"
	})
	env.mu.Lock()
	d := env.dials[0]
	env.mu.Unlock()
	up := &fakeConn{}
	d.f.OnPoolReady(up)
	waitFor(t, "the held request upstream", func() bool { return bytes.Contains(up.written(), []byte("echo")) })
	if got := down.written(); len(got) != 0 {
		t.Fatalf("the held request was answered locally: %q", got)
	}
}
