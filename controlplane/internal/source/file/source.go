package file

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// Debounce timing: an editor's save or a ConfigMap update is a burst of events within a few
// milliseconds; they are read as one change once the directory has been quiet for
// DefaultQuiet, or at the latest DefaultMaxWait after the first event, so that a directory
// written to without pause still gets applied.
const (
	DefaultQuiet   = 50 * time.Millisecond
	DefaultMaxWait = time.Second
)

// Source watches a directory of manifests. Its fields are read when Run starts.
type Source struct {
	// Dir is the directory; it must exist when Run starts.
	Dir string
	// Log receives the errors of files (one line per file and failure, naming the file
	// and the reason), warnings (skipped kinds) and recoveries. nil means slog.Default().
	Log *slog.Logger
	// Metrics, if not nil, is where the source registers
	//   meltemi_config_file_errors_total{file}  counter: failures to read, parse or validate
	//   meltemi_config_files_invalid            gauge: files whose current content is not in effect
	Metrics prometheus.Registerer
	// Quiet and MaxWait tune the debounce; zero means DefaultQuiet and DefaultMaxWait.
	Quiet, MaxWait time.Duration
}

// metrics are the source's Prometheus collectors.
type metrics struct {
	fileErrors   *prometheus.CounterVec
	filesInvalid prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		fileErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meltemi_config_file_errors_total",
			Help: "Failures to read, parse or validate a file of the configuration directory; the file's last good content stays in effect.",
		}, []string{"file"}),
		filesInvalid: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meltemi_config_files_invalid",
			Help: "Files of the configuration directory whose current content is not in effect.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	// A second Source on the same registry (a restart in tests) shares the collectors.
	if err := reg.Register(m.fileErrors); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
		m.fileErrors = are.ExistingCollector.(*prometheus.CounterVec)
	}
	if err := reg.Register(m.filesInvalid); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, fmt.Errorf("registering metrics: %w", err)
		}
		m.filesInvalid = are.ExistingCollector.(prometheus.Gauge)
	}
	return m, nil
}

// Run reads the directory, calls out with everything in it, then watches it and calls out
// again, with the complete Inputs, after every change that changes what is in effect. It
// returns nil when ctx ends, or an error if the directory cannot be read or watched at the
// start. out is called from Run's goroutine, one call at a time; the Inputs it receives are
// not modified afterwards and must not be modified by it.
func (s *Source) Run(ctx context.Context, out func(*model.Inputs)) error {
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	quiet, maxWait := s.Quiet, s.MaxWait
	if quiet <= 0 {
		quiet = DefaultQuiet
	}
	if maxWait <= 0 {
		maxWait = DefaultMaxWait
	}
	dec, err := newDecoder()
	if err != nil {
		return err
	}
	m, err := newMetrics(s.Metrics)
	if err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", s.Dir, err)
	}
	defer w.Close()

	r := &runner{dir: s.Dir, log: log, metrics: m, watcher: w, state: newState(dec),
		watched: map[string]bool{}, reported: map[string]string{}}
	if err := r.rescan(out, true); err != nil {
		return err
	}

	// The debounce timer runs only while events are pending.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var first time.Time // first event of the pending burst; zero when none is pending
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file watcher closed")
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			timer.Reset(min(quiet, max(0, first.Add(maxWait).Sub(now))))
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("file watcher closed")
			}
			// An overflowed event queue loses events: read everything again.
			log.Warn("config directory watcher", "dir", s.Dir, "err", err)
			if first.IsZero() {
				first = time.Now()
			}
			timer.Reset(quiet)
		case <-timer.C:
			first = time.Time{}
			if err := r.rescan(out, false); err != nil {
				// The directory itself went away or became unreadable: keep what is in
				// effect and look again at the next event.
				log.Error("reading config directory", "dir", s.Dir, "err", err)
			}
		}
	}
}

// runner is the state of one Run.
type runner struct {
	dir     string
	log     *slog.Logger
	metrics *metrics
	watcher *fsnotify.Watcher
	state   *state
	// watched are the directories being watched.
	watched map[string]bool
	// reported is the last error logged for each file, so that an unchanged problem is not
	// logged and counted again when another file changes.
	reported map[string]string
	sig      [sha256.Size]byte
}

// rescan reads the directory again, reports what changed and calls out if what is in effect
// changed (always on the first call).
func (r *runner) rescan(out func(*model.Inputs), first bool) error {
	touched, dirs, err := r.state.scan(r.dir, r.watch)
	if err != nil {
		return err
	}
	// Directories that went away lost their watch with them; forget them.
	current := make(map[string]bool, len(dirs))
	for _, d := range dirs {
		current[d] = true
	}
	for d := range r.watched {
		if !current[d] {
			_ = r.watcher.Remove(d) // usually already gone with the directory
			delete(r.watched, d)
		}
	}

	in, sig := r.state.assemble()
	r.report(touched)
	if first || sig != r.sig {
		r.sig = sig
		r.log.Info("config directory loaded", "dir", r.dir, "files", len(r.state.files), "objects", len(in.Files))
		out(in)
	}
	return nil
}

func (r *runner) watch(dir string) {
	if r.watched[dir] {
		return
	}
	if err := r.watcher.Add(dir); err != nil {
		r.log.Error("watching config directory", "dir", dir, "err", err)
		return
	}
	r.watched[dir] = true
}

// report logs and counts the problems of files: each new problem once, and again whenever
// the file changes and still has one.
func (r *runner) report(touched []string) {
	isTouched := make(map[string]bool, len(touched))
	for _, p := range touched {
		isTouched[p] = true
	}
	invalid := 0
	for _, path := range r.state.paths() {
		st := r.state.files[path]
		if isTouched[path] {
			for _, w := range st.warnings {
				r.log.Warn("config file", "file", path, "warning", w)
			}
		}
		if st.problem == nil {
			if _, had := r.reported[path]; had {
				r.log.Info("config file is valid again", "file", path)
				delete(r.reported, path)
			}
			continue
		}
		invalid++
		msg := st.problem.Error()
		if prev, had := r.reported[path]; had && prev == msg && !isTouched[path] {
			continue
		}
		r.reported[path] = msg
		r.metrics.fileErrors.WithLabelValues(path).Inc()
		if st.good != nil {
			r.log.Error("config file rejected, its last good content stays in effect", "file", path, "err", st.problem)
		} else {
			r.log.Error("config file rejected", "file", path, "err", st.problem)
		}
	}
	for path := range r.reported {
		if _, ok := r.state.files[path]; !ok {
			delete(r.reported, path) // deleted while invalid
		}
	}
	r.metrics.filesInvalid.Set(float64(invalid))
}
