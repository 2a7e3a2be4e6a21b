package labclaim

import (
	"context"
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/index"
)

// scope is what one pass observed and decided about a claim.
type scope struct {
	claim *labforgev1alpha1.LabClaim
	now   time.Time

	// env is the lab bound to the claim, if any.
	env *labforgev1alpha1.LabEnvironment
	// template is the template the claim asks for, read while it is not bound yet (for
	// its duration, description and the bind's terms); never read once it is bound.
	template *labforgev1alpha1.LabTemplate
	// terms are the bound claim's lifetime and login as recorded on its lab at the bind
	// (decision 57); nil while it is not bound.
	terms    *labforgev1alpha1.ClaimTerms
	duration time.Duration

	// refusedReason and refusedMessage: the claim cannot be served as written (terminal).
	refusedReason, refusedMessage string
	// extensionRefused says why spec.duration, raised after the bind, was not applied
	// (it would go past the template's lifetime.maximum); empty when it was.
	extensionRefused string
	// pendingReason and pendingMessage: the claim waits for something outside it.
	pendingReason, pendingMessage string
	queuePosition                 int32
	// boundNow: this pass bound the lab; launch says how.
	boundNow bool
	launch   labforgev1alpha1.LaunchType
	expired  bool
	// labReady: the bound lab is Ready; a lab only built is handed over but not Ready.
	labReady bool
	handover *handover
	// solution is what this pass learnt of the lab's solution checks; nil without any.
	solution *solutionScope
}

// findLab finds the lab bound to the claim: by the claim's UID, never by name alone.
func (r *Reconciler) findLab(ctx context.Context, s *scope) error {
	var envs labforgev1alpha1.LabEnvironmentList
	if err := r.Client.List(ctx, &envs, client.MatchingFields{index.LabByClaimUID: string(s.claim.UID)}); err != nil {
		return fmt.Errorf("listing the lab of LabClaim %s/%s: %w", s.claim.Namespace, s.claim.Name, err)
	}
	for i := range envs.Items {
		ref := envs.Items[i].Spec.ClaimRef
		if ref.Namespace == s.claim.Namespace && ref.Name == s.claim.Name {
			s.env = &envs.Items[i]
			r.binds.Delete(s.claim.UID)
			return nil
		}
	}
	return r.findLaggingLab(ctx, s)
}

// findLaggingLab asks the API server for a lab the cache does not show bound to the claim
// yet, but which may be: the lab this process bound the claim to (remembered in r.binds
// until the cache shows the bind), or the lab the claim's status names. The LabEnvironment
// cache can lag behind the claim cache and behind this process's own writes (a watch
// re-established after an API server restart replays them late); trusting it would bind
// the claim to a second lab, or declare its lab lost.
func (r *Reconciler) findLaggingLab(ctx context.Context, s *scope) error {
	name := s.claim.Status.Lab
	if v, ok := r.binds.Load(s.claim.UID); ok {
		name = v.(string)
	} else if name == "" || meta.IsStatusConditionTrue(s.claim.Status.Conditions, labforgev1alpha1.ConditionExpired) ||
		meta.IsStatusConditionTrue(s.claim.Status.Conditions, labforgev1alpha1.ConditionStalled) {
		// Never bound, or done with its lab: nothing to look for.
		return nil
	}
	env := &labforgev1alpha1.LabEnvironment{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: name}, env); err != nil {
		if apierrors.IsNotFound(err) {
			r.binds.Delete(s.claim.UID)
			return nil
		}
		return fmt.Errorf("reading LabEnvironment %s of LabClaim %s/%s: %w", name, s.claim.Namespace, s.claim.Name, err)
	}
	if ref := env.Spec.ClaimRef; ref != nil && ref.UID == s.claim.UID {
		s.env = env
		return nil
	}
	r.binds.Delete(s.claim.UID)
	return nil
}

