// Package labpool holds the LabPool controller: it keeps a pool's warm labs booted and
// unclaimed, replaces stale ones, and stops refilling after repeated boot failures.
package labpool

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/expectations"
	"github.com/labforge/labforge/internal/index"
	"github.com/labforge/labforge/internal/ownership"
)

// ControllerName names the controller in logs, events and metrics.
const ControllerName = "labpool"

// DefaultFailureThreshold is how many labs of the current template may fail in a row
// before the pool stops refilling.
const DefaultFailureThreshold = 3

// Reconciler keeps pools filled.
type Reconciler struct {
	Client       client.Client
	Recorder     events.EventRecorder
	Expectations *expectations.Store
	Clock        clock.PassiveClock
	// FailureThreshold is DefaultFailureThreshold if zero.
	FailureThreshold int
	// ClaimsFirst is how long at most a pool's refill waits behind a few claims being
	// served from it: DefaultClaimsFirst if zero, no wait if negative. More claims in
	// flight buy more time: ClaimsFirstPerClaim each, up to MaxClaimsFirst.
	ClaimsFirst time.Duration

	// StatusInterval is how often at most a pool's status is rewritten when only its
	// counts changed: DefaultStatusInterval if zero, at every change if negative.
	StatusInterval time.Duration

	statusMu sync.Mutex
	// statusWritten holds, by pool, when this process last wrote its status.
	statusWritten map[string]time.Time

	deferMu sync.Mutex
	// deferring holds, by pool, since when its refill waits behind claims and the most
	// claims it has seen in flight meanwhile.
	deferring map[string]deferral
}

type deferral struct {
	since time.Time
	peak  int
}

// DefaultClaimsFirst is how long at most a refill waits behind claims in flight.
//
// A claim served from a Ready lab is a few writes that a student waits for; a refill is
// dozens of writes per lab (its namespace, guards, PKI, VMs, and what the host cluster's
// controllers do in reply) that nobody waits for. On a small control plane both compete
// for the same CPU, and a burst of claims starts a burst of refills: the claims went 10x
// slower. So a pool's creates wait while claims are in flight, for this long at most, then
// go ahead whatever comes: under a steady stream of claims the pool still refills twice a
// second. A burst of many claims takes longer to serve, so the wait grows with the most
// claims in flight during it (ClaimsFirstPerClaim each, about twice what serving one costs
// on a two-core control plane), up to MaxClaimsFirst: 50 claims at once were all Ready in
// 1.4 s instead of 2.9 s once their refill waited for them. Only while the pool's Ready
// labs are enough for the claims waiting: claims beyond them wait for the refill, and
// holding it back longer would only make them wait longer (a steady overload served
// a quarter fewer claims so).
const (
	DefaultClaimsFirst  = 500 * time.Millisecond
	ClaimsFirstPerClaim = 60 * time.Millisecond
	MaxClaimsFirst      = 3 * time.Second
)

// DefaultStatusInterval is how often at most a pool's status is rewritten for its counts
// alone. A busy pool's counts move with every bind, create and boot: several writes per
// claim, each one more request on the API server that claims and refills compete for. The
// counts may lag by this much; a change of condition (Ready, Stalled), of the observed
// generation or of the selector is written at once, and the labforge_pool_labs gauges
// are always current.
const DefaultStatusInterval = time.Second

// statusHold returns how long the counts-only status write of pool should still wait;
// zero to write now.
func (r *Reconciler) statusHold(pool string) time.Duration {
	interval := r.StatusInterval
	if interval == 0 {
		interval = DefaultStatusInterval
	}
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	last, ok := r.statusWritten[pool]
	if !ok || interval < 0 {
		return 0
	}
	return max(0, interval-r.Clock.Now().Sub(last))
}

// wroteStatus records that this process just wrote pool's status.
func (r *Reconciler) wroteStatus(pool string) {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	if r.statusWritten == nil {
		r.statusWritten = map[string]time.Time{}
	}
	r.statusWritten[pool] = r.Clock.Now()
}

// forget drops what this process remembers of a deleted pool.
func (r *Reconciler) forget(pool string) {
	r.statusMu.Lock()
	delete(r.statusWritten, pool)
	r.statusMu.Unlock()
	r.deferMu.Lock()
	delete(r.deferring, pool)
	r.deferMu.Unlock()
}

