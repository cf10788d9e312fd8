package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	apiv1alpha1 "github.com/meltemi-mesh/meltemi/plugin/api/v1alpha1"
)

// Snapshot is a consistent set of resources for one route configuration. Its maps are
// shared between watchers and with the client: read them, never modify them.
type Snapshot struct {
	// Routes is the route configuration.
	Routes *apiv1alpha1.RouteConfiguration
	// Clusters holds, by name, every cluster the routes reference that the server has.
	Clusters map[string]*clusterv3.Cluster
	// Endpoints holds the ClusterLoadAssignments of the EDS clusters, by assignment name
	// (the cluster's eds_cluster_config.service_name, or else its name). A cluster with an
	// inline load_assignment has its endpoints in the Cluster.
	Endpoints map[string]*endpointv3.ClusterLoadAssignment
	// MissingClusters and MissingEndpoints name, sorted, the referenced clusters and
	// assignments that the server does not have (see the package documentation).
	MissingClusters  []string
	MissingEndpoints []string
}

// Func receives the snapshots of a watched route configuration, on the client's goroutine.
// An error rejects the snapshot: the client NACKs the response that completed it with the
// error, and keeps building later snapshots from the resources it had accepted before.
type Func func(Snapshot) error

// Options configure a Client. The zero value is usable.
type Options struct {
	// Node identifies this process to the control plane. Default: NodeFromEnv().
	Node *corev3.Node
	// Logger receives connection events, NACKs and rejected snapshots. Default: discard.
	Logger *slog.Logger
	// MissingTimeout is how long a requested resource may stay unanswered on a stream
	// before it is taken as missing. Default 5 s.
	MissingTimeout time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential delay between connection
	// attempts; the delay restarts from BackoffMin once a stream lived StableAfter.
	// Defaults 250 ms, 30 s and 30 s.
	BackoffMin, BackoffMax, StableAfter time.Duration
	// DialOptions are added to the gRPC client's (tests).
	DialOptions []grpc.DialOption
}

