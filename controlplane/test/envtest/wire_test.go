//go:build envtest

package envtest_test

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/source/kube"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/translate"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/xds"
)

// wire connects the source, the translator, the xDS server and the status writer.
// TODO: replace with controlplane/internal/controller once it lands.
func wire(t *testing.T, src *kube.Source, sw *kube.StatusWriter, log *slog.Logger) (*pipeline, func(context.Context) error) {
	t.Helper()
	var mu sync.Mutex
	var last *model.Inputs
	nacks := map[model.ObjectRef]string{}
	var srv *xds.Server
	report := func(ctx context.Context) {
		mu.Lock()
		in := last
		nk := make(map[model.ObjectRef]string, len(nacks))
		for k, v := range nacks {
			nk[k] = v
		}
		mu.Unlock()
		if in == nil {
			return
		}
		m := model.Build(in)
		byRef := map[model.ObjectRef]*kube.ObjectStatus{}
		var order []model.ObjectRef
		for _, mr := range in.MetaRouters {
			ref := model.ObjectRef{Group: mr.GroupVersionKind().Group, Kind: "MetaRouter", Namespace: mr.Namespace, Name: mr.Name, Generation: mr.Generation}
			byRef[ref] = &kube.ObjectStatus{Ref: ref}
			order = append(order, ref)
		}
		for _, p := range translate.Translate(m).Problems {
			if st := byRef[p.Object]; st != nil {
				st.Problems = append(st.Problems, p)
			}
		}
		for ref, msg := range nk {
			if st := byRef[ref]; st != nil {
				st.Nack = msg
			}
		}
		var out []kube.ObjectStatus
		for _, ref := range order {
			out = append(out, *byRef[ref])
		}
		sw.Report(ctx, out)
	}
	srv = xds.NewServer(xds.Options{
		Logger: log.With("component", "xds"),
		OnNack: func(n xds.Nack) {
			res := srv.Resources()
			mu.Lock()
			for _, name := range n.ResourceNames {
				for _, ref := range res.Origins[translate.OriginKey(n.TypeURL, name)] {
					nacks[ref] = n.Message
				}
			}
			mu.Unlock()
			go report(context.Background())
		},
	})
	run := func(ctx context.Context) error {
		return src.Run(ctx, func(in *model.Inputs) {
			mu.Lock()
			last = in
			mu.Unlock()
			srv.Update(translate.Translate(model.Build(in)))
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			report(rctx)
			cancel()
		})
	}
	return &pipeline{xds: srv}, run
}
