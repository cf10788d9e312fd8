package engine

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/meltemi-mesh/meltemi/codecs"
)

// route is a compiled Route.
type route struct {
	name     string
	matchers []matcher
	clusters []*cluster
	cum      []uint64 // cumulative weights of clusters, for a split
	timeout  time.Duration
	reqMut   HeaderMutation
	respMut  HeaderMutation
	oneway   map[string]struct{}
	mirrors  []mirror // those with a share above 0
}

// mirror is a compiled Mirror: a copy of a request goes to cl when a random uint64 is below
// threshold, or always when all is set (100 %).
type mirror struct {
	cl        *cluster
	all       bool
	threshold uint64
}

// sample draws whether this request is copied. It takes no lock and allocates nothing.
func (m *mirror) sample(e *Engine) bool {
	return m.all || e.random() < m.threshold
}

type matcher struct {
	name   string
	kind   MatchKind
	value  string
	re     *regexp.Regexp
	invert bool
}

func compileRoutes(cfg []Route, clusters map[string]*cluster) ([]*route, error) {
	out := make([]*route, 0, len(cfg))
	for i := range cfg {
		r, err := compileRoute(&cfg[i], clusters)
		if err != nil {
			name := cfg[i].Name
			if name == "" {
				name = fmt.Sprint(i)
			}
			return nil, fmt.Errorf("route %s: %w", name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func compileRoute(c *Route, clusters map[string]*cluster) (*route, error) {
	if c.Timeout < 0 {
		return nil, errors.New("negative timeout")
	}
	r := &route{name: c.Name, timeout: c.Timeout, reqMut: c.RequestHeaders, respMut: c.ResponseHeaders}
	for _, m := range c.Match {
		if m.Name == "" {
			return nil, errors.New("match on an empty attribute name")
		}
		cm := matcher{name: m.Name, kind: m.Kind, value: m.Value, invert: m.Invert}
		switch m.Kind {
		case MatchExact, MatchPrefix, MatchPresent:
		case MatchRegex:
			// Anchored: the whole value must match, as Envoy's safe_regex does.
			re, err := regexp.Compile(`^(?:` + m.Value + `)$`)
			if err != nil {
				return nil, fmt.Errorf("match %s: %w", m.Name, err)
			}
			cm.re = re
		default:
			return nil, fmt.Errorf("match %s: unknown kind %v", m.Name, m.Kind)
		}
		r.matchers = append(r.matchers, cm)
	}
	switch {
	case c.Cluster != "" && len(c.WeightedClusters) > 0:
		return nil, errors.New("both cluster and weighted clusters")
	case c.Cluster != "":
		cl, ok := clusters[c.Cluster]
		if !ok {
			return nil, fmt.Errorf("unknown cluster %q", c.Cluster)
		}
		r.clusters = []*cluster{cl}
	case len(c.WeightedClusters) > 0:
		var total uint64
		for _, w := range c.WeightedClusters {
			cl, ok := clusters[w.Cluster]
			if !ok {
				return nil, fmt.Errorf("unknown cluster %q", w.Cluster)
			}
			if w.Weight == 0 {
				continue // a zero weight takes no traffic
			}
			total += uint64(w.Weight)
			r.clusters = append(r.clusters, cl)
			r.cum = append(r.cum, total)
		}
		if total == 0 {
			return nil, errors.New("weighted clusters sum to zero")
		}
	default:
		return nil, errors.New("no cluster")
	}
	for _, h := range append(append([]Header(nil), c.RequestHeaders.Set...), c.ResponseHeaders.Set...) {
		if h.Name == "" {
			return nil, errors.New("header mutation with an empty name")
		}
	}
	for i, m := range c.Mirrors {
		cl, ok := clusters[m.Cluster]
		if !ok {
			return nil, fmt.Errorf("mirror %d: unknown cluster %q", i, m.Cluster)
		}
		// NaN fails both comparisons.
		if !(m.Percent >= 0 && m.Percent <= 100) {
			return nil, fmt.Errorf("mirror %d (cluster %q): percent %v: want 0 to 100", i, m.Cluster, m.Percent)
		}
		if m.Percent == 0 {
			continue
		}
		cm := mirror{cl: cl}
		if f := math.Ldexp(m.Percent/100, 64); f >= math.Ldexp(1, 64) {
			cm.all = true
		} else {
			cm.threshold = uint64(f)
		}
		r.mirrors = append(r.mirrors, cm)
	}
	if len(c.OnewayMethods) > 0 {
		r.oneway = make(map[string]struct{}, len(c.OnewayMethods))
		for _, m := range c.OnewayMethods {
			r.oneway[m] = struct{}{}
		}
	}
	return r, nil
}

// matches reports whether every condition of the route holds for f.
func (r *route) matches(f codecs.Frame) bool {
	for i := range r.matchers {
		if !r.matchers[i].match(f) {
			return false
		}
	}
	return true
}

func (m *matcher) match(f codecs.Frame) bool {
	v, ok := f.Attribute(m.name)
	var hit bool
	if ok {
		switch m.kind {
		case MatchExact:
			hit = v == m.value
		case MatchPrefix:
			hit = strings.HasPrefix(v, m.value)
		case MatchRegex:
			hit = m.re.MatchString(v)
		case MatchPresent:
			hit = true
		}
	}
	return hit != m.invert
}

// pickCluster returns the route's destination, choosing by weight for a split.
func (r *route) pickCluster() *cluster {
	if len(r.clusters) == 1 {
		return r.clusters[0]
	}
	x := rand.Uint64N(r.cum[len(r.cum)-1])
	return r.clusters[sort.Search(len(r.cum), func(i int) bool { return r.cum[i] > x })]
}

// isOneway reports whether f, a two-way request, calls a method configured as oneway.
func (r *route) isOneway(f codecs.Frame) bool {
	if r.oneway == nil {
		return false
	}
	m, ok := f.Attribute("method")
	if !ok {
		return false
	}
	_, ok = r.oneway[m]
	return ok
}

// applyMutation records m on f; the codec applies it when f is encoded.
func applyMutation(f codecs.Frame, m *HeaderMutation) error {
	for _, name := range m.Remove {
		if err := f.DelHeader(name); err != nil {
			return fmt.Errorf("remove header %q: %w", name, err)
		}
	}
	for _, h := range m.Set {
		if err := f.SetHeader(h.Name, h.Value); err != nil {
			return fmt.Errorf("set header %q: %w", h.Name, err)
		}
	}
	return nil
}

func (m *HeaderMutation) empty() bool { return len(m.Set) == 0 && len(m.Remove) == 0 }
