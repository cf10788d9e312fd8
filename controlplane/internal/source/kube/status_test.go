package kube

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/controller"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

func TestSetStatus(t *testing.T) {
	ref := model.ObjectRef{Group: v1alpha1.GroupVersion.Group, Kind: "MetaRouter", Namespace: "ns", Name: "r", Generation: 2}
	var s v1alpha1.Status

	if !setStatus(&s, 2, &controller.ObjectStatus{Ref: ref, Programmed: true}) {
		t.Fatal("first status: changed = false")
	}
	if s.ObservedGeneration != 2 {
		t.Errorf("observedGeneration = %d, want 2", s.ObservedGeneration)
	}
	for typ, reason := range map[string]string{
		v1alpha1.ConditionAccepted: ReasonAccepted, v1alpha1.ConditionResolvedRefs: ReasonResolvedRefs, v1alpha1.ConditionProgrammed: ReasonProgrammed,
	} {
		c := meta.FindStatusCondition(s.Conditions, typ)
		if c == nil || c.Status != metav1.ConditionTrue || c.Reason != reason || c.ObservedGeneration != 2 {
			t.Errorf("condition %s = %+v, want True/%s at generation 2", typ, c, reason)
		}
	}

	// The same verdict again changes nothing, so nothing is written.
	if setStatus(&s, 2, &controller.ObjectStatus{Ref: ref, Programmed: true}) {
		t.Error("same status again: changed = true")
	}

	// Backdate the transition times to see which ones move.
	old := metav1.NewTime(time.Now().Add(-time.Hour).Truncate(time.Second))
	for i := range s.Conditions {
		s.Conditions[i].LastTransitionTime = old
	}
	st := &controller.ObjectStatus{Ref: ref, Problems: []model.Problem{
		{Object: ref, Condition: v1alpha1.ConditionResolvedRefs, Reason: "HostNotFound", Message: "no service a"},
		{Object: ref, Condition: v1alpha1.ConditionResolvedRefs, Reason: "SubsetNotFound", Message: "no subset b"},
	}, Nack: "bad route"}
	if !setStatus(&s, 2, st) {
		t.Fatal("problems: changed = false")
	}
	rr := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionResolvedRefs)
	if rr.Status != metav1.ConditionFalse || rr.Reason != "HostNotFound" || rr.Message != "no service a; no subset b" {
		t.Errorf("ResolvedRefs = %+v", rr)
	}
	if rr.LastTransitionTime.Equal(&old) {
		t.Error("ResolvedRefs flipped but lastTransitionTime did not move")
	}
	p := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionProgrammed)
	if p.Status != metav1.ConditionFalse || p.Reason != ReasonRejected || p.Message != "bad route" {
		t.Errorf("Programmed = %+v", p)
	}
	a := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionAccepted)
	if a.Status != metav1.ConditionTrue || !a.LastTransitionTime.Equal(&old) {
		t.Errorf("Accepted = %+v, want True with its old lastTransitionTime", a)
	}
}

func TestProgrammedPending(t *testing.T) {
	ref := model.ObjectRef{Group: v1alpha1.GroupVersion.Group, Kind: "MetaRouter", Namespace: "ns", Name: "r", Generation: 1}
	var s v1alpha1.Status
	setStatus(&s, 1, &controller.ObjectStatus{Ref: ref})
	p := meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionProgrammed)
	if p.Status != metav1.ConditionFalse || p.Reason != ReasonPending {
		t.Errorf("Programmed before any ACK = %+v, want False/Pending", p)
	}
	// A problem about Programmed wins over Pending.
	setStatus(&s, 1, &controller.ObjectStatus{Ref: ref, Problems: []model.Problem{{Object: ref, Condition: v1alpha1.ConditionProgrammed, Reason: "Unsupported", Message: "m"}}})
	p = meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionProgrammed)
	if p.Status != metav1.ConditionFalse || p.Reason != "Unsupported" {
		t.Errorf("Programmed with a problem = %+v, want False/Unsupported", p)
	}
	if !setStatus(&s, 1, &controller.ObjectStatus{Ref: ref, Programmed: true}) {
		t.Error("ACK: changed = false")
	}
	p = meta.FindStatusCondition(s.Conditions, v1alpha1.ConditionProgrammed)
	if p.Status != metav1.ConditionTrue || p.Reason != ReasonProgrammed {
		t.Errorf("Programmed after an ACK = %+v, want True/Programmed", p)
	}
}

func TestOwned(t *testing.T) {
	for _, c := range []struct {
		ref  model.ObjectRef
		want bool
	}{
		{model.ObjectRef{Group: "metaprotocol.meltemi.io", Kind: "MetaRouter"}, true},
		{model.ObjectRef{Group: "metaprotocol.meltemi.io", Kind: "ApplicationProtocol"}, true},
		{model.ObjectRef{Group: "metaprotocol.aeraki.io", Kind: "MetaRouter"}, false},
		{model.ObjectRef{Group: "networking.istio.io", Kind: "DestinationRule"}, false},
		{model.ObjectRef{Kind: "Service"}, false},
	} {
		if got := owned(c.ref); got != c.want {
			t.Errorf("owned(%v) = %v, want %v", c.ref, got, c.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("é", maxMessage)
	got := truncate(long)
	if len(got) > maxMessage || !strings.HasSuffix(got, "...") {
		t.Errorf("truncate: len %d, suffix %q", len(got), got[len(got)-3:])
	}
	if truncate("short") != "short" {
		t.Error("truncate changed a short message")
	}
}
