package translate

import (
	"errors"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/plugin/engine"
)

// FromXDS returns the engine routes and clusters of a route configuration received over
// RDS, with the clusters (CDS) and endpoints (EDS) it references.
func FromXDS(rc *apiv1alpha1.RouteConfiguration, clusters map[string]*clusterv3.Cluster,
	endpoints map[string]*endpointv3.ClusterLoadAssignment, routeTimeout time.Duration) ([]engine.Route, []engine.Cluster, error) {
	return nil, nil, errors.New("translate: FromXDS: not implemented yet")
}
