//go:build envtest

package envtest_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/controller"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/source/kube"
)

// wire connects the source to the controller (and so to its xDS server) and the controller's
// status reports to the status writer, as controlplane/cmd/meltemi-controller does. The
// returned function runs the source and the status reports until ctx ends.
func wire(t *testing.T, src *kube.Source, sw *kube.StatusWriter, log *slog.Logger) (*pipeline, func(context.Context) error) {
	t.Helper()
	c := controller.New(controller.Options{Sink: sw, Logger: log.With("component", "controller")})
	run := func(ctx context.Context) error {
		errc := make(chan error, 1)
		go func() { errc <- c.Run(ctx) }()
		err := src.Run(ctx, c.Sync)
		if rerr := <-errc; err == nil {
			err = rerr
		}
		return err
	}
	return &pipeline{xds: c.Server(), syncs: c.Syncs}, run
}