func (o *Options) defaults() {
	if o.Node == nil {
		o.Node = NodeFromEnv()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MissingTimeout <= 0 {
		o.MissingTimeout = 5 * time.Second
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = 250 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.StableAfter <= 0 {
		o.StableAfter = 30 * time.Second
	}
}

// NodeFromEnv returns the node this process announces: id from MELTEMI_NODE_ID, else
// "<POD_NAME>.<POD_NAMESPACE>" (Kubernetes' downward API, as Istio names sidecars), else
// "meltemi~<hostname>~<pid>"; cluster from MELTEMI_NODE_CLUSTER; user agent "meltemi".
func NodeFromEnv() *corev3.Node {
	id := os.Getenv("MELTEMI_NODE_ID")
	if id == "" {
		if pod, ns := os.Getenv("POD_NAME"), os.Getenv("POD_NAMESPACE"); pod != "" && ns != "" {
			id = pod + "." + ns
		}
	}
	if id == "" {
		host, _ := os.Hostname()
		id = "meltemi~" + host + "~" + strconv.Itoa(os.Getpid())
	}
	return &corev3.Node{
		Id:            id,
		Cluster:       os.Getenv("MELTEMI_NODE_CLUSTER"),
		UserAgentName: "meltemi",
	}
}

// The three resource types, in the order ADS subscribes to them.
const (
	tRoutes = iota
	tClusters
	tEndpoints
	nTypes
)

var typeURLs = [nTypes]string{
	apiv1alpha1.RouteConfigurationTypeURL,
	apiv1alpha1.ClusterTypeURL,
	apiv1alpha1.EndpointTypeURL,
}

const resourceWrapperURL = "type.googleapis.com/envoy.service.discovery.v3.Resource"

// Client is the xDS client of one control-plane address. Its methods are safe for
// concurrent use; the state below "loop-owned" is only touched by its goroutine.
type Client struct {
	addr string
	opts Options
	log  *slog.Logger
	conn *grpc.ClientConn

	ctx       context.Context
	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	watchers map[string][]*watcher // by route configuration name
	wake     chan struct{}         // capacity 1: the watcher set changed

	// loop-owned
	active   map[string][]*watcher
	types    [nTypes]*typeState
	nodeSent bool
	// resyncUntil holds deliveries after a reconnection until every subscribed type has
	// answered on the new stream (or MissingTimeout passed), so that watchers do not see
	// a mix of old and new resources.
	resyncUntil time.Time
}

type watcher struct {
	name      string
	f         Func
	cancelled atomic.Bool
	// loop-owned: the keys of the last delivered and last rejected snapshots
	last, rejected []any
}

// typeState is what the client knows of one resource type.
type typeState struct {
	t         int
	resources map[string]proto.Message // accepted, survives reconnections
	missing   map[string]bool
	version   string // last accepted version_info

	// Per stream.
	nonce       string
	sent        []string // names of the last request, nil before the first
	requests    int
	answered    bool
	requestedAt map[string]time.Time // requested, neither received nor missing
	pendingAck  bool
	nackDetail  error
}

// maxResponseSize bounds one xDS response.
const maxResponseSize = 256 << 20

// New starts the client of the xDS server at addr ("host:port"). The connection is made in
// the background; New fails only on an unusable address.
func New(addr string, opts Options) (*Client, error) {
	opts.defaults()
	dopts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Large endpoint sets make large responses; gRPC's default 4 MiB would break the
		// stream on every push of them (Envoy's own client sets no limit).
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxResponseSize)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{BaseDelay: opts.BackoffMin, Multiplier: 1.6, Jitter: 0.2,
				MaxDelay: opts.BackoffMax},
			MinConnectTimeout: 10 * time.Second,
		}),
	}, opts.DialOptions...)
	conn, err := grpc.NewClient(addr, dopts...)
	if err != nil {
		return nil, fmt.Errorf("xds client for %q: %w", addr, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	c := &Client{
		addr: addr, opts: opts, log: opts.Logger.With("xds_server", addr), conn: conn,
		ctx: ctx, stop: stop, done: make(chan struct{}),
		watchers: map[string][]*watcher{},
		wake:     make(chan struct{}, 1),
		active:   map[string][]*watcher{},
	}
	for t := range c.types {
		c.types[t] = &typeState{t: t, resources: map[string]proto.Message{}, missing: map[string]bool{}}
	}
	go c.run()
	return c, nil
}

// Address returns the control-plane address the client talks to.
func (c *Client) Address() string { return c.addr }

// WatchRoutes subscribes f to the route configuration name: f gets its first complete
// snapshot, then every change of it or of the clusters and endpoints it references. Several
// watchers of one name share one subscription. cancel stops the deliveries; when the last
// watcher of a name cancels, the client unsubscribes from it.
func (c *Client) WatchRoutes(name string, f Func) (cancel func()) {
	w := &watcher{name: name, f: f}
	c.mu.Lock()
	c.watchers[name] = append(c.watchers[name], w)
	c.mu.Unlock()
	c.poke()
	var once sync.Once
	return func() {
		once.Do(func() {
			w.cancelled.Store(true)
			c.mu.Lock()
			ws := slices.DeleteFunc(c.watchers[name], func(x *watcher) bool { return x == w })
			if len(ws) == 0 {
				delete(c.watchers, name)
			} else {
				c.watchers[name] = ws
			}
			c.mu.Unlock()
			c.poke()
		})
	}
}

func (c *Client) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Close stops the client and waits for its goroutines. Watchers get no more snapshots.
func (c *Client) Close() {
	c.closeOnce.Do(func() {
		c.stop()
		<-c.done
		_ = c.conn.Close()
	})
}

// run is the client's goroutine: one stream after the other, with backoff in between.
func (c *Client) run() {
	defer close(c.done)
	attempt := 0
	for c.ctx.Err() == nil {
		start := time.Now()
		err := c.safely("stream", c.runStream)
		if c.ctx.Err() != nil {
			return
		}
		if time.Since(start) >= c.opts.StableAfter {
			attempt = 0
		}
		delay := c.backoff(attempt)
		attempt++
		c.log.Warn("xDS stream ended: the last received configuration stays in effect",
			"err", err, "retry_in", delay)
		if !c.waitDisconnected(delay) {
			return
		}
	}
}

// backoff is the jittered delay before connection attempt n+1: half of the exponential
// delay, plus a random share of the other half.
func (c *Client) backoff(n int) time.Duration {
	d := c.opts.BackoffMin
	for i := 0; i < n && d < c.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, c.opts.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// waitDisconnected waits delay, still serving watcher changes from what the client has.
func (c *Client) waitDisconnected(delay time.Duration) bool {
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return false
		case <-t.C:
			return true
		case <-c.wake:
			c.safely("watchers", func() error { return c.sync(nil) })
		}
	}
}