func (r *Reconciler) reconcileNormal(ctx context.Context, s *scope) (ctrl.Result, error) {
	if meta.IsStatusConditionTrue(s.claim.Status.Conditions, labforgev1alpha1.ConditionExpired) {
		// Expired is for good: the lab and its terms are gone, and neither the template as
		// it is now nor a longer spec.duration may bring the claim back to life.
		return ctrl.Result{}, r.expire(ctx, s)
	}
	if err := r.resolve(ctx, s); err != nil || s.refusedReason != "" || s.pendingReason != "" {
		return ctrl.Result{}, err
	}
	if (s.terms != nil || s.claim.Status.BoundTime != nil) && !s.now.Before(s.expiresAt()) {
		return ctrl.Result{}, r.expire(ctx, s)
	}
	if s.env == nil {
		if s.claim.Status.Lab != "" {
			// The lab went away under the claim (deleted by hand): a lab is never replaced
			// behind a student's back, and a claim never gets a second one.
			s.refusedReason = labforgev1alpha1.ReasonLabLost
			s.refusedMessage = fmt.Sprintf("Lab %s was deleted while the claim held it", s.claim.Status.Lab)
			return ctrl.Result{}, nil
		}
		if err := r.bind(ctx, s); err != nil || s.env == nil {
			return ctrl.Result{}, err
		}
	} else if s.claim.Status.LaunchType == "" {
		// Bound by an earlier pass whose status write never happened (the operator died
		// right after the bind, or the write failed): say how, as that pass would have.
		s.launch = launchType(s.claim, s.env)
	}
	if c := meta.FindStatusCondition(s.env.Status.Conditions, labforgev1alpha1.ConditionReady); c != nil &&
		c.Status == metav1.ConditionFalse && c.Reason == labforgev1alpha1.ReasonNamespaceLost {
		// The lab's namespace was deleted under the student: the lab is gone for good.
		s.refusedReason = labforgev1alpha1.ReasonLabLost
		s.refusedMessage = fmt.Sprintf("Lab %s was lost: its namespace was deleted while the claim held it", s.env.Name)
		return ctrl.Result{}, nil
	}
	if stalled := meta.FindStatusCondition(s.env.Status.Conditions, labforgev1alpha1.ConditionStalled); stalled != nil &&
		stalled.Status == metav1.ConditionTrue {
		// The lab stopped trying (its bootstrap failed, it timed out, its template cannot
		// be built): say so rather than "booting" for ever. It clears if the lab recovers.
		// The reason only: the lab's own message may tell what its scenario breaks.
		s.refusedReason = labforgev1alpha1.ReasonLabFailed
		s.refusedMessage = fmt.Sprintf("Lab %s failed to become ready (%s); delete the claim to release it, a new claim gets a new lab",
			s.env.Name, stalled.Reason)
		return ctrl.Result{}, nil
	}
	s.labReady = meta.IsStatusConditionTrue(s.env.Status.Conditions, labforgev1alpha1.ConditionReady)
	if !s.labReady && !built(s.env) {
		return ctrl.Result{}, nil
	}
	// A lab still booting is handed over as soon as it is built (decision 39): the lab is
	// the student's already, and its Ready is then only the claim's status write away.
	if err := r.handOver(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	if s.labReady && s.handover != nil && s.pendingReason == "" {
		if err := r.observeKeys(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
	}
	return ctrl.Result{RequeueAfter: s.requeueAfter()}, nil
}

// built says whether a lab that is not Ready yet has all its objects, its PKI and its
// Service among them, and is on its way: booting, not failed for good nor being rebuilt.
func built(env *labforgev1alpha1.LabEnvironment) bool {
	if meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionStalled) {
		return false
	}
	c := meta.FindStatusCondition(env.Status.Conditions, labforgev1alpha1.ConditionVMsScheduled)
	return c != nil && c.Reason != labforgev1alpha1.ReasonProvisioning
}

// resolve finds the claim's pool or template, checks the claim may use it, and settles its
// duration. A bound claim reads neither: its lab's terms settle it (resolveBound).
func (r *Reconciler) resolve(ctx context.Context, s *scope) error {
	if s.env != nil {
		return r.resolveBound(ctx, s)
	}
	templateName := ""
	if ref := s.claim.Spec.PoolRef; ref != nil {
		pool := &labforgev1alpha1.LabPool{}
		if err := r.Client.Get(ctx, client.ObjectKey{Name: ref.Name}, pool); err != nil {
			if apierrors.IsNotFound(err) {
				s.pendingReason, s.pendingMessage = labforgev1alpha1.ReasonPoolNotFound, fmt.Sprintf("LabPool %s does not exist", ref.Name)
				return nil
			}
			return fmt.Errorf("reading LabPool %s: %w", ref.Name, err)
		}
		if ok, msg, err := r.admitted(ctx, pool, s.claim.Namespace); err != nil {
			return err
		} else if !ok {
			s.refusedReason, s.refusedMessage = labforgev1alpha1.ReasonNamespaceNotAllowed, msg
			return nil
		}
		templateName = pool.Spec.TemplateRef.Name
	} else {
		templateName = s.claim.Spec.TemplateRef.Name
	}
	tmpl := &labforgev1alpha1.LabTemplate{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: templateName}, tmpl); err != nil {
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("reading LabTemplate %s: %w", templateName, err)
		}
		s.pendingReason, s.pendingMessage = labforgev1alpha1.ReasonTemplateNotFound, fmt.Sprintf("LabTemplate %s does not exist", templateName)
		return nil
	}
	s.template = tmpl
	if s.env == nil && s.claim.Status.Lab == "" && s.claim.Spec.TemplateRef != nil {
		// A claim that names a template boots a lab of its own: only where the template
		// admits it (decision 53), as a pool admits its claims. Decided before the bind
		// only: a claim that had its lab (expired, or lost) says so whatever the template
		// admits now.
		if ok, msg, err := r.admits(ctx, "LabTemplate", tmpl.Name, "spec.claims.namespaceSelector", tmpl.Spec.Claims.NamespaceSelector, s.claim.Namespace); err != nil {
			return err
		} else if !ok {
			s.refusedReason, s.refusedMessage = labforgev1alpha1.ReasonNamespaceNotAllowed, msg
			return nil
		}
	}
	maximum, dflt := tmpl.Spec.Lifetime.Maximum.Duration, tmpl.Spec.Lifetime.Default.Duration
	s.duration = dflt
	if d := s.claim.Spec.Duration; d != nil {
		s.duration = d.Duration
	}
	if s.duration > maximum {
		if s.claim.Status.BoundTime != nil && s.claim.Status.ExpiresAt != nil {
			// An extension past the maximum is refused: the claim keeps its lab and
			// expiry, and says so (ExtensionRefused and a Warning event), so that a
			// student who asked for more time is not left guessing.
			kept := s.claim.Status.ExpiresAt.Sub(s.claim.Status.BoundTime.Time)
			s.extensionRefused = fmt.Sprintf("spec.duration %s is longer than LabTemplate %s allows (lifetime.maximum %s); the claim keeps its duration of %s and expires at %s",
				s.duration, templateName, maximum, kept, s.claim.Status.ExpiresAt.UTC().Format(time.RFC3339))
			s.duration = kept
			return nil
		}
		s.refusedReason = labforgev1alpha1.ReasonDurationTooLong
		s.refusedMessage = fmt.Sprintf("spec.duration %s is longer than LabTemplate %s allows (lifetime.maximum %s)", s.duration, templateName, maximum)
	}
	return nil
}

