package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
	"github.com/meltemi-mesh/meltemi/plugin/engine/lb"
)

// Config is one filter configuration: a protocol, routes and clusters. It mirrors the
// plugin's protobuf API (plugin/api) field for field; the adapter translates one into the
// other. Zero values mean the documented defaults.
type Config struct {
	// Codec decodes and encodes the protocol. Required.
	Codec codecs.Codec
	// Routes are tried in order; the first whose matches all hold routes the request.
	Routes []Route
	// Clusters are the destinations routes name.
	Clusters []Cluster
	// IdleTimeout closes a downstream connection that has no request in flight and has sent
	// nothing for this long. 0 disables it.
	IdleTimeout time.Duration
}

// Route sends the requests it matches to a cluster.
type Route struct {
	// Name identifies the route in logs.
	Name string
	// Match lists conditions on request attributes; all must hold. None matches every
	// request.
	Match []AttributeMatch
	// Cluster is the destination, or WeightedClusters splits traffic; exactly one is set.
	Cluster          string
	WeightedClusters []WeightedCluster
	// Timeout bounds the time from receiving a request to its response. When it expires the
	// client gets a timeout error reply and a late response is dropped. 0 disables it.
	Timeout time.Duration
	// RequestHeaders and ResponseHeaders change headers (Dubbo attachments, THeader headers)
	// of requests and responses through the codec.
	RequestHeaders  HeaderMutation
	ResponseHeaders HeaderMutation
	// OnewayMethods names methods that get no response although they arrive as two-way
	// requests: apache/thrift clients send oneway functions as CALL messages, so only the
	// IDL knows. Such requests are forwarded and nothing waits for their answer.
	OnewayMethods []string
	// Mirrors send copies of the route's requests to other clusters (shadowing): each
	// policy copies a share of the requests to an endpoint of its cluster, and the
	// responses of the copies are read and dropped. Copies never change what the client
	// gets: see Mirror.
	Mirrors []Mirror
}

// Mirror copies a share of a route's requests to a cluster. The copy is the request as the
// route forwards it (request header mutations applied) with a request id of its own; it is
// balanced, limited and pooled as any request to that cluster, bounded by the route
// timeout, and oneway when the request is. Its response is read and dropped; its failures
// (no endpoint, over limit, connect failure, timeout, upstream close) are counted
// (Stats.MirrorFailed) and retried nowhere. Requests refused before routing (undecodable,
// no route) are not mirrored.
type Mirror struct {
	// Cluster receives the copies. It must be one of the configuration's clusters.
	Cluster string
	// Percent is the share of the route's requests copied, from 0 (none) to 100 (all),
	// sampled per request. Unlike the API's runtime_fraction_percent, 0 means none.
	Percent float64
}

// WeightedCluster is one destination of a traffic split.
type WeightedCluster struct {
	Cluster string
	Weight  uint32
}

// MatchKind says how an AttributeMatch compares.
type MatchKind uint8

// Match kinds.
const (
	MatchExact   MatchKind = iota // the attribute equals Value
	MatchPrefix                   // the attribute starts with Value
	MatchRegex                    // the whole attribute matches the RE2 expression Value
	MatchPresent                  // the attribute is present, whatever its value
)

func (k MatchKind) String() string {
	switch k {
	case MatchExact:
		return "exact"
	case MatchPrefix:
		return "prefix"
	case MatchRegex:
		return "regex"
	case MatchPresent:
		return "present"
	}
	return fmt.Sprintf("match(%d)", uint8(k))
}

// AttributeMatch is a condition on one request attribute (see package codecs for names).
// An absent attribute matches no kind but is inverted like any other result.
type AttributeMatch struct {
	Name   string
	Kind   MatchKind
	Value  string
	Invert bool
}

// HeaderMutation sets and removes headers; removals apply before sets.
type HeaderMutation struct {
	Set    []Header
	Remove []string
}

// Header is a name and a value.
type Header struct{ Name, Value string }

