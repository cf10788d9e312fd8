package file

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// Load reads every manifest under dir once. The Inputs hold the objects of the files that
// are valid; the errors name each file that is not (an invalid file contributes nothing) and
// why. A directory that cannot be read at all gives nil Inputs.
func Load(dir string) (*model.Inputs, []error) {
	dec, err := newDecoder()
	if err != nil {
		return nil, []error{err}
	}
	s := newState(dec)
	if _, _, err := s.scan(dir, nil); err != nil {
		return nil, []error{err}
	}
	in, _ := s.assemble()
	var errs []error
	for _, path := range s.paths() {
		if err := s.files[path].problem; err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	return in, errs
}

// fileState is what the source knows of one file.
type fileState struct {
	// data is the content last read (read tells whether the last read succeeded), to tell
	// real changes from events that change nothing.
	data []byte
	read bool
	// cur are the objects of data, when it is valid; parseErr why it is not (or why the
	// file could not be read).
	cur      []object
	parseErr error
	warnings []string
	// curSum is a hash of cur, the objects, so that edits that change no object (comments,
	// formatting, kinds the source skips) change nothing downstream.
	curSum [sha256.Size]byte
	// good are the objects of the last content that was valid and did not clash with an
	// earlier file, goodSum their hash: what the file contributes while its current content
	// is invalid. nil for a file never good.
	good    []object
	goodSum [sha256.Size]byte
	// problem is why the file's current content is not in effect, after assembly: parseErr,
	// or an object also defined in an earlier file.
	problem error
}

// state is the source's view of a directory.
type state struct {
	dec   *decoder
	files map[string]*fileState
}

func newState(dec *decoder) *state {
	return &state{dec: dec, files: map[string]*fileState{}}
}

func (s *state) paths() []string {
	paths := make([]string, 0, len(s.files))
	for p := range s.files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths
}

// isManifest reports whether a file name is one the source reads: YAML, not hidden, not an
// editor's backup or lock file.
func isManifest(name string) bool {
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "#") || strings.HasPrefix(name, "~") {
		return false
	}
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// scan reads the directory tree and updates the state of every file whose content changed,
// appeared or went away; it returns those files (touched) and the directories it walked.
// enterDir, if not nil, is called for each directory before its entries are listed (the
// watcher adds its watch there, so that no file created meanwhile goes unseen).
// Symbolic links to files are followed (ConfigMap volumes are made of them); links to
// directories are not.
func (s *state) scan(root string, enterDir func(string)) (touched, dirs []string, err error) {
	seen := map[string]bool{}
	var unreadable []string // directories whose files are kept as they were
	// WalkDir does not follow a symbolic link even at the root; with a final separator the
	// system does.
	if fi, err := os.Lstat(root); err == nil && fi.Mode()&fs.ModeSymlink != 0 && !strings.HasSuffix(root, string(filepath.Separator)) {
		root += string(filepath.Separator)
	}
	walkErr := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == root {
				return err
			}
			if d != nil && d.IsDir() {
				unreadable = append(unreadable, path+string(filepath.Separator))
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if path != root && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			dirs = append(dirs, path)
			if enterDir != nil {
				enterDir(path)
			}
			return nil
		}
		if !isManifest(d.Name()) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			fi, err := os.Stat(path)
			if err != nil || !fi.Mode().IsRegular() {
				return nil // dangling, or a link to a directory
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		seen[path] = true
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			delete(seen, path) // removed since it was listed
			return nil
		}
		if s.update(path, data, err) {
			touched = append(touched, path)
		}
		return nil
	})
	if walkErr != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", root, walkErr)
	}
	for path := range s.files {
		if seen[path] || slices.ContainsFunc(unreadable, func(dir string) bool { return strings.HasPrefix(path, dir) }) {
			continue
		}
		delete(s.files, path)
		touched = append(touched, path)
	}
	slices.Sort(touched)
	return touched, dirs, nil
}