// admitted says whether a pool admits claims from a namespace. An unset selector admits
// none; an empty one admits all.
func (r *Reconciler) admitted(ctx context.Context, pool *labforgev1alpha1.LabPool, namespace string) (bool, string, error) {
	return r.admits(ctx, "LabPool", pool.Name, "spec.claimNamespaceSelector", pool.Spec.ClaimNamespaceSelector, namespace)
}

// expire ends the claim's lab at its expiry. The claim stays, Expired, so the student sees
// what happened.
func (r *Reconciler) expire(ctx context.Context, s *scope) error {
	s.expired = true
	if s.env != nil && s.env.DeletionTimestamp.IsZero() {
		if err := r.Client.Delete(ctx, s.env); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting the expired lab %s: %w", s.env.Name, err)
		}
	}
	// The kubeconfig's certificate has expired too; the key pair unlocks nothing any more.
	// Only the claim's own Secrets go, never one that merely has the name.
	for _, name := range []string{kubeconfigSecret(s.claim), sshSecret(s.claim)} {
		secret := &corev1.Secret{}
		err := r.Client.Get(ctx, client.ObjectKey{Namespace: s.claim.Namespace, Name: name}, secret)
		if apierrors.IsNotFound(err) || (err == nil && !metav1.IsControlledBy(secret, s.claim)) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading Secret %s/%s: %w", s.claim.Namespace, name, err)
		}
		if err := r.Client.Delete(ctx, secret, client.Preconditions{UID: &secret.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting Secret %s/%s: %w", s.claim.Namespace, name, err)
		}
	}
	return nil
}

