package labclaim

import (
	"context"
	"fmt"
	"maps"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// Who may boot a lab of a template, and how many (decision 53). A claim that names a
// template boots a lab of its own; the template says which namespaces may do so
// (spec.claims.namespaceSelector, none when unset) and caps those labs as a pool caps its
// own (spec.claims.maxBooting, spec.claims.maxLabs). A claim beyond a cap waits in line,
// oldest first, and is served when a lab frees.

// admits says whether the selector (field of kind name) admits claims from namespace,
// and if not, why. An unset selector admits none; an empty one admits all.
func (r *Reconciler) admits(ctx context.Context, kind, name, field string, sel *metav1.LabelSelector, namespace string) (bool, string, error) {
	if sel == nil {
		return false, fmt.Sprintf("%s %s admits claims from no namespace (%s is unset)", kind, name, field), nil
	}
	selector, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, fmt.Sprintf("%s %s has an invalid %s: %v", kind, name, field, err), nil
	}
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		return false, "", fmt.Errorf("reading namespace %s: %w", namespace, err)
	}
	if !selector.Matches(labels.Set(ns.Labels)) {
		return false, fmt.Sprintf("%s %s does not admit claims from namespace %s", kind, name, namespace), nil
	}
	return true, "", nil
}

// resolvePool returns the name of the template a claim that is not bound asks for: its
// own templateRef, or its pool's once the pool admits the claim's namespace. It is empty
// when the pool is missing or refuses the claim (s says why).
func (r *Reconciler) resolvePool(ctx context.Context, s *scope) (string, error) {
	ref := s.claim.Spec.PoolRef
	if ref == nil {
		return s.claim.Spec.TemplateRef.Name, nil
	}
	pool := &labforgev1alpha1.LabPool{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: ref.Name}, pool); err != nil {
		if apierrors.IsNotFound(err) {
			s.pendingReason, s.pendingMessage = labforgev1alpha1.ReasonPoolNotFound, fmt.Sprintf("LabPool %s does not exist", ref.Name)
			return "", nil
		}
		return "", fmt.Errorf("reading LabPool %s: %w", ref.Name, err)
	}
	ok, msg, err := r.admits(ctx, "LabPool", pool.Name, "spec.claimNamespaceSelector", pool.Spec.ClaimNamespaceSelector, s.claim.Namespace)
	if err != nil {
		return "", err
	}
	if !ok {
		s.refusedReason, s.refusedMessage = labforgev1alpha1.ReasonNamespaceNotAllowed, msg
		return "", nil
	}
	return pool.Spec.TemplateRef.Name, nil
}

// templateAdmits says whether s.template admits a claim that names it: such a claim boots
// a lab of its own, only where the template admits it (decision 53), as a pool admits its
// claims. Decided before the bind only: a claim that had its lab (expired, or lost) says
// so whatever the template admits now.
func (r *Reconciler) templateAdmits(ctx context.Context, s *scope) (bool, error) {
	if s.claim.Status.Lab != "" || s.claim.Spec.TemplateRef == nil {
		return true, nil
	}
	tmpl := s.template
	ok, msg, err := r.admits(ctx, "LabTemplate", tmpl.Name, "spec.claims.namespaceSelector", tmpl.Spec.Claims.NamespaceSelector, s.claim.Namespace)
	if err == nil && !ok {
		s.refusedReason, s.refusedMessage = labforgev1alpha1.ReasonNamespaceNotAllowed, msg
	}
	return ok, err
}

// Caps of a template's claims when the template does not say (the API's defaults; a
// template read from the API server always says).
const (
	defaultClaimsMaxBooting = 5
	defaultClaimsMaxLabs    = 100
)

// claimCaps returns the template's spec.claims.maxBooting and maxLabs.
func claimCaps(tmpl *labforgev1alpha1.LabTemplate) (maxBooting, maxLabs int32) {
	maxBooting, maxLabs = tmpl.Spec.Claims.MaxBooting, tmpl.Spec.Claims.MaxLabs
	if maxBooting <= 0 {
		maxBooting = defaultClaimsMaxBooting
	}
	if maxLabs <= 0 {
		maxLabs = defaultClaimsMaxLabs
	}
	return maxBooting, maxLabs
}

