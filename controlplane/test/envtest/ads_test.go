//go:build envtest

package envtest_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// adsClient is a real state-of-the-world ADS client, as the plugin is: it subscribes to
// resources by name, keeps the latest version of each, and ACKs every response, or NACKs it
// when nack says so.
type adsClient struct {
	stream grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	conn   *grpc.ClientConn

	sendMu sync.Mutex // stream.Send is not safe for concurrent use

	mu sync.Mutex
	// per type URL: subscribed names, last ACKed version and nonce, resources by name, and
	// the version of the response each came in
	subs      map[string][]string
	acked     map[string]string
	nonce     map[string]string
	resources map[string]map[string]*anypb.Any
	versions  map[string]map[string]string
	changed   chan struct{} // closed and replaced on every response
	nack      func(typeURL, name string, res *anypb.Any) string
	err       error
}

func dialADS(t *testing.T, ctx context.Context, addr string) *adsClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial xDS %s: %v", addr, err)
	}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatalf("ADS stream: %v", err)
	}
	c := &adsClient{
		stream: stream, conn: conn,
		subs: map[string][]string{}, acked: map[string]string{}, nonce: map[string]string{},
		resources: map[string]map[string]*anypb.Any{}, versions: map[string]map[string]string{},
		changed: make(chan struct{}),
	}
	go c.recv()
	t.Cleanup(func() { _ = conn.Close() })
	return c
}

func (c *adsClient) send(req *discoveryv3.DiscoveryRequest) error {
	req.Node = &corev3.Node{Id: "envtest", Cluster: "envtest"}
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	return c.stream.Send(req)
}

// subscribe adds names to the subscription of typeURL.
func (c *adsClient) subscribe(t *testing.T, typeURL string, names ...string) {
	t.Helper()
	c.mu.Lock()
	c.subs[typeURL] = append(c.subs[typeURL], names...)
	req := &discoveryv3.DiscoveryRequest{
		TypeUrl: typeURL, ResourceNames: append([]string(nil), c.subs[typeURL]...),
		VersionInfo: c.acked[typeURL], ResponseNonce: c.nonce[typeURL],
	}
	c.mu.Unlock()
	if err := c.send(req); err != nil {
		t.Fatalf("subscribe to %v: %v", names, err)
	}
}

// setNack makes the client reject responses holding a resource for which f returns an
// error message; nil accepts everything.
func (c *adsClient) setNack(f func(typeURL, name string, res *anypb.Any) string) {
	c.mu.Lock()
	c.nack = f
	c.mu.Unlock()
}

func (c *adsClient) recv() {
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			c.mu.Lock()
			c.err = err
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
			return
		}
		typeURL := resp.GetTypeUrl()
		c.mu.Lock()
		var nackMsg string
		if c.nack != nil {
			for _, r := range resp.GetResources() {
				if msg := c.nack(typeURL, resourceName(r), r); msg != "" {
					nackMsg = msg
					break
				}
			}
		}
		req := &discoveryv3.DiscoveryRequest{
			TypeUrl: typeURL, ResourceNames: append([]string(nil), c.subs[typeURL]...),
			ResponseNonce: resp.GetNonce(),
		}
		c.nonce[typeURL] = resp.GetNonce()
		if nackMsg != "" {
			req.VersionInfo = c.acked[typeURL]
			req.ErrorDetail = &statuspb.Status{Code: 3, Message: nackMsg}
		} else {
			c.acked[typeURL] = resp.GetVersionInfo()
			req.VersionInfo = resp.GetVersionInfo()
			if c.resources[typeURL] == nil {
				c.resources[typeURL] = map[string]*anypb.Any{}
				c.versions[typeURL] = map[string]string{}
			}
			for _, r := range resp.GetResources() {
				name := resourceName(r)
				c.resources[typeURL][name] = r
				c.versions[typeURL][name] = resp.GetVersionInfo()
			}
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
		if err := c.send(req); err != nil {
			c.mu.Lock()
			c.err = err
			c.mu.Unlock()
			return
		}
	}
}

// resourceName decodes the name of a served resource.
func resourceName(a *anypb.Any) string {
	m, err := a.UnmarshalNew()
	if err != nil {
		return ""
	}
	switch r := m.(type) {
	case *apiv1alpha1.RouteConfiguration:
		return r.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case interface{ GetName() string }:
		return r.GetName()
	}
	return ""
}

// waitFor waits until the resource typeURL/name satisfies ok (given the resource and the
// version of the response it came in), and returns them.
func waitFor[M proto.Message](t *testing.T, c *adsClient, typeURL, name string, timeout time.Duration, ok func(M, string) bool) (M, string) {
	t.Helper()
	deadline := time.After(timeout)
	var last M
	for {
		c.mu.Lock()
		a := c.resources[typeURL][name]
		version := c.versions[typeURL][name]
		ch := c.changed
		err := c.err
		c.mu.Unlock()
		if a != nil {
			m, uerr := a.UnmarshalNew()
			if uerr != nil {
				t.Fatalf("decode %s %s: %v", typeURL, name, uerr)
			}
			typed, isM := m.(M)
			if !isM {
				t.Fatalf("%s %s is a %T", typeURL, name, m)
			}
			last = typed
			if ok(typed, version) {
				return typed, version
			}
		}
		if err != nil {
			t.Fatalf("ADS stream failed while waiting for %s: %v", name, err)
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s %s: condition not met within %v; last seen: %v", shortType(typeURL), name, timeout, describe(last))
		}
	}
}

func describe(m proto.Message) string {
	if m == nil {
		return "nothing"
	}
	return fmt.Sprint(m)
}

func shortType(t string) string {
	for i := len(t) - 1; i >= 0; i-- {
		if t[i] == '.' {
			return t[i+1:]
		}
	}
	return t
}