// countsOnly says whether two statuses differ in their counts (and the messages that
// state them) alone.
func countsOnly(a, b labforgev1alpha1.LabPoolStatus) bool {
	strip := func(st labforgev1alpha1.LabPoolStatus) labforgev1alpha1.LabPoolStatus {
		out := labforgev1alpha1.LabPoolStatus{ObservedGeneration: st.ObservedGeneration, Selector: st.Selector}
		// The rule, its window and the next change are news; the desired count moves
		// with the claimed labs under a floor, like the other counts, and the observed
		// boot time (and the warm-up it gives) with the labs that become Ready: they
		// ride on the count writes a boot makes anyway, never a write per lab of their
		// own.
		if st.Scaling != nil {
			out.Scaling = st.Scaling.DeepCopy()
			out.Scaling.Desired = 0
			out.Scaling.BootTime, out.Scaling.WarmUp = nil, nil
		}
		for _, c := range st.Conditions {
			c.Message, c.LastTransitionTime = "", metav1.Time{}
			out.Conditions = append(out.Conditions, c)
		}
		return out
	}
	return equality.Semantic.DeepEqual(strip(a), strip(b))
}

// claimsFirst returns how long the pool's creates should still wait behind inFlight
// claims; zero to create now. outrun says claims wait beyond the pool's Ready labs: the
// wait is then never longer than ClaimsFirst.
func (r *Reconciler) claimsFirst(pool string, inFlight int, outrun bool) time.Duration {
	r.deferMu.Lock()
	defer r.deferMu.Unlock()
	limit := r.ClaimsFirst
	if limit == 0 {
		limit = DefaultClaimsFirst
	}
	d, deferring := r.deferring[pool]
	if inFlight == 0 || limit < 0 {
		delete(r.deferring, pool)
		return 0
	}
	now := r.Clock.Now()
	if !deferring {
		if r.deferring == nil {
			r.deferring = map[string]deferral{}
		}
		d.since = now
	}
	d.peak = max(d.peak, inFlight)
	r.deferring[pool] = d
	if !outrun {
		limit = max(limit, min(MaxClaimsFirst, time.Duration(d.peak)*ClaimsFirstPerClaim))
	}
	if waited := now.Sub(d.since); waited < limit {
		return limit - waited
	}
	delete(r.deferring, pool)
	return 0
}

// +kubebuilder:rbac:groups=labforge.dev,resources=labpools,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=labforge.dev,resources=labpools/status,verbs=patch
// +kubebuilder:rbac:groups=labforge.dev,resources=labpools/finalizers,verbs=update
// +kubebuilder:rbac:groups=labforge.dev,resources=labenvironments,verbs=get;list;watch;create;delete;patch
// +kubebuilder:rbac:groups=labforge.dev,resources=labclaims,verbs=get;list;watch
// +kubebuilder:rbac:groups=labforge.dev,resources=labtemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one pool's labs toward what its spec and its waiting claims ask.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	pool := &labforgev1alpha1.LabPool{}
	if err := r.Client.Get(ctx, req.NamespacedName, pool); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	s, err := r.observe(ctx, pool)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !pool.DeletionTimestamp.IsZero() {
		recordGauges(pool.Name, Counts{}, true)
		r.forget(pool.Name)
		return ctrl.Result{}, r.reconcileDelete(ctx, s)
	}
	recordGauges(pool.Name, s.plan.Counts, false)
	if !controllerutil.ContainsFinalizer(pool, labforgev1alpha1.LabPoolFinalizer) {
		patch := client.MergeFrom(pool.DeepCopy())
		controllerutil.AddFinalizer(pool, labforgev1alpha1.LabPoolFinalizer)
		if err := r.Client.Patch(ctx, pool, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer to LabPool %s: %w", pool.Name, err)
		}
	}
	actErr := errors.Join(r.reconcileOwnership(ctx, s), r.act(ctx, s))
	hold, err := r.writeStatus(ctx, s, actErr == nil)
	if err != nil {
		actErr = errors.Join(actErr, err)
	}
	// The soonest of the held creates, the held status write and the next window edge:
	// the calendar changes the pool's size without any watch event to say so.
	requeue := s.deferCreates
	for _, d := range []time.Duration{hold, s.untilNextChange()} {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, actErr
}

