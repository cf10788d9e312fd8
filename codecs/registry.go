package codecs

import (
	"fmt"
	"sort"
	"sync"
)

// Registry maps protocol names to factories. The plugin builds one at start-up with the
// built-in codecs and any third-party codecs compiled in; lookups are then concurrent.
type Registry struct {
	mu        sync.RWMutex
	factories map[string]Factory
}

// NewRegistry returns a registry holding the given factories. It returns an error if two
// share a name.
func NewRegistry(factories ...Factory) (*Registry, error) {
	r := &Registry{factories: make(map[string]Factory, len(factories))}
	for _, f := range factories {
		if err := r.Register(f); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a factory. Names are unique: registering a second factory under a name
// already present is an error rather than a silent replacement.
func (r *Registry) Register(f Factory) error {
	name := f.Name()
	if name == "" {
		return fmt.Errorf("codecs: register %T: empty protocol name", f)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.factories == nil {
		r.factories = make(map[string]Factory)
	}
	if _, dup := r.factories[name]; dup {
		return fmt.Errorf("codecs: protocol %q registered twice", name)
	}
	r.factories[name] = f
	return nil
}

// New returns the codec registered under name, configured with opts.
func (r *Registry) New(name string, opts Options) (Codec, error) {
	r.mu.RLock()
	f, ok := r.factories[name]
	r.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("codecs: unknown protocol %q (known: %v)", name, r.Names())
	}
	c, err := f.New(opts)
	if err != nil {
		return nil, fmt.Errorf("codecs: configure %s: %w", name, err)
	}
	return c, nil
}

// Names lists the registered protocol names, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.factories))
	for n := range r.factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