// Cluster is a set of endpoints with a load-balancing policy and connection limits.
type Cluster struct {
	Name      string
	Endpoints []Endpoint
	// LB is the load-balancing policy; HashAttributes are the attributes whose values the
	// hashing policies hash (a request with none of them is balanced at random).
	LB             lb.Policy
	HashAttributes []string
	// RingSize and MaglevTableSize tune the hashing policies; 0 means lb's defaults.
	RingSize        int
	MaglevTableSize int
	// ConnectionsPerEndpoint is how many multiplexed upstream connections each endpoint
	// gets per protocol mode; 0 means 1. For codecs that cannot multiplex it is how many idle
	// connections each endpoint keeps per protocol mode for reuse.
	ConnectionsPerEndpoint int
	// MaxPendingRequests bounds requests waiting for a connection to be established, and
	// MaxRequests requests in flight (waiting included), over the whole cluster; beyond
	// them requests get an over-limit error. 0 means 1024 each (Envoy's defaults).
	MaxPendingRequests int
	MaxRequests        int
	// ConnectTimeout bounds one connection attempt; 0 means 5s.
	ConnectTimeout time.Duration
	// MaxConnectAttempts is how many endpoints a request may try when connections fail
	// (the first included); 0 means 3.
	MaxConnectAttempts int
}

// Endpoint is one upstream address.
type Endpoint struct {
	// Address is "ip:port": Envoy's ORIGINAL_DST cluster dials it as given.
	Address string
	// Weight is the endpoint's relative share; 0 means 1.
	Weight uint32
	// Labels describe the endpoint (version, zone...). The engine does not use them yet;
	// they are part of the API for subset load balancing.
	Labels map[string]string
}

// Defaults applied to zero Cluster fields.
const (
	DefaultMaxPendingRequests = 1024
	DefaultMaxRequests        = 1024
	DefaultConnectTimeout     = 5 * time.Second
	DefaultConnectAttempts    = 3
	// DefaultDrainTimeout bounds how long an endpoint removed by an update keeps its
	// connections open for the requests in flight on them.
	DefaultDrainTimeout = 30 * time.Second
	// DefaultInitialFetchTimeout is Envoy's initial_fetch_timeout default.
	DefaultInitialFetchTimeout = 15 * time.Second
	// MaxHeldRequests bounds the requests waiting for the first Update, as
	// DefaultMaxPendingRequests bounds those of a cluster waiting for a connection.
	MaxHeldRequests = DefaultMaxPendingRequests
)

// Options are the engine's links to its host.
type Options struct {
	// Dialer opens upstream connections. Required.
	Dialer Dialer
	// Logger receives errors that concern no single reply (panics, mutation failures,
	// decode errors). nil discards.
	Logger *slog.Logger
	// DrainTimeout bounds the draining of an endpoint that an Update removed: its
	// connections close once their requests are answered, or after this long, the requests
	// still in flight then getting "unavailable" errors. 0 means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// WaitForUpdate says the routes come later, from Update (RDS): the engine starts with
	// none, and the requests that arrive before the first Update wait for it (up to
	// MaxHeldRequests of them; more get over_limit errors), for at most
	// InitialFetchTimeout, after which they and the next ones get no_route errors until an
	// Update arrives. Without it, an engine without routes answers no_route at once.
	WaitForUpdate bool
	// InitialFetchTimeout: see WaitForUpdate. 0 means DefaultInitialFetchTimeout.
	InitialFetchTimeout time.Duration
}

// clusterSwap is a cluster configuration compiled by compile, to be stored at commit.
type clusterSwap struct {
	cl         *cluster
	prev, next *clusterCfg // prev is nil for a new cluster
}