// safely runs f, turning a panic into an error: a bug must not kill Envoy.
func (c *Client) safely(what string, f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic recovered in the xDS client", "where", what, "panic", r,
				"stack", string(debug.Stack()))
			err = fmt.Errorf("panic in %s: %v", what, r)
		}
	}()
	return f()
}

type adsStream = discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient

// runStream runs one ADS stream until it breaks or the client closes.
func (c *Client) runStream() error {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	c.log.Info("xDS stream open")
	c.nodeSent = false
	c.resyncUntil = time.Now().Add(c.opts.MissingTimeout)
	for _, ts := range c.types {
		ts.nonce, ts.sent, ts.requests, ts.answered = "", nil, 0, false
		ts.requestedAt = map[string]time.Time{}
		ts.pendingAck, ts.nackDetail = false, nil
	}
	defer func() {
		c.resyncUntil = time.Time{}
		for _, ts := range c.types {
			ts.requestedAt = nil // no missing timeouts while disconnected
		}
	}()

	in := make(chan *discoveryv3.DiscoveryResponse)
	errc := make(chan error, 1)
	recvDone := make(chan struct{})
	defer func() { cancel(); <-recvDone }()
	go func() {
		defer close(recvDone)
		defer func() {
			if r := recover(); r != nil {
				c.log.Error("panic recovered in the xDS receiver", "panic", r, "stack", string(debug.Stack()))
				errc <- fmt.Errorf("panic in receiver: %v", r)
			}
		}()
		for {
			r, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case in <- r:
			case <-ctx.Done():
				return
			}
		}
	}()

	if err := c.safely("subscribe", func() error { return c.sync(stream) }); err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		timer.Reset(c.nextDeadline())
		select {
		case <-c.ctx.Done():
			return c.ctx.Err()
		case err := <-errc:
			if errors.Is(err, io.EOF) {
				err = errors.New("server closed the stream")
			}
			return err
		case r := <-in:
			err = c.safely("response", func() error { return c.handle(stream, r) })
		case <-c.wake:
			err = c.safely("watchers", func() error { return c.sync(stream) })
		case <-timer.C:
			err = c.safely("timeouts", func() error { return c.expire(stream) })
		}
		if err != nil {
			return err
		}
	}
}

// nextDeadline returns the time until the first missing-resource timeout.
func (c *Client) nextDeadline() time.Duration {
	next := time.Hour
	// Not c.resyncing(), which clears an expired window: the deliveries it held must still
	// be made, by expire, when the timer fires.
	if !c.resyncUntil.IsZero() {
		next = time.Until(c.resyncUntil)
	}
	for _, ts := range c.types {
		for _, at := range ts.requestedAt {
			next = min(next, time.Until(at.Add(c.opts.MissingTimeout)))
		}
	}
	return max(next, time.Millisecond)
}

// expire takes the resources requested longer than MissingTimeout ago as missing.
func (c *Client) expire(stream adsStream) error {
	now := time.Now()
	changed := false
	for _, ts := range c.types {
		for name, at := range ts.requestedAt {
			if now.Sub(at) >= c.opts.MissingTimeout {
				c.log.Warn("xDS resource not received in time: taken as missing",
					"type", typeURLs[ts.t], "name", name, "timeout", c.opts.MissingTimeout)
				delete(ts.requestedAt, name)
				ts.missing[name] = true
				changed = true
			}
		}
	}
	if !changed && c.resyncUntil.IsZero() {
		return nil
	}
	return c.sync(stream)
}

// resyncing says whether deliveries wait for the first answers of a new stream.
func (c *Client) resyncing() bool {
	if c.resyncUntil.IsZero() {
		return false
	}
	if !time.Now().Before(c.resyncUntil) {
		c.resyncUntil = time.Time{}
		return false
	}
	for _, ts := range c.types {
		if len(ts.sent) > 0 && !ts.answered {
			return true
		}
	}
	return false
}