// update records the content of a file, or the error reading it, and parses it if it
// changed. It reports whether anything changed.
func (s *state) update(path string, data []byte, readErr error) bool {
	st := s.files[path]
	if st == nil {
		st = &fileState{}
		s.files[path] = st
	}
	if readErr != nil {
		st.data, st.read, st.cur, st.parseErr, st.warnings = nil, false, nil, fmt.Errorf("reading: %w", readErr), nil
		return true
	}
	if st.read && bytes.Equal(st.data, data) {
		return false
	}
	st.data, st.read = data, true
	st.cur, st.warnings, st.parseErr = s.dec.decodeFile(data)
	if st.parseErr == nil {
		st.curSum = objectsSum(st.cur)
	}
	return true
}

// objectsSum hashes decoded objects through their JSON form.
func objectsSum(objs []object) [sha256.Size]byte {
	h := sha256.New()
	for _, o := range objs {
		js, err := json.Marshal(o.obj)
		if err != nil { // not expected of objects just decoded from JSON; never equal then
			js = []byte(err.Error())
		}
		fmt.Fprintf(h, "%s\x00%d\x00%s", o.key, len(js), js)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// assemble computes what is in effect, files in path order: the current content of each
// valid file, else its last good content. A valid file that defines an object an earlier
// file already defines is refused as a whole (its last good content stays, minus what
// clashes). It returns the Inputs and a signature of what is in effect, which changes
// exactly when the Inputs do.
func (s *state) assemble() (*model.Inputs, [sha256.Size]byte) {
	in := &model.Inputs{Files: map[string]string{}}
	sig := sha256.New()
	for _, path := range s.paths() {
		st := s.files[path]
		st.problem = st.parseErr
		effective := st.good
		if st.parseErr == nil {
			if clash := firstClash(st.cur, in.Files); clash != "" {
				st.problem = fmt.Errorf("%s is already defined in %s", clash, in.Files[clash])
			} else {
				st.good, st.goodSum = st.cur, st.curSum
				effective = st.good
			}
		}
		if effective == nil {
			continue
		}
		fmt.Fprintf(sig, "%s\x00%x\x00", path, st.goodSum)
		for _, o := range effective {
			if _, taken := in.Files[o.key]; taken {
				fmt.Fprintf(sig, "-%s\x00", o.key)
				continue
			}
			in.Files[o.key] = path
			add(in, o.obj)
		}
	}
	sortInputs(in)
	var sum [sha256.Size]byte
	sig.Sum(sum[:0])
	return in, sum
}

func firstClash(objs []object, taken map[string]string) string {
	for _, o := range objs {
		if _, ok := taken[o.key]; ok {
			return o.key
		}
	}
	return ""
}

func add(in *model.Inputs, obj any) {
	switch o := obj.(type) {
	case *v1alpha1.MetaRouter:
		in.MetaRouters = append(in.MetaRouters, o)
	case *v1alpha1.ApplicationProtocol:
		in.ApplicationProtocols = append(in.ApplicationProtocols, o)
	case *corev1.Service:
		in.Services = append(in.Services, o)
	case *discoveryv1.EndpointSlice:
		in.EndpointSlices = append(in.EndpointSlices, o)
	case *metav1.PartialObjectMetadata:
		in.Pods = append(in.Pods, o)
	case *networkingv1.ServiceEntry:
		in.ServiceEntries = append(in.ServiceEntries, o)
	case *networkingv1.WorkloadEntry:
		in.WorkloadEntries = append(in.WorkloadEntries, o)
	case *networkingv1.DestinationRule:
		in.DestinationRules = append(in.DestinationRules, o)
	default:
		panic(fmt.Sprintf("file source: no place in Inputs for %T", obj))
	}
}

// sortInputs orders every list by namespace and name, so that the Inputs do not depend on
// which file holds what.
func sortInputs(in *model.Inputs) {
	sortByName(in.MetaRouters)
	sortByName(in.ApplicationProtocols)
	sortByName(in.Services)
	sortByName(in.EndpointSlices)
	sortByName(in.Pods)
	sortByName(in.ServiceEntries)
	sortByName(in.WorkloadEntries)
	sortByName(in.DestinationRules)
}

func sortByName[T metav1.Object](objs []T) {
	slices.SortFunc(objs, func(a, b T) int {
		if c := strings.Compare(a.GetNamespace(), b.GetNamespace()); c != 0 {
			return c
		}
		return strings.Compare(a.GetName(), b.GetName())
	})
}