// reconcileDelete deletes the pool's unclaimed labs and lets the pool go. Claimed labs
// keep running until their claims end.
func (r *Reconciler) reconcileDelete(ctx context.Context, s *scope) error {
	var errs []error
	changed := false
	for _, env := range s.envs {
		if env.Spec.ClaimRef == nil && env.DeletionTimestamp.IsZero() {
			gone, err := r.deletePlanned(ctx, env)
			errs = append(errs, err)
			changed = changed || (err == nil && !gone)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("deleting the unclaimed labs of LabPool %s: %w", s.pool.Name, err)
	}
	if changed {
		// A lab changed since the cache showed it (a claim bound it, say): the pool
		// keeps its finalizer until a pass sees every lab as it is. The change's own
		// watch event brings that pass.
		return nil
	}
	r.Expectations.Forget(s.pool.Name)
	if controllerutil.ContainsFinalizer(s.pool, labforgev1alpha1.LabPoolFinalizer) {
		patch := client.MergeFrom(s.pool.DeepCopy())
		controllerutil.RemoveFinalizer(s.pool, labforgev1alpha1.LabPoolFinalizer)
		return client.IgnoreNotFound(r.Client.Patch(ctx, s.pool, patch))
	}
	return nil
}

// act carries out the plan: deletes, then creates gated on expectations.
func (r *Reconciler) act(ctx context.Context, s *scope) error {
	log := ctrl.LoggerFrom(ctx)
	var errs []error
	var deleted []string
	for _, d := range s.plan.Delete {
		env := s.byName[d.Name]
		r.Expectations.ExpectDeletions(s.pool.Name, d.Name)
		gone, err := r.deletePlanned(ctx, env)
		if err != nil || !gone {
			r.Expectations.LowerDeletion(s.pool.Name, d.Name)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if gone {
			deleted = append(deleted, d.Name+" ("+d.Reason+")")
		}
	}
	if len(deleted) > 0 {
		log.Info("Deleted labs of LabPool", "labs", deleted)
	}
	created := 0
	if s.template == nil {
		return errors.Join(errs...)
	}
	if s.plan.Create > 0 {
		if s.deferCreates = r.claimsFirst(s.pool.Name, s.inFlight, s.plan.Counts.Unserved() > 0); s.deferCreates > 0 {
			log.V(1).Info("Refill waits behind the claims in flight", "claims", s.inFlight, "creates", s.plan.Create, "for", s.deferCreates)
			return errors.Join(errs...)
		}
	}
	for _, name := range freeNames(s, int(s.plan.Create)) {
		env := r.newLab(s, name)
		r.Expectations.ExpectCreations(s.pool.Name, env.Name)
		if err := r.Client.Create(ctx, env); err != nil {
			if apierrors.IsAlreadyExists(err) {
				// Another manager (or a pass the cache has not caught up with) made it.
				continue
			}
			errs = append(errs, fmt.Errorf("creating a lab for LabPool %s: %w", s.pool.Name, err))
			break
		}
		created++
	}
	if created > 0 {
		r.Recorder.Eventf(s.pool, nil, corev1.EventTypeNormal, "CreatedLabs", "Scale", "Created %s (%d ready, %d booting, %s waiting)",
			count(int32(created), "lab"), s.plan.Counts.Ready, s.plan.Counts.Booting, count(s.plan.Counts.Unserved(), "claim"))
		log.Info("Created labs for LabPool", "count", created)
	}
	return errors.Join(errs...)
}

// deletePlanned deletes a lab the pool chose from its cache, if it is still what the
// cache showed: the preconditions (UID and resourceVersion) make the API server refuse
// the delete if the lab changed since (Kubernetes API conventions, "Concurrency Control
// and Consistency"; metav1.Preconditions). The change that matters is a bind: a claim
// writes itself into the lab under an optimistic lock, and a delete planned from the
// version before it would take the student's lab away (the claim would report LabLost).
// A refused delete is no error: the lab's change brings the pool a watch event, and the
// next pass plans again from what it shows. gone says whether the lab is deleted (or
// already gone).
func (r *Reconciler) deletePlanned(ctx context.Context, env *labforgev1alpha1.LabEnvironment) (gone bool, err error) {
	uid, rv := env.UID, env.ResourceVersion
	err = r.Client.Delete(ctx, env, client.Preconditions{UID: &uid, ResourceVersion: &rv})
	switch {
	case err == nil, apierrors.IsNotFound(err):
		return true, nil
	case apierrors.IsConflict(err):
		ctrl.LoggerFrom(ctx).V(1).Info("Kept a LabEnvironment that changed since the pool planned its deletion", "lab", env.Name)
		return false, nil
	default:
		return false, fmt.Errorf("deleting LabEnvironment %s: %w", env.Name, err)
	}
}

// freeNames returns n lab names <pool>-<ordinal>, the lowest ordinals no lab of the pool
// holds. Names are deterministic, like a StatefulSet's: two managers that see the same
// pool pick the same names, so their creates collide (AlreadyExists) instead of
// over-filling the pool.
func freeNames(s *scope, n int) []string {
	used := map[string]bool{}
	for _, env := range s.envs {
		used[env.Name] = true
	}
	names := make([]string, 0, n)
	for i := 0; len(names) < n; i++ {
		name := s.pool.Name + "-" + strconv.Itoa(i)
		if !used[name] {
			names = append(names, name)
		}
	}
	return names
}

// newLab returns a new LabEnvironment of the pool, controlled by the pool until a claim
// takes it. It carries the environment finalizer from birth, which saves the environment
// controller a write.
func (r *Reconciler) newLab(s *scope, name string) *labforgev1alpha1.LabEnvironment {
	return &labforgev1alpha1.LabEnvironment{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			OwnerReferences: []metav1.OwnerReference{ownership.ControllerReference("LabPool", s.pool)},
			Labels: map[string]string{
				labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue,
				labforgev1alpha1.LabelPool:      s.pool.Name,
				labforgev1alpha1.LabelTemplate:  s.pool.Spec.TemplateRef.Name,
			},
			Finalizers: []string{labforgev1alpha1.LabEnvironmentFinalizer},
		},
		Spec: labforgev1alpha1.LabEnvironmentSpec{
			TemplateRef: s.pool.Spec.TemplateRef,
			PoolRef:     &labforgev1alpha1.LocalObjectReference{Name: s.pool.Name},
		},
	}
}

// SetupWithManager registers the controller and its watches (its indexes: index.Setup).
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.FailureThreshold == 0 {
		r.FailureThreshold = DefaultFailureThreshold
	}
	if r.Expectations == nil {
		r.Expectations = expectations.New(r.Clock, 0)
	}
	byPoolLabel := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if name := o.GetLabels()[labforgev1alpha1.LabelPool]; name != "" {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
		}
		return nil
	})
	byClaimPool := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if ref := o.(*labforgev1alpha1.LabClaim).Spec.PoolRef; ref != nil {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: ref.Name}}}
		}
		return nil
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&labforgev1alpha1.LabPool{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}, deletionPredicate()))).
		Watches(&labforgev1alpha1.LabEnvironment{}, byPoolLabel).
		Watches(&labforgev1alpha1.LabClaim{}, byClaimPool).
		Watches(&labforgev1alpha1.LabTemplate{}, handler.EnqueueRequestsFromMapFunc(r.poolsOfTemplate)).
		Complete(r)
}