// handle processes one response: decode, apply, deliver, then ACK or NACK.
func (c *Client) handle(stream adsStream, r *discoveryv3.DiscoveryResponse) error {
	t := slices.Index(typeURLs[:], r.GetTypeUrl())
	if t < 0 {
		c.log.Warn("xDS response of a type never requested: ignored", "type", r.GetTypeUrl())
		return nil
	}
	ts := c.types[t]
	ts.nonce = r.GetNonce()
	ts.pendingAck = true
	first := !ts.answered && ts.requests == 1
	ts.answered = true
	got, err := decode(t, r)
	c.log.Debug("xDS response", "type", r.GetTypeUrl(), "resources", len(r.GetResources()), "version", r.GetVersionInfo())
	if err != nil {
		ts.nackDetail = err
		c.log.Error("xDS response rejected (NACK)", "type", r.GetTypeUrl(), "version", r.GetVersionInfo(), "err", err)
		return c.sync(stream)
	}
	c.refreshActive()
	wanted := c.wanted()
	prevRes, prevMissing := cloneMap(ts.resources), cloneMap(ts.missing)
	for name, m := range got {
		if !wanted[t][name] {
			continue // not (or no longer) subscribed
		}
		if old, ok := ts.resources[name]; !ok || !proto.Equal(old, m) {
			ts.resources[name] = m
		}
		delete(ts.missing, name)
		delete(ts.requestedAt, name)
	}
	if t == tClusters { // full state: absent means removed
		for name := range ts.resources {
			if _, ok := got[name]; !ok {
				delete(ts.resources, name)
				ts.missing[name] = true
			}
		}
	}
	if first { // the answer to the only request of the type on this stream
		for _, name := range ts.sent {
			if _, ok := ts.resources[name]; !ok {
				ts.missing[name] = true
				delete(ts.requestedAt, name)
			}
		}
	}
	if errs := c.deliver(); len(errs) > 0 {
		ts.resources, ts.missing = prevRes, prevMissing
		// What the response brought for the first time and got rejected is missing: the
		// server will not send it again until it changes, and the snapshots that need it
		// must not wait for it.
		for name := range got {
			if _, ok := ts.resources[name]; !ok && wanted[t][name] {
				ts.missing[name] = true
			}
		}
		ts.nackDetail = errors.Join(errs...)
		c.log.Error("xDS response rejected by a watcher (NACK): keeping the last accepted resources",
			"type", r.GetTypeUrl(), "version", r.GetVersionInfo(), "err", ts.nackDetail)
		c.deliver() // watchers that took the rejected state get the accepted one back
	} else {
		ts.version = r.GetVersionInfo()
	}
	return c.sync(stream)
}

// decode unmarshals the resources of a response, by name.
func decode(t int, r *discoveryv3.DiscoveryResponse) (map[string]proto.Message, error) {
	out := make(map[string]proto.Message, len(r.GetResources()))
	for i, a := range r.GetResources() {
		if a.GetTypeUrl() == resourceWrapperURL {
			var w discoveryv3.Resource
			if err := proto.Unmarshal(a.GetValue(), &w); err != nil {
				return nil, fmt.Errorf("resources[%d]: %w", i, err)
			}
			a = w.GetResource()
		}
		if a.GetTypeUrl() != typeURLs[t] {
			return nil, fmt.Errorf("resources[%d]: type %q in a response of type %q", i, a.GetTypeUrl(), typeURLs[t])
		}
		var m proto.Message
		var name string
		switch t {
		case tRoutes:
			rc := &apiv1alpha1.RouteConfiguration{}
			m, name = rc, ""
			if err := proto.Unmarshal(a.GetValue(), rc); err != nil {
				return nil, fmt.Errorf("resources[%d]: %w", i, err)
			}
			name = rc.GetName()
			// Checked on its own here, so that a bad route configuration is NACKed in its
			// own response: were it ACKed while its snapshot is incomplete (clusters not
			// there yet, or a resync after a reconnect), it would stay and every later
			// cluster or endpoint update for it would be NACKed in its place.
			if err := rc.Validate(nil); err != nil {
				return nil, fmt.Errorf("resources[%d]: route configuration %q: %w", i, name, err)
			}
		case tClusters:
			cl := &clusterv3.Cluster{}
			m = cl
			if err := proto.Unmarshal(a.GetValue(), cl); err != nil {
				return nil, fmt.Errorf("resources[%d]: %w", i, err)
			}
			name = cl.GetName()
		default:
			cla := &endpointv3.ClusterLoadAssignment{}
			m = cla
			if err := proto.Unmarshal(a.GetValue(), cla); err != nil {
				return nil, fmt.Errorf("resources[%d]: %w", i, err)
			}
			name = cla.GetClusterName()
		}
		if name == "" {
			return nil, fmt.Errorf("resources[%d]: no name", i)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("resources[%d]: duplicate %q", i, name)
		}
		out[name] = m
	}
	return out, nil
}

