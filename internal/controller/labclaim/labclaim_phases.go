package labclaim

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// A live claim's pass (decision 81): Reconcile finds the claim's lab (findLab), runs the
// phases below in the order they are listed, then computes the status from the scope and
// writes it once (writeStatus). A claim being deleted runs reconcileDelete instead.
// Cluster API's cluster_controller_phases.go is the model; unlike its phases, which are
// independent of each other and all run, each of these needs what the ones before it
// found (no handover without a lab, no lab without a pool), so the first error, or the
// first phase that settles the pass, ends it.

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
	// exposure is what the pass exposed of the lab's own Services (reconcileExposure);
	// nil when it did not look.
	exposure *exposure
	// stopped: a phase has nothing left to do until an event brings the claim back (its
	// lab built, the cache showing a lab it created), and says nothing more of it.
	stopped bool
	// solution is what this pass learnt of the lab's solution checks; nil without any.
	solution *solutionScope
}

// settled says whether the pass is over: its outcome is decided (the claim expired, is
// refused or waits) or a phase stopped it.
func (s *scope) settled() bool {
	return s.stopped || s.expired || s.refusedReason != "" || s.pendingReason != ""
}

// phase is one step of a live claim's pass. It records what it observed and decided on
// the scope (the status setters turn that into the status), and returns when the claim
// must be looked at again without an event (zero for never), or an error.
type phase func(ctx context.Context, s *scope) (ctrl.Result, error)

// phases are the steps of a live claim's pass, in the order they run. Adding one is a
// line here, with the phase in a file of its own; a phase that owns a part of the status
// adds its setter to statusSetters (labclaim_status.go).
func (r *Reconciler) phases() []phase {
	return []phase{
		r.reconcileExpired,  // an Expired claim stays so, whatever its spec says now
		r.reconcileRequest,  // its pool or template, who may claim, its duration
		r.reconcileExpiry,   // its duration ran out: its lab goes
		r.reconcileBind,     // its lab: the one it holds, or one bound now
		r.reconcileLab,      // a lab lost or failed for good is the end of it
		r.reconcileHandover, // NodePorts, keys and kubeconfig, once the lab is built
		r.reconcileKeys,     // Ready once KubeVirt has put the keys in every VM
		r.reconcileExposed,  // the lab's own NodePort and LoadBalancer Services, on host NodePorts
	}
}

// reconcileNormal runs the phases until one fails or settles the pass, and returns the
// soonest requeue any asked for.
func (r *Reconciler) reconcileNormal(ctx context.Context, s *scope) (ctrl.Result, error) {
	var result ctrl.Result
	for _, run := range r.phases() {
		res, err := run(ctx, s)
		if err != nil {
			return ctrl.Result{}, err
		}
		result = soonest(result, res)
		if s.settled() {
			break
		}
	}
	return result, nil
}

// soonest returns the result that requeues sooner, a zero RequeueAfter meaning never.
func soonest(a, b ctrl.Result) ctrl.Result {
	switch {
	case a.RequeueAfter == 0:
		return b
	case b.RequeueAfter == 0 || a.RequeueAfter <= b.RequeueAfter:
		return a
	}
	return b
}

// reconcileExpired keeps an Expired claim expired: the lab and its terms are gone, and
// neither the template as it is now nor a longer spec.duration may bring it back to life.
func (r *Reconciler) reconcileExpired(ctx context.Context, s *scope) (ctrl.Result, error) {
	if !meta.IsStatusConditionTrue(s.claim.Status.Conditions, labforgev1alpha1.ConditionExpired) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.expire(ctx, s)
}

// reconcileRequest finds the claim's pool or template, checks the claim may use it, and
// settles its duration. A bound claim reads neither: its lab's terms settle it
// (resolveBound).
func (r *Reconciler) reconcileRequest(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.env != nil {
		return ctrl.Result{}, r.resolveBound(ctx, s)
	}
	templateName, err := r.resolvePool(ctx, s)
	if err != nil || templateName == "" {
		return ctrl.Result{}, err
	}
	tmpl := &labforgev1alpha1.LabTemplate{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: templateName}, tmpl); err != nil {
		if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("reading LabTemplate %s: %w", templateName, err)
		}
		s.pendingReason, s.pendingMessage = labforgev1alpha1.ReasonTemplateNotFound, fmt.Sprintf("LabTemplate %s does not exist", templateName)
		return ctrl.Result{}, nil
	}
	s.template = tmpl
	if ok, err := r.templateAdmits(ctx, s); err != nil || !ok {
		return ctrl.Result{}, err
	}
	s.settleDuration(tmpl)
	return ctrl.Result{}, nil
}

// reconcileExpiry ends the lab of a claim whose duration ran out.
func (r *Reconciler) reconcileExpiry(ctx context.Context, s *scope) (ctrl.Result, error) {
	if (s.terms != nil || s.claim.Status.BoundTime != nil) && !s.now.Before(s.expiresAt()) {
		return ctrl.Result{}, r.expire(ctx, s)
	}
	return ctrl.Result{}, nil
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

// reconcileBind gives the claim its lab: the one findLab found, or one bound now (bind,
// where the ledger says which). A claim that waits in line, or whose lab the cache does
// not show yet, stops here.
func (r *Reconciler) reconcileBind(ctx context.Context, s *scope) (ctrl.Result, error) {
	if s.env != nil {
		if s.claim.Status.LaunchType == "" {
			// Bound by an earlier pass whose status write never happened (the operator died
			// right after the bind, or the write failed): say how, as that pass would have.
			s.launch = launchType(s.claim, s.env)
		}
		return ctrl.Result{}, nil
	}
	if s.claim.Status.Lab != "" {
		// The lab went away under the claim (deleted by hand): a lab is never replaced
		// behind a student's back, and a claim never gets a second one.
		s.refusedReason = labforgev1alpha1.ReasonLabLost
		s.refusedMessage = fmt.Sprintf("Lab %s was deleted while the claim held it", s.claim.Status.Lab)
		return ctrl.Result{}, nil
	}
	if err := r.bind(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	s.stopped = s.env == nil
	return ctrl.Result{}, nil
}

// reconcileLab ends the hopes of a claim whose lab is lost for good or stopped trying.
func (r *Reconciler) reconcileLab(_ context.Context, s *scope) (ctrl.Result, error) {
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
	}
	return ctrl.Result{}, nil
}

// reconcileHandover hands the lab over as soon as it is built, Ready or not (decision
// 39): the lab is the student's already, and its Ready is then only the claim's status
// write away. From then on the claim is looked at again at its expiry.
func (r *Reconciler) reconcileHandover(ctx context.Context, s *scope) (ctrl.Result, error) {
	s.labReady = meta.IsStatusConditionTrue(s.env.Status.Conditions, labforgev1alpha1.ConditionReady)
	if !s.labReady && !built(s.env) {
		s.stopped = true // the lab's own events bring the claim back
		return ctrl.Result{}, nil
	}
	if err := r.handOver(ctx, s); err != nil {
		return ctrl.Result{}, err
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

// reconcileKeys holds the claim of a Ready lab that was handed over until KubeVirt says
// the student's keys are in every VM (observeKeys).
func (r *Reconciler) reconcileKeys(ctx context.Context, s *scope) (ctrl.Result, error) {
	if !s.labReady || s.handover == nil {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.observeKeys(ctx, s)
}
