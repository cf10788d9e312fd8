package istio

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// LeaseName is the Lease the replicas compete for.
const LeaseName = "meltemi-controller"

// DefaultLeaseNamespace is the Lease's namespace when POD_NAMESPACE is unset.
const DefaultLeaseNamespace = "meltemi-system"

// LeaderOptions configure RunLeaderElection. Durations default to client-go's usual
// 15s / 10s / 2s.
type LeaderOptions struct {
	Config    *rest.Config
	Namespace string // default DefaultLeaseNamespace
	Name      string // default LeaseName
	// Identity names this replica in the Lease; default Identity().
	Identity      string
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	Log           *slog.Logger
}

// Identity is "<hostname>_<uuid>": the pod's name, made unique across restarts of the same
// pod.
func Identity() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		h = "meltemi-controller"
	}
	return h + "_" + string(uuid.NewUUID())
}

// Leader runs the writers of one replica: only while it holds the Lease.
type Leader struct {
	opts    LeaderOptions
	leading atomic.Bool
}

// NewLeader returns a Leader; Run campaigns.
func NewLeader(opts LeaderOptions) *Leader {
	if opts.Namespace == "" {
		opts.Namespace = DefaultLeaseNamespace
	}
	if opts.Name == "" {
		opts.Name = LeaseName
	}
	if opts.Identity == "" {
		opts.Identity = Identity()
	}
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = 15 * time.Second
	}
	if opts.RenewDeadline <= 0 {
		opts.RenewDeadline = 10 * time.Second
	}
	if opts.RetryPeriod <= 0 {
		opts.RetryPeriod = 2 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	return &Leader{opts: opts}
}

// Leading reports whether this replica holds the Lease now.
func (l *Leader) Leading() bool { return l.leading.Load() }

// Identity is the replica's identity in the Lease.
func (l *Leader) Identity() string { return l.opts.Identity }

// Run campaigns for the Lease until ctx is done, and returns nil then. Each time it wins,
// lead runs with a context that is canceled the moment the Lease is lost (or ctx is done);
// Run waits for lead to return before campaigning again, so two leads of one replica never
// overlap. On ctx done the Lease is released, so that another replica takes over at once.
func (l *Leader) Run(ctx context.Context, lead func(ctx context.Context)) error {
	cs, err := kubernetes.NewForConfig(l.opts.Config)
	if err != nil {
		return fmt.Errorf("leader election client: %w", err)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: l.opts.Namespace, Name: l.opts.Name},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: l.opts.Identity},
	}
	log := l.opts.Log.With("lease", l.opts.Namespace+"/"+l.opts.Name, "identity", l.opts.Identity)
	for ctx.Err() == nil {
		// lead runs in a goroutine of the elector's; once le.Run returned, a goroutine that
		// has not started yet must not start lead at all.
		var (
			mu      sync.Mutex
			stopped bool
			wg      sync.WaitGroup
		)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   l.opts.LeaseDuration,
			RenewDeadline:   l.opts.RenewDeadline,
			RetryPeriod:     l.opts.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            l.opts.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(lctx context.Context) {
					mu.Lock()
					if stopped || lctx.Err() != nil {
						mu.Unlock()
						return
					}
					wg.Add(1)
					mu.Unlock()
					defer wg.Done()
					l.leading.Store(true)
					defer l.leading.Store(false)
					log.Info("leading: writing EnvoyFilters, VIPs and status")
					lead(lctx)
				},
				OnStoppedLeading: func() {
					// Stop claiming leadership before Run's context cancellation reaches lead.
					l.leading.Store(false)
				},
				OnNewLeader: func(id string) {
					if id != l.opts.Identity {
						log.Info("following", "leader", id)
					}
				},
			},
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		le.Run(ctx)
		mu.Lock()
		stopped = true
		mu.Unlock()
		wg.Wait()
		if ctx.Err() == nil {
			log.Warn("lost the lease; campaigning again")
		}
	}
	return nil
}