// refreshActive copies the watcher set into loop-owned state.
func (c *Client) refreshActive() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.active)
	for name, ws := range c.watchers {
		c.active[name] = slices.Clone(ws)
	}
}

// wanted returns the names to subscribe to, per type, from the watchers and the resources
// received so far.
func (c *Client) wanted() [nTypes]map[string]bool {
	var w [nTypes]map[string]bool
	for t := range w {
		w[t] = map[string]bool{}
	}
	for name := range c.active {
		w[tRoutes][name] = true
		rc, _ := c.types[tRoutes].resources[name].(*apiv1alpha1.RouteConfiguration)
		for _, cn := range ClusterRefs(rc) {
			w[tClusters][cn] = true
		}
	}
	for cn := range w[tClusters] {
		cl, _ := c.types[tClusters].resources[cn].(*clusterv3.Cluster)
		if en, ok := EndpointsName(cl); ok {
			w[tEndpoints][en] = true
		}
	}
	return w
}

// sync brings the subscriptions in line with the watchers: forgets what nobody wants,
// sends the requests whose names changed and the pending ACK/NACKs (when stream is not
// nil), and delivers the snapshots that became complete.
func (c *Client) sync(stream adsStream) error {
	c.refreshActive()
	wanted := c.wanted()
	for t, ts := range c.types {
		for name := range ts.resources {
			if !wanted[t][name] {
				delete(ts.resources, name)
			}
		}
		for name := range ts.missing {
			if !wanted[t][name] {
				delete(ts.missing, name)
			}
		}
		for name := range ts.requestedAt {
			if !wanted[t][name] {
				delete(ts.requestedAt, name)
			}
		}
	}
	for _, err := range c.deliver() {
		// Not attributable to a response (a watcher's first snapshot, a timeout): the
		// watcher keeps what it has.
		c.log.Error("snapshot rejected by a watcher", "err", err)
	}
	if stream == nil {
		return nil
	}
	// Subscriptions may grow with what deliver made no difference to; recompute once more
	// is not needed: wanted depends on resources, which deliver does not change.
	for t, ts := range c.types {
		names := sortedKeys(wanted[t])
		changed := !slices.Equal(names, ts.sent) && (ts.sent != nil || len(names) > 0)
		if !changed && !ts.pendingAck {
			continue
		}
		if err := c.send(stream, ts, names); err != nil {
			return err
		}
	}
	return nil
}

// send sends the request of one type: its names, last accepted version, last nonce, and
// the NACK's error if any.
func (c *Client) send(stream adsStream, ts *typeState, names []string) error {
	req := &discoveryv3.DiscoveryRequest{
		VersionInfo:   ts.version,
		ResourceNames: names,
		TypeUrl:       typeURLs[ts.t],
		ResponseNonce: ts.nonce,
	}
	if !c.nodeSent {
		req.Node = c.opts.Node
	}
	if ts.nackDetail != nil {
		req.ErrorDetail = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: ts.nackDetail.Error()}
	}
	if err := stream.Send(req); err != nil {
		return fmt.Errorf("send %s request: %w", typeURLs[ts.t], err)
	}
	c.nodeSent = true
	now := time.Now()
	if ts.sent == nil {
		ts.sent = []string{}
	}
	for _, n := range names {
		if _, have := ts.resources[n]; !have && !ts.missing[n] && !slices.Contains(ts.sent, n) {
			ts.requestedAt[n] = now
		}
	}
	ts.sent = names
	ts.requests++
	ts.pendingAck, ts.nackDetail = false, nil
	return nil
}

