package apiv1alpha1

import (
	"fmt"
	"strconv"
	"strings"
)

// The xDS contract between Meltemi's controller and the plugin. The controller serves three
// resource types over one ADS stream; the plugin subscribes to them by name:
//
//   - RouteConfigurationTypeURL: this package's RouteConfiguration, named by the filter
//     config's rds.route_config_name;
//   - ClusterTypeURL: envoy.config.cluster.v3.Cluster, for every cluster a route names
//     (type EDS, with the load-balancing policy, circuit breakers and outlier detection);
//   - EndpointTypeURL: envoy.config.endpoint.v3.ClusterLoadAssignment, one per cluster, named
//     as the cluster.
//
// Settings a Meltemi cluster has and Envoy's Cluster message cannot carry are in the
// cluster's metadata, filter_metadata[MetadataNamespace] (see ClusterMetadata*).
const (
	RouteConfigurationTypeURL = "type.googleapis.com/meltemi.plugin.v1alpha1.RouteConfiguration"
	ClusterTypeURL            = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointTypeURL           = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

	// MetadataNamespace is the filter_metadata key of Meltemi's settings in Clusters and of
	// endpoint labels in ClusterLoadAssignments.
	MetadataNamespace = "meltemi"
	// ClusterMetadataHashKeys is a list of strings: the request attributes that RING_HASH
	// and MAGLEV hash (Cluster.hash_keys).
	ClusterMetadataHashKeys = "hash_keys"
	// ClusterMetadataConnectionsPerEndpoint is a number (Cluster.connections_per_endpoint).
	ClusterMetadataConnectionsPerEndpoint = "connections_per_endpoint"
	// ClusterMetadataMaxConnectAttempts is a number (Cluster.max_connect_attempts).
	ClusterMetadataMaxConnectAttempts = "max_connect_attempts"
	// EndpointMetadataLabels is a struct of strings: the labels of an LbEndpoint.
	EndpointMetadataLabels = "labels"
)

// Direction says which side of a workload a resource serves.
type Direction string

// Directions, the first field of resource names.
const (
	Outbound Direction = "outbound"
	Inbound  Direction = "inbound"
)

// ResourceName is the one naming scheme of Meltemi's xDS resources, Istio's:
// "<direction>|<port>|<subset>|<host>", for example
// "outbound|20880|v2|echo.demo.svc.cluster.local". Route configurations have an empty
// subset ("outbound|20880||echo.demo.svc.cluster.local", the routes of that service port);
// clusters and their endpoints are named the same way, one per service port and subset, the
// empty subset holding every endpoint.
func ResourceName(dir Direction, port uint32, subset, host string) string {
	return string(dir) + "|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + host
}

// ParseResourceName splits a name made by ResourceName.
func ParseResourceName(name string) (dir Direction, port uint32, subset, host string, err error) {
	parts := strings.SplitN(name, "|", 4)
	if len(parts) != 4 {
		return "", 0, "", "", fmt.Errorf("resource name %q: want direction|port|subset|host", name)
	}
	switch Direction(parts[0]) {
	case Outbound, Inbound:
	default:
		return "", 0, "", "", fmt.Errorf("resource name %q: direction %q: want outbound or inbound", name, parts[0])
	}
	p, err := strconv.ParseUint(parts[1], 10, 16)
	if err != nil || p == 0 {
		return "", 0, "", "", fmt.Errorf("resource name %q: port %q: want 1-65535", name, parts[1])
	}
	if parts[3] == "" {
		return "", 0, "", "", fmt.Errorf("resource name %q: empty host", name)
	}
	return Direction(parts[0]), uint32(p), parts[2], parts[3], nil
}

// Limits of the hashing load balancers the plugin accepts in a Cluster: a larger ring or a
// table size that is not a prime up to MaxMaglevTableSize (Envoy's limit) gets the cluster
// rejected, and with it the update that carries it.
const (
	MaxRingSize        = 1 << 23
	MaxMaglevTableSize = 5000011
)

// ValidMaglevTableSize reports whether n may be a Maglev table size: a prime no larger
// than MaxMaglevTableSize.
func ValidMaglevTableSize(n uint64) bool {
	if n < 2 || n > MaxMaglevTableSize {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