// deletionPredicate passes updates that start a deletion (finalizer work to do).
func deletionPredicate() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool { return !e.ObjectNew.GetDeletionTimestamp().IsZero() }}
}

func (r *Reconciler) poolsOfTemplate(ctx context.Context, o client.Object) []reconcile.Request {
	var list labforgev1alpha1.LabPoolList
	if err := r.Client.List(ctx, &list, client.MatchingFields{index.PoolByTemplate: o.GetName()}); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list LabPools of LabTemplate", "template", o.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, p := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Name: p.Name}})
	}
	return reqs
}

// writeStatus writes the pool's status when it changed.
func (r *Reconciler) writeStatus(ctx context.Context, s *scope, succeeded bool) (time.Duration, error) {
	before := s.pool.DeepCopy()
	setStatus(s, succeeded)
	if equality.Semantic.DeepEqual(before.Status, s.pool.Status) {
		return 0, nil
	}
	if countsOnly(before.Status, s.pool.Status) {
		if hold := r.statusHold(s.pool.Name); hold > 0 {
			return hold, nil
		}
	}
	if err := r.Client.Status().Patch(ctx, s.pool, client.MergeFrom(before)); err != nil {
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		return 0, fmt.Errorf("patching LabPool %s status: %w", s.pool.Name, err)
	}
	r.wroteStatus(s.pool.Name)
	r.recordTransitions(before, s.pool)
	return 0, nil
}