// bind gives the claim a lab: for a pool, the oldest Ready unbound lab, first come first
// served; for a template, a lab booted just for it.
func (r *Reconciler) bind(ctx context.Context, s *scope) error {
	if s.claim.Spec.TemplateRef != nil {
		return r.bindCold(ctx, s)
	}
	pool := s.claim.Spec.PoolRef.Name
	var envs labforgev1alpha1.LabEnvironmentList
	// tryBind copies the lab it writes.
	if err := r.Client.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: pool}, readOnly); err != nil {
		return fmt.Errorf("listing the labs of LabPool %s: %w", pool, err)
	}
	free := freeLabs(envs.Items, pool)
	sort.Slice(free, func(i, j int) bool {
		a, b := free[i].Status.ReadyTime.Time, free[j].Status.ReadyTime.Time
		if !a.Equal(b) {
			return a.Before(b)
		}
		return free[i].Name < free[j].Name
	})
	position, err := r.placeInLine(ctx, s.claim, pool)
	if err != nil {
		return err
	}
	// Older claims take older labs: this claim may only take a lab past those its elders
	// will take, so a younger claim never jumps the line.
	for i := position; i < len(free); i++ {
		bound, err := r.tryBind(ctx, s, free[i])
		if err != nil {
			return err
		}
		if bound {
			return nil
		}
	}
	s.pendingReason = labforgev1alpha1.ReasonWaitingForLab
	s.queuePosition = reportedPosition(s.claim.Status.QueuePosition, int32(position+1))
	if s.queuePosition <= ExactPositions {
		s.pendingMessage = fmt.Sprintf("Waiting for a lab of LabPool %s: number %d in line", pool, s.queuePosition)
	} else {
		s.pendingMessage = fmt.Sprintf("Waiting for a lab of LabPool %s: number %d in line or better", pool, s.queuePosition)
	}
	return nil
}

// freeLabs returns the labs of envs that a claim of pool can take: the pool's, Ready,
// unbound and not being deleted.
func freeLabs(envs []labforgev1alpha1.LabEnvironment, pool string) []*labforgev1alpha1.LabEnvironment {
	var free []*labforgev1alpha1.LabEnvironment
	for i := range envs {
		env := &envs[i]
		if env.Spec.ClaimRef == nil && env.DeletionTimestamp.IsZero() && env.Spec.PoolRef != nil && env.Spec.PoolRef.Name == pool &&
			env.Status.ReadyTime != nil && meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionReady) {
			free = append(free, env)
		}
	}
	return free
}

// before says whether claim a comes before claim b in their pool's line: the older first,
// by namespace/name when they were created in the same second.
func before(a, b *labforgev1alpha1.LabClaim) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// ExactPositions is how far back in line a waiting claim's status.queuePosition is exact.
const ExactPositions = 10