// coldCount is what the caps of a template count: the labs booted for claims that name it.
type coldCount struct {
	// total counts them in every state, being deleted included: until it is gone a lab
	// holds the host's resources (as a pool counts toward its maxLabs).
	total int32
	// booting counts those not Ready yet, neither failed nor being deleted.
	booting int32
	// names holds every one's name.
	names map[string]bool
}

// countColdLabs counts the labs of envs booted for claims of template: no pool, bound to a
// claim, made by labforge. An admin's one-off lab and the pools' labs are not counted.
func countColdLabs(envs []labforgev1alpha1.LabEnvironment, template string) coldCount {
	c := coldCount{names: map[string]bool{}}
	for i := range envs {
		env := &envs[i]
		if env.Spec.PoolRef != nil || env.Spec.ClaimRef == nil || env.Spec.TemplateRef.Name != template ||
			env.Labels[labforgev1alpha1.LabelManagedBy] != labforgev1alpha1.ManagedByValue {
			continue
		}
		c.total++
		c.names[env.Name] = true
		if !env.DeletionTimestamp.IsZero() {
			continue
		}
		// A lab that was Ready once has finished booting, whatever its Ready says now.
		if env.Status.ReadyTime == nil && !meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionStalled) {
			c.booting++
		}
	}
	return c
}

// room is how many more labs the caps let the template's claims boot now.
func (c coldCount) room(maxBooting, maxLabs int32) int32 {
	return max(0, min(maxBooting-c.booting, maxLabs-c.total))
}

// reserveColdLab decides whether the claim may boot its lab now, within the caps of its
// template (s.template), and if so the ledger expects the lab before the caller creates
// it (ledger.reserveColdLab). Otherwise the claim waits (s.pendingReason) with the cap
// that holds it and its place in the template's line.
func (r *Reconciler) reserveColdLab(ctx context.Context, s *scope) (bool, error) {
	tmpl := s.template
	tl, position, ok, err := r.lines().reserveColdLab(ctx, s.claim, tmpl, r.boundHereClaim)
	if err != nil || ok {
		return ok, err
	}
	s.pendingReason = labforgev1alpha1.ReasonWaitingForLab
	var at string
	s.queuePosition, at = place(s.claim.Status.QueuePosition, position)
	switch {
	case tl.cold.total >= tl.maxLabs:
		s.pendingMessage = fmt.Sprintf("Waiting for a lab of LabTemplate %s: its claims hold %d of at most %d labs (spec.claims.maxLabs); %s",
			tmpl.Name, tl.cold.total, tl.maxLabs, at)
	case tl.cold.booting >= tl.maxBooting:
		s.pendingMessage = fmt.Sprintf("Waiting for a lab of LabTemplate %s: its claims have %d of at most %d labs booting at once (spec.claims.maxBooting); %s",
			tmpl.Name, tl.cold.booting, tl.maxBooting, at)
	default:
		s.pendingMessage = fmt.Sprintf("Waiting for a lab of LabTemplate %s: %s, behind older claims taking the room its caps leave (maxBooting %d, maxLabs %d)",
			tmpl.Name, at, tl.maxBooting, tl.maxLabs)
	}
	return false, nil
}

// boundHereClaim says whether this process bound the claim of uid to a lab whose bind
// the cache may not show yet (expectBind).
func (r *Reconciler) boundHereClaim(uid types.UID) bool {
	_, bound := r.expected().ExpectedBy(expectBind, string(uid))
	return bound
}

// refusedClaimsOfNamespace wakes the claims of a namespace that a pool or template refused
// for their namespace: its labels changed, and the selector may admit it now.
func (r *Reconciler) refusedClaimsOfNamespace(ctx context.Context, o client.Object) []reconcile.Request {
	var claims labforgev1alpha1.LabClaimList
	if err := r.Client.List(ctx, &claims, client.InNamespace(o.GetName()), readOnly); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list the LabClaims of namespace", "namespace", o.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for i := range claims.Items {
		c := &claims.Items[i]
		if stalled := meta.FindStatusCondition(c.Status.Conditions, labforgev1alpha1.ConditionStalled); stalled != nil &&
			stalled.Status == metav1.ConditionTrue && stalled.Reason == labforgev1alpha1.ReasonNamespaceNotAllowed {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(c)})
		}
	}
	return reqs
}

// labelsChanged lets through the updates that change an object's labels.
func labelsChanged() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			return !maps.Equal(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels())
		},
	}
}
