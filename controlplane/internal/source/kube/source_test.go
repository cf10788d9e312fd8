package kube

import (
	"errors"
	"log/slog"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
)

func objMeta(rv string, gen int64, labels map[string]string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv, Generation: gen, Labels: labels}}
}

func TestUpdateFilters(t *testing.T) {
	for _, c := range []struct {
		name     string
		f        func(o, n any) bool
		old, new any
		want     bool
	}{
		{"spec: re-list of the same version", specChanged, objMeta("1", 1, nil), objMeta("1", 1, nil), true},
		{"spec: status-only write", specChanged, objMeta("1", 1, nil), objMeta("2", 1, nil), false},
		{"spec: spec change", specChanged, objMeta("1", 1, nil), objMeta("2", 2, nil), true},
		{"spec: no generation", specChanged, objMeta("1", 0, nil), objMeta("2", 0, nil), true},
		{"labels: re-list", labelsChanged, objMeta("1", 0, map[string]string{"a": "1"}), objMeta("1", 0, map[string]string{"a": "1"}), true},
		{"labels: status change", labelsChanged, objMeta("1", 0, map[string]string{"a": "1"}), objMeta("2", 0, map[string]string{"a": "1"}), false},
		{"labels: relabel", labelsChanged, objMeta("1", 0, map[string]string{"a": "1"}), objMeta("2", 0, map[string]string{"a": "2"}), true},
		{"labels: not objects", labelsChanged, "x", "y", true},
	} {
		if got := c.f(c.old, c.new); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestDiscover(t *testing.T) {
	s := &Source{}
	kinds := s.kinds()
	byName := map[string]*kind{}
	for _, k := range kinds {
		byName[k.name] = k
	}
	fake := &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{}}
	w := &watcher{log: slog.New(slog.DiscardHandler), active: map[*kind]bool{}}

	// Nothing optional installed.
	got := w.discover(fake, kinds)
	for _, k := range kinds {
		if got[k] {
			t.Errorf("no CRDs: %s present", k.name)
		}
	}

	// Istio with only two of the three kinds, Aeraki's MetaRouter.
	fake.Resources = []*metav1.APIResourceList{
		{GroupVersion: "networking.istio.io/v1", APIResources: []metav1.APIResource{{Name: "serviceentries"}, {Name: "destinationrules"}}},
		{GroupVersion: "metaprotocol.aeraki.io/v1alpha1", APIResources: []metav1.APIResource{{Name: "metarouters"}}},
	}
	got = w.discover(fake, kinds)
	for name, want := range map[string]bool{"ServiceEntry": true, "DestinationRule": true, "WorkloadEntry": false, "Aeraki MetaRouter": true, "MetaRouter": false} {
		if got[byName[name]] != want {
			t.Errorf("discover %s = %v, want %v", name, got[byName[name]], want)
		}
	}

	// The API server is unreachable: what is watched stays watched, nothing starts.
	w.active[byName["ServiceEntry"]] = true
	fake.PrependReactor("get", "resource", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	got = w.discover(fake, kinds)
	for name, want := range map[string]bool{"ServiceEntry": true, "DestinationRule": false, "Aeraki MetaRouter": false} {
		if got[byName[name]] != want {
			t.Errorf("unreachable: discover %s = %v, want %v", name, got[byName[name]], want)
		}
	}
}