// deliver hands every watcher whose snapshot is complete and changed its snapshot, and
// returns the errors of the watchers that rejected theirs.
func (c *Client) deliver() []error {
	if c.resyncing() {
		return nil
	}
	var errs []error
	for _, name := range sortedKeys(c.active) {
		var snap Snapshot
		var key []any
		built := false
		for _, w := range c.active[name] {
			if w.cancelled.Load() {
				continue
			}
			if !built {
				var ok bool
				if snap, key, ok = c.snapshot(name); !ok {
					break
				}
				built = true
			}
			if keyEqual(w.last, key) || keyEqual(w.rejected, key) {
				continue
			}
			if err := c.call(w, snap); err != nil {
				w.rejected = key
				errs = append(errs, fmt.Errorf("route configuration %q: %w", name, err))
				continue
			}
			w.last, w.rejected = key, nil
		}
	}
	return errs
}

func (c *Client) call(w *watcher, s Snapshot) (err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic recovered in an xDS watcher", "route_config", w.name, "panic", r,
				"stack", string(debug.Stack()))
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return w.f(s)
}

// snapshot builds the snapshot of route configuration name, and a key that changes when
// any of its parts does; ok is false while it is incomplete.
func (c *Client) snapshot(name string) (s Snapshot, key []any, ok bool) {
	rc, _ := c.types[tRoutes].resources[name].(*apiv1alpha1.RouteConfiguration)
	if rc == nil {
		return Snapshot{}, nil, false
	}
	s = Snapshot{Routes: rc, Clusters: map[string]*clusterv3.Cluster{},
		Endpoints: map[string]*endpointv3.ClusterLoadAssignment{}}
	key = []any{rc}
	cls, eps := c.types[tClusters], c.types[tEndpoints]
	for _, cn := range ClusterRefs(rc) {
		cl, _ := cls.resources[cn].(*clusterv3.Cluster)
		switch {
		case cl != nil:
			s.Clusters[cn] = cl
			key = append(key, cl)
		case cls.missing[cn]:
			s.MissingClusters = append(s.MissingClusters, cn)
			key = append(key, "cluster:"+cn)
			continue
		default:
			return Snapshot{}, nil, false
		}
		en, need := EndpointsName(cl)
		if !need {
			continue
		}
		if _, done := s.Endpoints[en]; done {
			continue
		}
		cla, _ := eps.resources[en].(*endpointv3.ClusterLoadAssignment)
		switch {
		case cla != nil:
			s.Endpoints[en] = cla
			key = append(key, cla)
		case eps.missing[en]:
			if !slices.Contains(s.MissingEndpoints, en) {
				s.MissingEndpoints = append(s.MissingEndpoints, en)
				key = append(key, "endpoints:"+en)
			}
		default:
			return Snapshot{}, nil, false
		}
	}
	return s, key, true
}

func keyEqual(a, b []any) bool { return a != nil && slices.Equal(a, b) }

// ClusterRefs returns, sorted and unique, the clusters rc references: route clusters,
// weighted clusters, mirror clusters and the global rate limit service.
func ClusterRefs(rc *apiv1alpha1.RouteConfiguration) []string {
	if rc == nil {
		return nil
	}
	set := map[string]bool{}
	add := func(n string) {
		if n != "" {
			set[n] = true
		}
	}
	for _, r := range rc.GetRoutes() {
		a := r.GetRoute()
		add(a.GetCluster())
		for _, w := range a.GetWeightedClusters().GetClusters() {
			add(w.GetName())
		}
		for _, m := range a.GetRequestMirrorPolicies() {
			add(m.GetCluster())
		}
	}
	add(rc.GetGlobalRateLimit().GetRateLimitService())
	return sortedKeys(set)
}

// EndpointsName returns the name of the ClusterLoadAssignment that cluster cl needs: for an
// EDS cluster its eds service_name, or else its name; none for other clusters.
func EndpointsName(cl *clusterv3.Cluster) (string, bool) {
	if cl == nil || cl.GetType() != clusterv3.Cluster_EDS {
		return "", false
	}
	if sn := cl.GetEdsClusterConfig().GetServiceName(); sn != "" {
		return sn, true
	}
	return cl.GetName(), true
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func cloneMap[V any](m map[string]V) map[string]V {
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