// reportedPosition is the place in line a waiting claim's status gives, now that it is
// actual and said was. Further back than ExactPositions, what the status says stays until
// the claim has moved up to half of it: the status is then an upper bound within a factor
// of two. Every claim that leaves the line moves everyone behind it up one, and writing
// each of them each time would cost a write per waiting claim per bind, the square of the
// line's length, when the line is long because the host is already overloaded.
func reportedPosition(said, actual int32) int32 {
	if said > 0 && actual > ExactPositions && actual <= said && actual > said/2 {
		return said
	}
	return actual
}

// placeInLine counts the claims of the pool that came before this one and still wait.
func (r *Reconciler) placeInLine(ctx context.Context, claim *labforgev1alpha1.LabClaim, pool string) (int, error) {
	var claims labforgev1alpha1.LabClaimList
	if err := r.Client.List(ctx, &claims, client.MatchingFields{index.ClaimByPool: pool}, readOnly); err != nil {
		return 0, fmt.Errorf("listing the claims of LabPool %s: %w", pool, err)
	}
	position := 0
	for _, c := range claims.Items {
		if c.UID == claim.UID || !inLine(&c) {
			continue
		}
		if before(&c, claim) {
			position++
		}
	}
	return position, nil
}

// tryBind writes the claim into the lab under optimistic concurrency: if anyone changed the
// lab since it was read, the write fails and the lab is re-read from the API server (not
// the cache) before one more try. Two claims can never hold one lab.
//
// A pass walks a list of free labs read from the cache at its start; in a burst the
// process's other workers bind those labs meanwhile. Before writing, it skips a lab
// another of its workers is binding or has bound (r.binding, r.binds), and re-reads the
// candidate from the cache: a write from a stale copy can only fail, and each failure
// costs a conflict and a read from the API server (a claim of a burst of 50 walked past
// seven labs so, half a second).
func (r *Reconciler) tryBind(ctx context.Context, s *scope, candidate *labforgev1alpha1.LabEnvironment) (bool, error) {
	if _, busy := r.binding.LoadOrStore(candidate.Name, s.claim.UID); busy {
		return false, nil
	}
	defer r.binding.Delete(candidate.Name)
	// After the reservation: a worker that bound the lab stored it in r.binds before it
	// let go of its own.
	if r.boundHere(candidate.Name) {
		return false, nil
	}
	cached := &labforgev1alpha1.LabEnvironment{}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(candidate), cached, client.UnsafeDisableDeepCopy); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	env := cached.DeepCopy()
	var terms *labforgev1alpha1.ClaimTerms
	for attempt := 0; attempt < 2; attempt++ {
		if env.Spec.ClaimRef != nil || !env.DeletionTimestamp.IsZero() || !meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionReady) {
			return false, nil
		}
		if terms == nil {
			var err error
			if terms, err = r.termsFor(ctx, env, s.template, s.now); err != nil {
				return false, err
			}
		}
		env.Spec.ClaimRef = &labforgev1alpha1.ClaimReference{Namespace: s.claim.Namespace, Name: s.claim.Name, UID: s.claim.UID}
		// The claim's lifetime and login are frozen in the same write (decision 57).
		env.Spec.Terms = terms.DeepCopy()
		// The lab leaves its pool in the same write: deleting the pool must not take a
		// student's lab with it.
		env.OwnerReferences = withoutPool(env.OwnerReferences)
		err := r.Client.Update(ctx, env)
		if err == nil {
			r.binds.Store(s.claim.UID, env.Name)
			s.env, s.boundNow = env, true
			s.launch = launchType(s.claim, env)
			s.bound(env)
			bindsTotal.WithLabelValues(s.claim.Spec.PoolRef.Name, "bound").Inc()
			return true, nil
		}
		if !apierrors.IsConflict(err) {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, fmt.Errorf("binding LabEnvironment %s: %w", env.Name, err)
		}
		bindsTotal.WithLabelValues(s.claim.Spec.PoolRef.Name, "conflict").Inc()
		env = &labforgev1alpha1.LabEnvironment{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(candidate), env); err != nil {
			return false, client.IgnoreNotFound(err)
		}
	}
	return false, nil
}

