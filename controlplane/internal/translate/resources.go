// Package translate turns the controller's model into the xDS resources the plugin reads:
// route configurations (the plugin's API), clusters and their endpoints (Envoy's). It is a
// pure, deterministic function: the same model always gives the same resources, byte for
// byte, so that unchanged resources keep their versions.
//
// For each port of each service it emits (names from apiv1alpha1.ResourceName):
//   - a route configuration "outbound|port||host": the routes of the first MetaRouter whose
//     first host is the service, in order, or a single route named "default" to the
//     port's cluster when there is none;
//   - a cluster and its ClusterLoadAssignment for all endpoints ("outbound|port||host")
//     and one per DestinationRule subset ("outbound|port|subset|host"), with the
//     DestinationRule's traffic policy, a subset's policy replacing the service's per
//     top-level field (loadBalancer, connectionPool, outlierDetection) as in Istio.
//
// Every route configuration it emits is valid against the clusters it emits. Destinations
// that cannot be resolved (unknown host, port or subset) are left out and reported
// (ResolvedRefs False); a router that still does not give a valid configuration is replaced
// by the default route and reported (Accepted False, Invalid). Nothing is silently dropped:
// each problem names the object to blame in its status.
package translate

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// Resources are the xDS resources of one model, keyed by resource name (see
// apiv1alpha1.ResourceName for the naming scheme).
type Resources struct {
	Routes    map[string]*apiv1alpha1.RouteConfiguration
	Clusters  map[string]*clusterv3.Cluster
	Endpoints map[string]*endpointv3.ClusterLoadAssignment

	// Origins lists, for each resource (keyed by OriginKey), the objects that produced it:
	// a NACK of the resource is reported in their status.
	Origins map[string][]model.ObjectRef

	// Problems are the model's problems plus those translation found.
	Problems []model.Problem
}

// OriginKey is the key of Resources.Origins for a resource of type typeURL named name.
func OriginKey(typeURL, name string) string { return typeURL + "/" + name }
