package istio

import (
	"context"
	"testing"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/controller"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

type recordingSink struct{ reports [][]controller.ObjectStatus }

func (r *recordingSink) Report(_ context.Context, s []controller.ObjectStatus) {
	r.reports = append(r.reports, s)
}

func TestLeaderOnlySink(t *testing.T) {
	rec := &recordingSink{}
	leading := false
	s := &LeaderOnlySink{Sink: rec, Leading: func() bool { return leading }}
	s.Report(context.Background(), []controller.ObjectStatus{{}})
	if len(rec.reports) != 0 {
		t.Fatal("a follower's report reached the sink")
	}
	leading = true
	s.Report(context.Background(), []controller.ObjectStatus{{}})
	if len(rec.reports) != 1 {
		t.Fatal("the leader's report did not reach the sink")
	}
}

// The generator's problems join the object's status and make it not Programmed; the
// caller's slice is not modified.
func TestProblemsSink(t *testing.T) {
	mr := model.ObjectRef{Group: "metaprotocol.meltemi.io", Kind: "MetaRouter", Namespace: "ns", Name: "mr", Generation: 3}
	other := model.ObjectRef{Kind: "Service", Namespace: "ns", Name: "svc"}
	p := model.Problem{Object: mr, Condition: "Programmed", Reason: "NotExported", Message: "m"}
	rec := &recordingSink{}
	s := &ProblemsSink{Sink: rec, Problems: func(r model.ObjectRef) []model.Problem {
		if keyOf(r) == keyOf(mr) {
			return []model.Problem{p}
		}
		return nil
	}}
	in := []controller.ObjectStatus{{Ref: mr, Programmed: true}, {Ref: other, Programmed: true}}
	s.Report(context.Background(), in)
	got := rec.reports[0]
	if len(got[0].Problems) != 1 || got[0].Problems[0] != p || got[0].Programmed {
		t.Errorf("MetaRouter status %+v; want the problem and not Programmed", got[0])
	}
	if len(got[1].Problems) != 0 || !got[1].Programmed {
		t.Errorf("Service status %+v changed", got[1])
	}
	if len(in[0].Problems) != 0 || !in[0].Programmed {
		t.Errorf("the caller's statuses were modified: %+v", in[0])
	}
}
