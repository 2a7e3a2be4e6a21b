package labclaim

import (
	"context"
	"fmt"
	"maps"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/expectations"
	"github.com/labforge/labforge/internal/index"
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
// template (s.template), and if so records the lab as expected before the caller creates
// it. Otherwise the claim waits (s.pendingReason) with the cap that holds it.
//
// The caps are counted from the cache, which lags behind this process's own creates: two
// claims a moment apart would both see room for one. So the count and the expectation are
// taken under one lock, and a lab created but not yet in the cache counts as booting until
// the cache lists it (the pool's Expectations, keyed by template). Claims are served in
// line, oldest first: a claim only takes room left after the older claims waiting on the
// same template.
func (r *Reconciler) reserveColdLab(ctx context.Context, s *scope) (bool, error) {
	tmpl := s.template
	maxBooting, maxLabs := claimCaps(tmpl)
	r.coldMu.Lock()
	defer r.coldMu.Unlock()
	if r.coldLabs == nil { // a Reconciler not set up by SetupWithManager (unit tests)
		r.coldLabs = expectations.New(r.Clock, 0)
	}
	var envs labforgev1alpha1.LabEnvironmentList
	if err := r.Client.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelTemplate: tmpl.Name}, readOnly); err != nil {
		return false, fmt.Errorf("listing the labs of LabTemplate %s: %w", tmpl.Name, err)
	}
	c := countColdLabs(envs.Items, tmpl.Name)
	// A lab the cache shows, even already being deleted, is counted there: its expected
	// creation is met (only creations are expected here).
	seen := make([]string, 0, len(c.names))
	for name := range c.names {
		seen = append(seen, name)
	}
	r.coldLabs.Observed(tmpl.Name, seen)
	pending, _ := r.coldLabs.Pending(tmpl.Name)
	c.total += pending
	c.booting += pending
	position, err := r.placeInTemplateLine(ctx, s.claim, c)
	if err != nil {
		return false, err
	}
	if room := c.room(maxBooting, maxLabs); int32(position) < room {
		r.coldLabs.ExpectCreations(tmpl.Name, coldLabName(s.claim))
		return true, nil
	}
	s.pendingReason = labforgev1alpha1.ReasonWaitingForLab
	s.queuePosition = reportedPosition(s.claim.Status.QueuePosition, int32(position+1))
	place := fmt.Sprintf("number %d in line", s.queuePosition)
	if s.queuePosition > ExactPositions {
		place += " or better"
	}
	switch {
	case c.total >= maxLabs:
		s.pendingMessage = fmt.Sprintf("Waiting for a lab of LabTemplate %s: its claims hold %d of at most %d labs (spec.claims.maxLabs); %s",
			tmpl.Name, c.total, maxLabs, place)
	case c.booting >= maxBooting:
		s.pendingMessage = fmt.Sprintf("Waiting for a lab of LabTemplate %s: its claims have %d of at most %d labs booting at once (spec.claims.maxBooting); %s",
			tmpl.Name, c.booting, maxBooting, place)
	default:
		s.pendingMessage = fmt.Sprintf("Waiting for a lab of LabTemplate %s: %s, behind older claims taking the room its caps leave (maxBooting %d, maxLabs %d)",
			tmpl.Name, place, maxBooting, maxLabs)
	}
	return false, nil
}

// placeInTemplateLine counts the claims of the claim's template that came before it and
// still wait for a lab. A claim whose lab is in the cache (c), or that this process bound
// already (r.binds), does not wait, whatever its cached status says.
func (r *Reconciler) placeInTemplateLine(ctx context.Context, claim *labforgev1alpha1.LabClaim, c coldCount) (int, error) {
	template := claim.Spec.TemplateRef.Name
	var claims labforgev1alpha1.LabClaimList
	if err := r.Client.List(ctx, &claims, client.MatchingFields{index.ClaimByTemplate: template}, readOnly); err != nil {
		return 0, fmt.Errorf("listing the claims of LabTemplate %s: %w", template, err)
	}
	position := 0
	for i := range claims.Items {
		other := &claims.Items[i]
		if other.UID == claim.UID || !inLine(other) || c.names[coldLabName(other)] {
			continue
		}
		if _, bound := r.binds.Load(other.UID); bound {
			continue
		}
		if before(other, claim) {
			position++
		}
	}
	return position, nil
}

// claimsOfTemplate wakes, on a change of a template, the claims waiting on it (its caps
// may have been raised) and those it refused (its namespaceSelector may admit them now).
func (r *Reconciler) claimsOfTemplate(ctx context.Context, o client.Object) []reconcile.Request {
	return r.wakeTemplateLine(ctx, o.GetName(), true)
}

// wakeTemplateLine returns the claims of template's line worth a pass (wakeable, with the
// room the caps leave as the cache shows it) and, when refused is set, the claims of the
// template without a lab that are not in line (refused). Like wakeLine, it only reads the
// cache, and counts the labs only when a claim waits.
func (r *Reconciler) wakeTemplateLine(ctx context.Context, template string, refused bool) []reconcile.Request {
	var claims labforgev1alpha1.LabClaimList
	if err := r.Client.List(ctx, &claims, client.MatchingFields{index.ClaimByTemplate: template}, readOnly); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list the LabClaims of LabTemplate", "template", template)
		return nil
	}
	line, reqs := splitLine(claims.Items, func(c *labforgev1alpha1.LabClaim) bool {
		return refused && c.Status.Lab == "" && c.DeletionTimestamp.IsZero()
	})
	if len(line) == 0 {
		return reqs
	}
	tmpl := &labforgev1alpha1.LabTemplate{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: template}, tmpl, readOnly); err != nil {
		// No template, no caps to count: every claim of the line gets its pass (and waits
		// with TemplateNotFound, or is served once the template is there).
		tmpl = nil
	}
	room := len(line)
	if tmpl != nil {
		var envs labforgev1alpha1.LabEnvironmentList
		if err := r.Client.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelTemplate: template}, readOnly); err != nil {
			ctrl.LoggerFrom(ctx).Error(err, "Failed to list the labs of LabTemplate", "template", template)
			return nil
		}
		room = int(countColdLabs(envs.Items, template).room(claimCaps(tmpl)))
	}
	sort.Slice(line, func(i, j int) bool { return before(line[i], line[j]) })
	for _, c := range wakeable(line, room) {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(c)})
	}
	return reqs
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