// compile builds a route table from routes and clusters without changing anything the
// engine serves: clusters whose name is in old are kept (their new configuration is in the
// returned swaps, to be stored by the caller) and reuse old's endpoints by address.
func (e *Engine) compile(routes []Route, clusters []Cluster, old *table) (*table, []clusterSwap, error) {
	t := &table{clusters: make(map[string]*cluster, len(clusters))}
	swaps := make([]clusterSwap, 0, len(clusters))
	for i := range clusters {
		c := &clusters[i]
		if c.Name == "" {
			return nil, nil, fmt.Errorf("cluster %d: empty name", i)
		}
		if _, dup := t.clusters[c.Name]; dup {
			return nil, nil, fmt.Errorf("cluster %q defined twice", c.Name)
		}
		var sw clusterSwap
		if old != nil {
			if cl, ok := old.clusters[c.Name]; ok {
				sw.cl, sw.prev = cl, cl.cfg.Load()
			}
		}
		if sw.cl == nil {
			sw.cl = &cluster{e: e, name: c.Name}
		}
		next, err := compileCluster(c, sw.cl, sw.prev)
		if err != nil {
			return nil, nil, fmt.Errorf("cluster %q: %w", c.Name, err)
		}
		sw.next = next
		t.clusters[c.Name] = sw.cl
		swaps = append(swaps, sw)
	}
	rs, err := compileRoutes(routes, t.clusters)
	if err != nil {
		return nil, nil, err
	}
	t.routes = rs
	return t, swaps, nil
}

// compileCluster compiles c, the configuration of cl, reusing the endpoints of prev (cl's
// current configuration, nil for a new cluster) whose address c still lists.
func compileCluster(c *Cluster, cl *cluster, prev *clusterCfg) (*clusterCfg, error) {
	if c.ConnectionsPerEndpoint < 0 || c.MaxPendingRequests < 0 || c.MaxRequests < 0 ||
		c.ConnectTimeout < 0 || c.MaxConnectAttempts < 0 {
		return nil, errors.New("negative limit")
	}
	if c.LB.Hashing() && len(c.HashAttributes) == 0 {
		return nil, fmt.Errorf("%v needs hash attributes", c.LB)
	}
	cfg := &clusterCfg{
		hashAttrs:      append([]string(nil), c.HashAttributes...),
		conns:          orDefault(c.ConnectionsPerEndpoint, 1),
		maxPending:     int64(orDefault(c.MaxPendingRequests, DefaultMaxPendingRequests)),
		maxRequests:    int64(orDefault(c.MaxRequests, DefaultMaxRequests)),
		connectTimeout: orDefault(c.ConnectTimeout, DefaultConnectTimeout),
		maxAttempts:    orDefault(c.MaxConnectAttempts, DefaultConnectAttempts),
	}
	var existing map[string]*endpoint
	if prev != nil {
		existing = make(map[string]*endpoint, len(prev.eps))
		for _, ep := range prev.eps {
			existing[ep.addr] = ep
		}
	}
	seen := make(map[string]bool, len(c.Endpoints))
	lbEps := make([]lb.Endpoint, len(c.Endpoints))
	for i, e := range c.Endpoints {
		ap, err := netip.ParseAddrPort(e.Address)
		if err != nil {
			return nil, fmt.Errorf("endpoint %q: want ip:port: %w", e.Address, err)
		}
		addr := ap.String()
		if seen[addr] {
			return nil, fmt.Errorf("endpoint %s listed twice", addr)
		}
		seen[addr] = true
		ep := existing[addr]
		if ep == nil {
			ep = &endpoint{addr: addr, cl: cl}
		}
		cfg.eps = append(cfg.eps, ep)
		lbEps[i] = lb.Endpoint{Key: addr, Weight: e.Weight}
	}
	if len(cfg.eps) > 0 {
		b, err := lb.New(c.LB, lbEps, lb.Options{
			Load:       func(i int) int64 { return cfg.eps[i].active.Load() },
			RingSize:   c.RingSize,
			MaglevSize: c.MaglevTableSize,
		})
		if err != nil {
			return nil, err
		}
		cfg.bal = b
	}
	return cfg, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}
