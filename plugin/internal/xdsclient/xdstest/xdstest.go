// Package xdstest runs a real xDS server for tests: go-control-plane's ADS server, with one
// LinearCache per Meltemi resource type (its Snapshot cache does not take Meltemi's route
// type), on a loopback socket. It records the requests it receives, so that tests can check
// subscriptions, ACKs and NACKs.
package xdstest

import (
	"context"
	"net"
	"sync"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// Server is a running ADS server.
type Server struct {
	// Addr is the server's "host:port".
	Addr string
	// Routes, Clusters and Endpoints hold the resources served, by name.
	Routes, Clusters, Endpoints *cachev3.LinearCache

	grpc     *grpc.Server
	cancel   context.CancelFunc
	served   chan struct{}
	stopOnce sync.Once

	mu   sync.Mutex
	reqs []*discoveryv3.DiscoveryRequest
}

// Start serves on addr ("127.0.0.1:0" for a new port); the test's cleanup stops it.
func Start(t testing.TB, addr string) *Server {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Addr:      lis.Addr().String(),
		Routes:    cachev3.NewLinearCache(apiv1alpha1.RouteConfigurationTypeURL),
		Clusters:  cachev3.NewLinearCache(apiv1alpha1.ClusterTypeURL),
		Endpoints: cachev3.NewLinearCache(apiv1alpha1.EndpointTypeURL),
		served:    make(chan struct{}),
	}
	mux := &cachev3.MuxCache{
		Classify:      func(r *cachev3.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cachev3.DeltaRequest) string { return r.GetTypeUrl() },
		Caches: map[string]cachev3.Cache{
			apiv1alpha1.RouteConfigurationTypeURL: s.Routes,
			apiv1alpha1.ClusterTypeURL:            s.Clusters,
			apiv1alpha1.EndpointTypeURL:           s.Endpoints,
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	cbs := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.reqs = append(s.reqs, r)
			return nil
		},
	}
	s.grpc = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, serverv3.NewServer(ctx, mux, cbs))
	go func() {
		defer close(s.served)
		_ = s.grpc.Serve(lis)
	}()
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the server, closing its streams and listener. It may be called more than once.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.grpc.Stop()
		s.cancel()
		<-s.served
	})
}

// Requests returns the requests of typeURL received so far, in order.
func (s *Server) Requests(typeURL string) []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*discoveryv3.DiscoveryRequest
	for _, r := range s.reqs {
		if r.GetTypeUrl() == typeURL {
			out = append(out, r)
		}
	}
	return out
}

// Set serves r under name in c (one of the server's caches).
func Set(t testing.TB, c *cachev3.LinearCache, name string, r types.Resource) {
	t.Helper()
	if err := c.UpdateResource(name, r); err != nil {
		t.Fatal(err)
	}
}
