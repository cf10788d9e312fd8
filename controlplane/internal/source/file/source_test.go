package file

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// watched is a Source running on a temporary directory, with what it reported.
type watched struct {
	dir     string
	updates chan *model.Inputs
	reg     *prometheus.Registry
	logMu   sync.Mutex
	log     bytes.Buffer
}

// syncWriter lets the test read the log while the source writes it.
type syncWriter struct{ w *watched }

func (s syncWriter) Write(p []byte) (int, error) {
	s.w.logMu.Lock()
	defer s.w.logMu.Unlock()
	return s.w.log.Write(p)
}

// startSource runs a Source on dir (filled by the caller) and waits for its first Inputs.
func startSource(t *testing.T, dir string) (*watched, *model.Inputs) {
	t.Helper()
	return startSourceWith(t, &Source{Dir: dir}, prometheus.NewRegistry())
}

// startSourceWith runs src with a test logger and reg, and waits for its first Inputs.
func startSourceWith(t *testing.T, src *Source, reg *prometheus.Registry) (*watched, *model.Inputs) {
	t.Helper()
	w := &watched{dir: src.Dir, updates: make(chan *model.Inputs, 100), reg: reg}
	src.Log, src.Metrics = slog.New(slog.NewTextHandler(syncWriter{w}, nil)), reg
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx, func(in *model.Inputs) { w.updates <- in }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return w, w.next(t)
}

// next waits for the next Inputs.
func (w *watched) next(t *testing.T) *model.Inputs {
	t.Helper()
	select {
	case in := <-w.updates:
		return in
	case <-time.After(5 * time.Second):
		t.Fatal("no update within 5s")
		return nil
	}
}

// none checks that no Inputs come within d.
func (w *watched) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case in := <-w.updates:
		t.Fatalf("unexpected update: %v", in.Files)
	case <-time.After(d):
	}
}

func (w *watched) logText() string {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	return w.log.String()
}

func (w *watched) errorsOf(file string) float64 {
	return testutil.ToFloat64(w.metricVec().WithLabelValues(file))
}

func (w *watched) metricVec() *prometheus.CounterVec {
	// The registry hands back the source's own collectors when asked to register equal ones.
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "meltemi_config_file_errors_total",
		Help: "Failures to read, parse or validate a file of the configuration directory; the file's last good content stays in effect."}, []string{"file"})
	if err := w.reg.Register(c); err != nil {
		return err.(prometheus.AlreadyRegisteredError).ExistingCollector.(*prometheus.CounterVec)
	}
	panic("the source did not register meltemi_config_file_errors_total")
}

func (w *watched) invalid(t *testing.T) float64 {
	t.Helper()
	mfs, err := w.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "meltemi_config_files_invalid" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no meltemi_config_files_invalid")
	return 0
}

// subsets returns "host:subset,subset" for each DestinationRule in effect.
func subsets(in *model.Inputs) string {
	var out []string
	for _, dr := range in.DestinationRules {
		var names []string
		for _, s := range dr.Spec.GetSubsets() {
			names = append(names, s.GetName())
		}
		out = append(out, dr.Name+":"+strings.Join(names, ","))
	}
	return strings.Join(out, " ")
}

// rule is a DestinationRule with the given name and subsets.
func rule(name string, subsets ...string) string {
	s := fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: %s, namespace: demo}\nspec:\n  host: %s.demo.svc.cluster.local\n  subsets:\n", name, name)
	for _, sub := range subsets {
		s += fmt.Sprintf("  - {name: %s, labels: {version: %s}}\n", sub, sub)
	}
	return s
}

const broken = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a, namespace: demo}\nspec: {host: a, subsetz: []}\n"

// A broken edit keeps the file's last good content in effect, reported in the log and the
// metrics; fixing it applies the fix; deleting the file removes its objects.
func TestWatchLastGoodRecoveryAndDelete(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.yaml", rule("a", "v1"))
	w, in := startSource(t, dir)
	if got := subsets(in); got != "a:v1" {
		t.Fatalf("initial %q", got)
	}
	if got := w.invalid(t); got != 0 {
		t.Errorf("files invalid %v, want 0", got)
	}

	writeFile(t, dir, "a.yaml", broken)
	// Nothing changes in effect, so nothing is pushed; the failure is reported.
	w.none(t, 300*time.Millisecond)
	if got := w.errorsOf(a); got != 1 {
		t.Errorf("errors of %s: %v, want 1", a, got)
	}
	if got := w.invalid(t); got != 1 {
		t.Errorf("files invalid %v, want 1", got)
	}
	if log := w.logText(); !strings.Contains(log, "level=ERROR") || !strings.Contains(log, a) || !strings.Contains(log, `unknown field \"spec.subsetz\"`) {
		t.Errorf("log does not name the file and the reason:\n%s", log)
	}

	// A second file that was never good contributes nothing; the first one's content stays.
	b := writeFile(t, dir, "b.yaml", strings.Replace(broken, "name: a", "name: b", 1))
	w.none(t, 300*time.Millisecond)
	if got, gotB := w.errorsOf(a), w.errorsOf(b); got != 1 || gotB != 1 {
		t.Errorf("errors of a %v (want 1: unchanged, not counted again), of b %v (want 1)", got, gotB)
	}
	if got := w.invalid(t); got != 2 {
		t.Errorf("files invalid %v, want 2", got)
	}

	writeFile(t, dir, "a.yaml", rule("a", "v1", "v2"))
	if got := subsets(w.next(t)); got != "a:v1,v2" {
		t.Errorf("after the fix %q", got)
	}
	if got := w.invalid(t); got != 1 {
		t.Errorf("files invalid %v, want 1 (b)", got)
	}
	if !strings.Contains(w.logText(), "config file is valid again") {
		t.Error("no log of the recovery")
	}

	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	if in := w.next(t); len(in.DestinationRules) != 0 || len(in.Files) != 0 {
		t.Errorf("after delete: %v", in.Files)
	}
	if err := os.Remove(b); err != nil {
		t.Fatal(err)
	}
	// b contributed nothing: deleting it changes nothing in effect, but it is no longer invalid.
	w.none(t, 300*time.Millisecond)
	if got := w.invalid(t); got != 0 {
		t.Errorf("files invalid %v, want 0", got)
	}
}