// boundHere says whether this process bound lab to a claim whose next pass has not seen
// the cache show it yet (r.binds).
func (r *Reconciler) boundHere(lab string) bool {
	found := false
	r.binds.Range(func(_, bound any) bool {
		found = bound.(string) == lab
		return !found
	})
	return found
}

// launchType says how env served claim. A lab booted for a template claim is Cold. A
// pool's lab is Warm when it was Ready before the claim came: the claim never had to wait
// in line, or the lab is older than the claim (timestamps have second precision: a claim
// that waited behind others that jumped the line still took a lab the pool had before it
// came).
func launchType(claim *labforgev1alpha1.LabClaim, env *labforgev1alpha1.LabEnvironment) labforgev1alpha1.LaunchType {
	if claim.Spec.TemplateRef != nil {
		return labforgev1alpha1.LaunchCold
	}
	if claim.Status.QueuePosition == 0 || env.CreationTimestamp.Before(&claim.CreationTimestamp) {
		return labforgev1alpha1.LaunchWarm
	}
	return labforgev1alpha1.LaunchCold
}

// withoutPool returns refs without the owner reference of a LabPool.
func withoutPool(refs []metav1.OwnerReference) []metav1.OwnerReference {
	kept := make([]metav1.OwnerReference, 0, len(refs))
	for _, r := range refs {
		if r.Kind != "LabPool" || r.APIVersion != labforgev1alpha1.GroupVersion.String() {
			kept = append(kept, r)
		}
	}
	return kept
}

// bindCold creates a lab for a claim that names a template, within the template's caps
// (reserveColdLab). The lab is born bound.
func (r *Reconciler) bindCold(ctx context.Context, s *scope) error {
	if ok, err := r.reserveColdLab(ctx, s); err != nil || !ok {
		return err
	}
	env := &labforgev1alpha1.LabEnvironment{
		ObjectMeta: metav1.ObjectMeta{
			Name: coldLabName(s.claim),
			Labels: map[string]string{
				labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue,
				labforgev1alpha1.LabelTemplate:  s.claim.Spec.TemplateRef.Name,
			},
			Finalizers: []string{labforgev1alpha1.LabEnvironmentFinalizer},
		},
		Spec: labforgev1alpha1.LabEnvironmentSpec{
			TemplateRef: *s.claim.Spec.TemplateRef,
			ClaimRef:    &labforgev1alpha1.ClaimReference{Namespace: s.claim.Namespace, Name: s.claim.Name, UID: s.claim.UID},
			// The lab has no snapshot yet: it is built from this template, as it is now.
			Terms: chooseTerms(s.template, nil, s.now),
		},
	}
	if err := r.Client.Create(ctx, env); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// Created by an earlier pass the cache has not shown yet: remember it, so the
			// next pass asks the API server for it (findLaggingLab).
			r.binds.Store(s.claim.UID, env.Name)
			return nil
		}
		r.coldLabs.CreationFailed(env.Spec.TemplateRef.Name, env.Name)
		return fmt.Errorf("creating a lab for LabClaim %s/%s: %w", s.claim.Namespace, s.claim.Name, err)
	}
	r.binds.Store(s.claim.UID, env.Name)
	s.env, s.boundNow, s.launch = env, true, labforgev1alpha1.LaunchCold
	s.bound(env)
	return nil
}

// bound holds the claim this pass bound to env to the terms the bind recorded.
func (s *scope) bound(env *labforgev1alpha1.LabEnvironment) {
	s.terms = env.Spec.Terms
	s.applyTerms(env.Spec.TemplateRef.Name)
}

// expiresAt is when the claim's lab ends: its duration after the bind.
func (s *scope) expiresAt() time.Time {
	bound := s.now
	switch {
	case s.terms != nil:
		bound = s.terms.BoundTime.Time
	case s.claim.Status.BoundTime != nil:
		bound = s.claim.Status.BoundTime.Time
	}
	return bound.Add(s.duration)
}
