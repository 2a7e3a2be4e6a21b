package labpool

import (
	"context"
	"errors"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/labforge/labforge/internal/ownership"
)

// reconcileOwnership keeps the pool the controlling owner of its unclaimed labs, and of
// those only. An unclaimed lab with no owner (a restore that dropped owner references) is
// adopted, so that the garbage collector removes it with the pool even when the pool's
// finalizer cannot run (the operator gone, its finalizers stripped). A claimed lab is
// released: it belongs to its student
// now, and must outlive the pool (a claim, being namespaced, cannot own it; spec.claimRef
// binds it instead). Both are one patch under an optimistic lock: a bind racing with the
// adoption makes the adoption fail, never the bind.
func (r *Reconciler) reconcileOwnership(ctx context.Context, s *scope) error {
	var errs []error
	for _, env := range s.envs {
		if !env.DeletionTimestamp.IsZero() {
			continue
		}
		ref := metav1.GetControllerOf(env)
		// s.envs are the cache's own objects (see observe): patches write to a copy.
		switch {
		case env.Spec.ClaimRef == nil && ref == nil && ownership.Managed(env):
			if err := ownership.Adopt(ctx, r.Client, nil, env.DeepCopy(), ownership.ControllerReference("LabPool", s.pool)); err != nil {
				errs = append(errs, err)
				continue
			}
			ctrl.LoggerFrom(ctx).Info("Adopted an orphaned lab of LabPool", "lab", env.Name)
		case env.Spec.ClaimRef != nil && ref != nil && ref.UID == s.pool.UID:
			errs = append(errs, ownership.Release(ctx, r.Client, env.DeepCopy(), s.pool.UID))
		}
	}
	return errors.Join(errs...)
}
