package istio

import (
	"context"
	"slices"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/controller"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// LeaderOnlySink passes status reports to Sink only while Leading says so: followers serve
// xDS but write no status.
type LeaderOnlySink struct {
	Sink    controller.StatusSink
	Leading func() bool
}

// Report implements controller.StatusSink.
func (s *LeaderOnlySink) Report(ctx context.Context, statuses []controller.ObjectStatus) {
	if s.Leading() {
		s.Sink.Report(ctx, statuses)
	}
}

// ProblemsSink adds to each object's status the problems Problems reports for it (the
// generator's: a MetaRouter whose EnvoyFilters could not be placed), then passes the report
// to Sink.
type ProblemsSink struct {
	Sink     controller.StatusSink
	Problems func(model.ObjectRef) []model.Problem
}

// Report implements controller.StatusSink.
func (s *ProblemsSink) Report(ctx context.Context, statuses []controller.ObjectStatus) {
	out := statuses
	copied := false
	for i := range statuses {
		ps := s.Problems(statuses[i].Ref)
		if len(ps) == 0 {
			continue
		}
		if !copied {
			out = slices.Clone(statuses)
			copied = true
		}
		st := out[i]
		st.Problems = append(slices.Clone(st.Problems), ps...)
		st.Programmed = false
		out[i] = st
	}
	s.Sink.Report(ctx, out)
}
