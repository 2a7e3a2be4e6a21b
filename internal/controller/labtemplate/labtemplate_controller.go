// Package labtemplate holds the LabTemplate controller: it checks each template against
// what labforge can build on this host cluster and says so in the template's status.
package labtemplate

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/templatecheck"
)

// ControllerName names the controller in logs, events and metrics.
const ControllerName = "labtemplate"

// Reconciler checks LabTemplates.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	// Host is the host cluster's network, which labs must not overlap.
	Host *hostcluster.Host
}

// +kubebuilder:rbac:groups=labforge.dev,resources=labtemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups=labforge.dev,resources=labtemplates/status,verbs=patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile checks one template and records the verdict. It writes only when the verdict
// or the generation changed, so a resync of unchanged templates costs no API writes.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var t labforgev1alpha1.LabTemplate
	if err := r.Client.Get(ctx, req.NamespacedName, &t); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !t.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}

	_, problems := templatecheck.Check(&t.Spec, r.Host.Network())
	want := t.DeepCopy()
	setStatus(want, problems)
	if equality.Semantic.DeepEqual(t.Status, want.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Client.Status().Patch(ctx, want, client.MergeFrom(&t)); err != nil {
		return ctrl.Result{}, fmt.Errorf("patching LabTemplate %s status: %w", t.Name, err)
	}

	wasReady := meta.IsStatusConditionTrue(t.Status.Conditions, labforgev1alpha1.ConditionReady)
	wasInvalid := meta.IsStatusConditionFalse(t.Status.Conditions, labforgev1alpha1.ConditionReady)
	switch {
	case len(problems) == 0 && !wasReady:
		r.Recorder.Eventf(want, nil, corev1.EventTypeNormal, labforgev1alpha1.ReasonAccepted, "Check", "Labs can be built from this template")
		ctrl.LoggerFrom(ctx).Info("Accepted LabTemplate", "generation", t.Generation)
	case len(problems) > 0 && (!wasInvalid || t.Status.ObservedGeneration != t.Generation):
		msg := strings.Join(problems, "; ")
		r.Recorder.Eventf(want, nil, corev1.EventTypeWarning, labforgev1alpha1.ReasonInvalidTemplate, "Check", "%s", msg)
		ctrl.LoggerFrom(ctx).Info("Rejected LabTemplate", "generation", t.Generation, "problems", msg)
	}
	return ctrl.Result{}, nil
}

// SetupWithManager registers the controller. Only spec changes (generation) and changes
// of the host's ranges (which a template's must not overlap) trigger it: its own status
// writes must not.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	hostRanges := r.Host.Subscribe(func(old, cur hostcluster.Network) bool {
		return !slices.Equal(old.Ranges(), cur.Ranges())
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&labforgev1alpha1.LabTemplate{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(hostRanges, handler.EnqueueRequestsFromMapFunc(r.allTemplates))).
		Complete(r)
}

// allTemplates names every LabTemplate: the host's ranges changed under all of them.
func (r *Reconciler) allTemplates(ctx context.Context, _ client.Object) []reconcile.Request {
	var list labforgev1alpha1.LabTemplateList
	if err := r.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list LabTemplates")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, t := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Name: t.Name}})
	}
	return reqs
}