// Editors save by writing a temporary file and renaming it over the original.
func TestWatchRenameOver(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", rule("a", "v1"))
	w, _ := startSource(t, dir)
	tmp := writeFile(t, dir, ".a.yaml.swp", rule("a", "v2"))
	if err := os.Rename(tmp, filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	if got := subsets(w.next(t)); got != "a:v2" {
		t.Errorf("after rename-over %q", got)
	}
	// The same with a backup kept (vim's "a.yaml~", not a manifest).
	if err := os.Rename(filepath.Join(dir, "a.yaml"), filepath.Join(dir, "a.yaml~")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "a.yaml", rule("a", "v3"))
	if got := subsets(w.next(t)); got != "a:v3" {
		t.Errorf("after save with backup %q", got)
	}
	w.none(t, 200*time.Millisecond)
}

// A ConfigMap volume: the files are symlinks through "..data", itself a symlink to a
// timestamped directory; an update writes a new directory and swaps "..data" atomically.
func TestWatchConfigMapSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "..2026_01_01_00_00_00.1/rules.yaml", rule("a", "v1"))
	mustSymlink(t, "..2026_01_01_00_00_00.1", filepath.Join(dir, "..data"))
	mustSymlink(t, "..data/rules.yaml", filepath.Join(dir, "rules.yaml"))
	w, in := startSource(t, dir)
	if got := subsets(in); got != "a:v1" {
		t.Fatalf("initial %q (the timestamped directory must not be read twice)", got)
	}
	if got := in.Files["DestinationRule/demo/a"]; got != filepath.Join(dir, "rules.yaml") {
		t.Errorf("file %q, want the symlink's path", got)
	}

	writeFile(t, dir, "..2026_01_01_00_01_00.2/rules.yaml", rule("a", "v1", "v2"))
	mustSymlink(t, "..2026_01_01_00_01_00.2", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "..2026_01_01_00_00_00.1")); err != nil {
		t.Fatal(err)
	}
	if got := subsets(w.next(t)); got != "a:v1,v2" {
		t.Errorf("after the swap %q", got)
	}
	w.none(t, 200*time.Millisecond)
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// New subdirectories, however deep, are watched; removed ones take their files with them.
func TestWatchNewSubdirectory(t *testing.T) {
	dir := t.TempDir()
	w, in := startSource(t, dir)
	if len(in.Files) != 0 {
		t.Fatalf("initial %v", in.Files)
	}
	// Created together with its file: the file is found by the scan the directory's
	// creation triggers.
	writeFile(t, dir, "team/one/a.yaml", rule("a", "v1"))
	if got := subsets(w.next(t)); got != "a:v1" {
		t.Fatalf("after the new directory %q", got)
	}
	// Later writes inside it are seen: it is watched.
	writeFile(t, dir, "team/one/b.yaml", rule("b", "v1"))
	if got := subsets(w.next(t)); got != "a:v1 b:v1" {
		t.Errorf("after a file in the new directory %q", got)
	}
	if err := os.RemoveAll(filepath.Join(dir, "team")); err != nil {
		t.Fatal(err)
	}
	if in := w.next(t); len(in.Files) != 0 {
		t.Errorf("after removing the directory %v", in.Files)
	}
}

// A burst of writes is one update (two if the machine stalls mid-burst for longer than the
// quiet period), not one per file.
func TestWatchDebounce(t *testing.T) {
	dir := t.TempDir()
	w, _ := startSource(t, dir)
	for i := range 20 {
		writeFile(t, dir, fmt.Sprintf("r%02d.yaml", i), rule(fmt.Sprintf("r%02d", i), "v1"))
	}
	updates := 1
	for in := w.next(t); len(in.DestinationRules) < 20; in = w.next(t) {
		updates++
	}
	if updates > 2 {
		t.Errorf("%d updates for a burst of 20 writes", updates)
	}
	w.none(t, 300*time.Millisecond)
}

