package kube

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1alpha1 "github.com/meltemi-mesh/meltemi/controlplane/api/v1alpha1"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/controller"
	"github.com/meltemi-mesh/meltemi/controlplane/internal/model"
)

// FieldManager is the field manager of the controller's status writes.
const FieldManager = "meltemi-controller"

// Condition reasons written when a condition holds, and when the data plane rejected the
// configuration.
const (
	ReasonAccepted     = "Accepted"
	ReasonResolvedRefs = "ResolvedRefs"
	ReasonProgrammed   = "Programmed"
	ReasonRejected     = "Rejected"
	// ReasonPending: no data-plane client has accepted the configuration made from the
	// object (none uses it yet, or the current version is still on its way).
	ReasonPending = "Pending"
)

// StatusWriter writes conditions and observedGeneration into the status subresource of our
// MetaRouters and ApplicationProtocols (group metaprotocol.meltemi.io). It never writes
// anything else: Aeraki's MetaRouters and Istio's objects are read, not owned.
type StatusWriter struct {
	// Client writes status; its scheme must know v1alpha1 (see Scheme).
	Client client.Client
	// Reader reads the current status; a cache (Source.Reader) spares the API server a GET
	// per object per report. nil means Client.
	Reader client.Reader
	// Log receives write failures; nil discards them.
	Log *slog.Logger
	// EnvoyFilters, if set (Istio mode), returns the EnvoyFilters ("namespace/name", sorted)
	// that program a MetaRouter, for its status.envoyFilters.
	EnvoyFilters func(model.ObjectRef) []string
}

// NewStatusWriter returns a StatusWriter that writes through cfg and reads current status
// through reader (nil: the API server).
func NewStatusWriter(cfg *rest.Config, reader client.Reader, log *slog.Logger) (*StatusWriter, error) {
	scheme, err := Scheme()
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("status client: %w", err)
	}
	return &StatusWriter{Client: c, Reader: reader, Log: log}, nil
}

// Report writes the status of every object in statuses that is ours, skipping objects whose
// status already says the same, objects that are gone, and verdicts about an older
// generation than the object's current one (a newer verdict follows). Failures are logged,
// not returned: the next report tries again.
func (w *StatusWriter) Report(ctx context.Context, statuses []controller.ObjectStatus) {
	for i := range statuses {
		if ctx.Err() != nil {
			return // shutting down; nothing to report it to
		}
		if err := w.write(ctx, &statuses[i]); err != nil && ctx.Err() == nil {
			w.log().Error("write status", "object", statuses[i].Ref.String(), "err", err)
		}
	}
}

func (w *StatusWriter) log() *slog.Logger {
	if w.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Log
}

// owned is true for the kinds whose status the controller writes.
func owned(ref model.ObjectRef) bool {
	return ref.Group == v1alpha1.GroupVersion.Group && (ref.Kind == "MetaRouter" || ref.Kind == "ApplicationProtocol")
}

func (w *StatusWriter) write(ctx context.Context, st *controller.ObjectStatus) error {
	if !owned(st.Ref) {
		return nil
	}
	var cached client.Object
	switch st.Ref.Kind {
	case "MetaRouter":
		cached = &v1alpha1.MetaRouter{}
	default:
		cached = &v1alpha1.ApplicationProtocol{}
	}
	reader := w.Reader
	if reader == nil {
		reader = w.Client
	}
	key := client.ObjectKey{Namespace: st.Ref.Namespace, Name: st.Ref.Name}
	if err := reader.Get(ctx, key, cached); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("get: %w", err)
	}
	gen := cached.GetGeneration()
	if st.Ref.Generation != 0 && st.Ref.Generation != gen {
		return nil
	}
	// A cache reader without deep copies (the Source's) shares maps and slices with the
	// cached object; neither the status update nor the decoding of the patch response may
	// write into them.
	obj := cached.DeepCopyObject().(client.Object)
	var status *v1alpha1.Status
	switch o := obj.(type) {
	case *v1alpha1.MetaRouter:
		status = &o.Status
	case *v1alpha1.ApplicationProtocol:
		status = &o.Status
	}
	changed := setStatus(status, gen, st)
	if w.EnvoyFilters != nil && st.Ref.Kind == "MetaRouter" {
		efs := w.EnvoyFilters(st.Ref)
		if !slices.Equal(status.EnvoyFilters, efs) {
			status.EnvoyFilters = slices.Clone(efs)
			changed = true
		}
	}
	if !changed {
		return nil
	}
	err := w.Client.Status().Patch(ctx, obj, client.MergeFrom(cached), client.FieldOwner(FieldManager))
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("patch status: %w", err)
	}
	return nil
}

// setStatus makes s describe st at generation gen and reports whether it changed. Conditions
// keep their lastTransitionTime unless their status flips.
func setStatus(s *v1alpha1.Status, gen int64, st *controller.ObjectStatus) bool {
	changed := s.ObservedGeneration != gen
	s.ObservedGeneration = gen
	for _, c := range desiredConditions(gen, st) {
		// SetStatusCondition reports changes of status, reason, message and
		// observedGeneration; lastTransitionTime moves only with status.
		if meta.SetStatusCondition(&s.Conditions, c) {
			changed = true
		}
	}
	return changed
}

func desiredConditions(gen int64, st *controller.ObjectStatus) []metav1.Condition {
	cond := func(typ, okReason string) metav1.Condition {
		c := metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: okReason, ObservedGeneration: gen}
		var msgs []string
		for _, p := range st.Problems {
			if p.Condition != typ {
				continue
			}
			if c.Status == metav1.ConditionTrue {
				c.Status = metav1.ConditionFalse
				c.Reason = p.Reason
			}
			if p.Message != "" {
				msgs = append(msgs, p.Message)
			}
		}
		c.Message = truncate(strings.Join(msgs, "; "))
		if c.Reason == "" {
			c.Reason = "Invalid"
		}
		return c
	}
	programmed := cond(v1alpha1.ConditionProgrammed, ReasonProgrammed)
	switch {
	case st.Nack != "":
		programmed.Status = metav1.ConditionFalse
		programmed.Reason = ReasonRejected
		programmed.Message = truncate(st.Nack)
	case programmed.Status == metav1.ConditionTrue && !st.Programmed:
		programmed.Status = metav1.ConditionFalse
		programmed.Reason = ReasonPending
		programmed.Message = "no data-plane client has accepted the configuration made from it yet"
	}
	return []metav1.Condition{
		cond(v1alpha1.ConditionAccepted, ReasonAccepted),
		cond(v1alpha1.ConditionResolvedRefs, ReasonResolvedRefs),
		programmed,
	}
}

// maxMessage is metav1.Condition's message limit.
const maxMessage = 32768

func truncate(s string) string {
	if len(s) <= maxMessage {
		return s
	}
	return strings.ToValidUTF8(s[:maxMessage-3], "") + "..."
}