// Edits that change no object push nothing: rewriting a file as it was, comments and
// formatting, kinds the source skips, files that are not manifests.
func TestWatchIgnoresNonChanges(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", rule("a", "v1"))
	w, _ := startSource(t, dir)
	writeFile(t, dir, "a.yaml", rule("a", "v1"))
	writeFile(t, dir, "a.yaml", "# a comment\n"+strings.ReplaceAll(rule("a", "v1"), "  ", "    ")+"---\n"+virtualService)
	writeFile(t, dir, "notes.txt", "hello")
	writeFile(t, dir, ".hidden.yaml", broken)
	w.none(t, 300*time.Millisecond)
	if got := w.invalid(t); got != 0 {
		t.Errorf("files invalid %v, want 0", got)
	}
	if log := w.logText(); !strings.Contains(log, "VirtualService skipped") {
		t.Errorf("no warning for the skipped kind:\n%s", log)
	}
}

// A directory written to without pause is still applied, MaxWait after the first write.
func TestWatchMaxWait(t *testing.T) {
	dir := t.TempDir()
	w, _ := startSourceWith(t, &Source{Dir: dir, Quiet: time.Hour, MaxWait: 200 * time.Millisecond}, prometheus.NewRegistry())
	start := time.Now()
	writeFile(t, dir, "a.yaml", rule("a", "v1"))
	for {
		select {
		case in := <-w.updates:
			if got := subsets(in); got != "a:v1" {
				t.Errorf("update %q", got)
			}
			if d := time.Since(start); d < 200*time.Millisecond {
				t.Errorf("update after %v, before MaxWait", d)
			}
			return
		case <-time.After(20 * time.Millisecond):
			if time.Since(start) > 5*time.Second {
				t.Fatal("no update while the directory kept changing")
			}
			writeFile(t, dir, "other.txt", time.Now().String()) // keeps the burst going
		}
	}
}

// A Source restarted on the same registry shares the collectors of the first.
func TestRunTwiceOnOneRegistry(t *testing.T) {
	dir := t.TempDir()
	bad := writeFile(t, dir, "bad.yaml", broken)
	reg := prometheus.NewRegistry()
	for i := range 2 {
		src := &Source{Dir: dir, Log: slog.New(slog.DiscardHandler), Metrics: reg}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- src.Run(ctx, func(*model.Inputs) { cancel() }) }()
		if err := <-done; err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		w := &watched{reg: reg}
		if got := w.errorsOf(bad); got != float64(i+1) {
			t.Errorf("run %d: errors of %s %v, want %d", i, bad, got, i+1)
		}
	}
}

// The directory may be a symbolic link (a mounted volume's path often is).
func TestSymlinkedDirectory(t *testing.T) {
	real := t.TempDir()
	writeFile(t, real, "a.yaml", rule("a", "v1"))
	link := filepath.Join(t.TempDir(), "config")
	mustSymlink(t, real, link)
	in := mustLoad(t, link)
	if got := in.Files["DestinationRule/demo/a"]; got != filepath.Join(link, "a.yaml") {
		t.Errorf("file %q, want it under the link", got)
	}
	w, _ := startSource(t, link)
	writeFile(t, real, "a.yaml", rule("a", "v2"))
	if got := subsets(w.next(t)); got != "a:v2" {
		t.Errorf("after an edit %q", got)
	}
}

// A duplicate created by editing the earlier file (in path order) is the later file's
// error: the earlier file's new content wins, the later file keeps its other objects out.
func TestWatchDuplicate(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.yaml", rule("a", "v1"))
	b := writeFile(t, dir, "b.yaml", rule("b", "v1"))
	w, _ := startSource(t, dir)
	writeFile(t, dir, "a.yaml", rule("a", "v1")+"---\n"+rule("b", "v2"))
	// b.yaml's current content now clashes: its last good content stays, minus b, which
	// a.yaml now defines.
	if got := subsets(w.next(t)); got != "a:v1 b:v2" {
		t.Errorf("in effect %q", got)
	}
	if got := w.errorsOf(b); got != 1 {
		t.Errorf("errors of b %v, want 1", got)
	}
	if !strings.Contains(w.logText(), "DestinationRule/demo/b is already defined in "+filepath.Join(dir, "a.yaml")) {
		t.Errorf("log:\n%s", w.logText())
	}
	writeFile(t, dir, "a.yaml", rule("a", "v1"))
	if got := subsets(w.next(t)); got != "a:v1 b:v1" {
		t.Errorf("after the clash is gone %q", got)
	}
	if got := w.invalid(t); got != 0 {
		t.Errorf("files invalid %v, want 0", got)
	}
}

func TestRunMissingDirectory(t *testing.T) {
	src := &Source{Dir: filepath.Join(t.TempDir(), "nowhere")}
	err := src.Run(context.Background(), func(*model.Inputs) { t.Error("out called") })
	if err == nil || !os.IsNotExist(err) && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Run: %v", err)
	}
}
