// Package labclaim holds the LabClaim controller: it binds a claim to a lab (the oldest
// Ready unbound lab of its pool, first come first served, or a lab booted just for it),
// hands the lab over to the student, and ends it at expiry or when the claim is deleted.
package labclaim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/expectations"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/index"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/internal/solution"
	"github.com/labforge/labforge/internal/ssa"
)

// ControllerName names the controller in logs, events, metrics and as the field manager.
const ControllerName = "labclaim"

// readOnly lists straight from the cache, without the deep copy of every object a List
// makes by default: for lists that are only read, on paths that run for every event of
// every lab of a pool (a pool of a thousand labs copied a thousand labs per event). What
// such a list returns must never be written to, or handed to a write: copy first.
var readOnly = client.UnsafeDisableDeepCopy

// Reconciler serves LabClaims.
type Reconciler struct {
	Client    client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	Applier   *ssa.Applier
	// Host is the host cluster's network: where students reach their labs.
	Host  *hostcluster.Host
	Clock clock.PassiveClock
	// Prover signs the claim's Secrets and checks the proof on one that lost its owner
	// (adoptSecret): keyed with the operator's own key.
	Prover *ownership.Prover
	// MaxConcurrentReconciles is how many claims are worked on at once; 16 if zero. A
	// claim's pass mostly waits on the API server, and a burst of claims is what students
	// wait for.
	MaxConcurrentReconciles int
	// Checks evaluates the solution checks of claimed labs (labclaim_checks.go); nil
	// leaves every claim without status.checks and Solved.
	Checks *solution.Evaluator

	// binds remembers, by claim UID, the lab this process bound each claim to, until the
	// LabEnvironment cache shows the bind (see findLaggingLab).
	binds sync.Map
	// binding holds, by lab name, the claim UID of each bind this process has in flight,
	// so that its other workers try another lab instead of failing the same write (see
	// tryBind).
	binding sync.Map
	// boundStatus remembers, by claim UID, the claims whose bind this process wrote into
	// their status, until the LabClaim cache shows it (see cacheLags).
	boundStatus sync.Map
	// released remembers the labs this process deleted because their claim was gone,
	// until the LabEnvironment cache shows them deleting (see deleteOrphanedLabs).
	released releasedLabs
	// coldMu makes counting a template's labs against its caps and expecting the lab a
	// claim creates one step; coldLabs holds, by template, the labs created for claims that
	// the cache does not show yet (see reserveColdLab).
	coldMu   sync.Mutex
	coldLabs *expectations.Store
}

// releasedLabs is a set of LabEnvironment UIDs. A gone claim is reconciled once for its
// own delete event and again for each of its Secrets the garbage collector deletes, often
// before the cache shows its lab deleting: without the set each of those passes read the
// claim from the API server, deleted the lab again and reported it again. It is bounded:
// past maxReleasedLabs entries (labs whose deletion this process never saw, because it
// finished before a pass looked) it is emptied, which at worst repeats one delete.
type releasedLabs struct {
	mu   sync.Mutex
	uids map[types.UID]struct{}
}

const maxReleasedLabs = 1024

func (l *releasedLabs) add(uid types.UID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.uids == nil || len(l.uids) >= maxReleasedLabs {
		l.uids = map[types.UID]struct{}{}
	}
	l.uids[uid] = struct{}{}
}

func (l *releasedLabs) has(uid types.UID) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.uids[uid]
	return ok
}

func (l *releasedLabs) forget(uid types.UID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.uids, uid)
}

// +kubebuilder:rbac:groups=labforge.dev,resources=labclaims,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=labforge.dev,resources=labclaims/status,verbs=patch
// +kubebuilder:rbac:groups=labforge.dev,resources=labclaims/finalizers,verbs=update
// +kubebuilder:rbac:groups=kubevirt.io,resources=virtualmachineinstances,verbs=get;list;watch
// +kubebuilder:rbac:groups=labforge.dev,resources=labenvironments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=labforge.dev,resources=labpools;labtemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile serves one claim.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	claim := &labforgev1alpha1.LabClaim{}
	if err := r.Client.Get(ctx, req.NamespacedName, claim); err != nil {
		if apierrors.IsNotFound(err) {
			r.stopChecks(req.NamespacedName)
			return ctrl.Result{}, r.deleteOrphanedLabs(ctx, req.NamespacedName, "")
		}
		return ctrl.Result{}, err
	}
	if r.cacheLags(claim) {
		// The event of the status write brings the claim back, as written.
		ctrl.LoggerFrom(ctx).V(1).Info("Waiting for the cache to show the claim's bound status")
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	// Labs of an earlier claim of the same name, deleted while the operator was away.
	if err := r.deleteOrphanedLabs(ctx, req.NamespacedName, claim.UID); err != nil {
		return ctrl.Result{}, err
	}
	s := &scope{claim: claim, now: r.Clock.Now()}
	if err := r.findLab(ctx, s); err != nil {
		return ctrl.Result{}, err
	}
	if !claim.DeletionTimestamp.IsZero() {
		r.stopChecks(req.NamespacedName)
		return ctrl.Result{}, r.reconcileDelete(ctx, s)
	}
	result, err := r.reconcileNormal(ctx, s)
	if err == nil {
		err = r.observeChecks(ctx, s)
	}
	if statusErr := r.writeStatus(ctx, s, err == nil); statusErr != nil {
		err = errors.Join(err, statusErr)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return result, nil
}

// reconcileDelete deletes the lab of a claim held in deletion by someone else's finalizer
// (and removes the finalizer earlier labforge versions added). The lab's own finalizer
// tears it down; the claim's Secrets go with the claim (owner references).
func (r *Reconciler) reconcileDelete(ctx context.Context, s *scope) error {
	if s.env == nil {
		if err := r.findUncachedLab(ctx, s); err != nil {
			return err
		}
	}
	if s.env != nil && s.env.DeletionTimestamp.IsZero() {
		if err := r.Client.Delete(ctx, s.env); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting LabEnvironment %s of LabClaim %s/%s: %w", s.env.Name, s.claim.Namespace, s.claim.Name, err)
		}
		ctrl.LoggerFrom(ctx).Info("Deleted the lab of a deleted LabClaim", "lab", s.env.Name)
	}
	if !controllerutil.ContainsFinalizer(s.claim, labforgev1alpha1.LabClaimFinalizer) {
		return nil
	}
	patch := client.MergeFrom(s.claim.DeepCopy())
	controllerutil.RemoveFinalizer(s.claim, labforgev1alpha1.LabClaimFinalizer)
	return client.IgnoreNotFound(r.Client.Patch(ctx, s.claim, patch))
}

// deleteOrphanedLabs deletes the labs bound to a claim of this name that no longer exists,
// or was replaced by a new claim of the same name; uid is the claim the cache holds now,
// empty if none.
//
// A LabClaim has no finalizer: deleting one is instant for its student and can never hang
// on a stopped operator, and it saves a write on every claim. Its lab goes here instead: at
// once through the claim's delete event, and after a restart through the labs' own events,
// which name their claim. (A finalizer would not be enough anyway: students may edit their
// claims, so they could remove it and keep the lab and its NodePorts forever.) The cache
// can lag behind a bind made by another operator process, so the API server has the last
// word on whether the bound claim is gone. The lab's own finalizer tears it down; the
// claim's Secrets go with the claim (owner references).
func (r *Reconciler) deleteOrphanedLabs(ctx context.Context, key client.ObjectKey, uid types.UID) error {
	var envs labforgev1alpha1.LabEnvironmentList
	if err := r.Client.List(ctx, &envs, client.MatchingFields{index.LabByClaimName: key.String()}); err != nil {
		return fmt.Errorf("listing the labs bound to LabClaim %s: %w", key, err)
	}
	var live *labforgev1alpha1.LabClaim
	for i := range envs.Items {
		env := &envs.Items[i]
		ref := env.Spec.ClaimRef
		if !env.DeletionTimestamp.IsZero() {
			r.released.forget(env.UID)
			continue
		}
		// Only what labforge made: an admin's hand-made lab is the admin's to end.
		if ref == nil || ref.UID == uid || r.released.has(env.UID) ||
			env.Labels[labforgev1alpha1.LabelManagedBy] != labforgev1alpha1.ManagedByValue {
			continue
		}
		if live == nil {
			live = &labforgev1alpha1.LabClaim{}
			if err := r.APIReader.Get(ctx, key, live); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("reading LabClaim %s: %w", key, err)
			}
		}
		if live.UID == ref.UID {
			continue // the cache has not seen the claim yet
		}
		if err := r.Client.Delete(ctx, env, client.Preconditions{UID: &env.UID}); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting LabEnvironment %s, whose LabClaim %s is gone: %w", env.Name, key, err)
		}
		r.released.add(env.UID)
		ctrl.LoggerFrom(ctx).Info("Deleted a lab whose LabClaim is gone", "lab", env.Name, "claimUID", ref.UID)
		r.Recorder.Eventf(env, nil, corev1.EventTypeNormal, "ClaimGone", "Delete", "LabClaim %s (UID %s) is gone; its lab is deleted", key, ref.UID)
	}
	return nil
}

// findUncachedLab asks the API server for the lab a deleted claim may hold that the cache
// does not show yet: a lab created or bound a moment before the claim was deleted. It
// knows where to look: the lab the claim's status names, and a templateRef claim's lab,
// whose name derives from the claim. Without this, such a lab would outlive its claim
// until the orphan sweep found it.
func (r *Reconciler) findUncachedLab(ctx context.Context, s *scope) error {
	var names []string
	if s.claim.Status.Lab != "" {
		names = append(names, s.claim.Status.Lab)
	}
	if s.claim.Spec.TemplateRef != nil {
		names = append(names, coldLabName(s.claim))
	}
	for _, name := range names {
		env := &labforgev1alpha1.LabEnvironment{}
		if err := r.APIReader.Get(ctx, client.ObjectKey{Name: name}, env); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return fmt.Errorf("reading LabEnvironment %s of deleted LabClaim %s/%s: %w", name, s.claim.Namespace, s.claim.Name, err)
		}
		if ref := env.Spec.ClaimRef; ref != nil && ref.UID == s.claim.UID {
			s.env = env
			return nil
		}
	}
	return nil
}

// SetupWithManager registers the controller and its watches. It lists by the indexes
// index.Setup registers, which the manager calls first.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 16
	}
	if r.coldLabs == nil {
		r.coldLabs = expectations.New(r.Clock, 0)
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&labforgev1alpha1.LabClaim{}).
		Owns(&corev1.Secret{}).
		Watches(&labforgev1alpha1.LabEnvironment{}, handler.EnqueueRequestsFromMapFunc(r.claimsOfLab)).
		Watches(&labforgev1alpha1.LabPool{}, handler.EnqueueRequestsFromMapFunc(r.waitingClaimsOfPool)).
		// Its caps or its namespaceSelector changed: claims naming it may go ahead now.
		Watches(&labforgev1alpha1.LabTemplate{}, handler.EnqueueRequestsFromMapFunc(r.claimsOfTemplate),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A namespace labelled anew may be admitted now, or no longer.
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.refusedClaimsOfNamespace), builder.WithPredicates(labelsChanged())).
		// A claim leaving the line (bound, refused or deleted) moves those behind it up.
		Watches(&labforgev1alpha1.LabClaim{}, handler.EnqueueRequestsFromMapFunc(r.claimsBehind), builder.WithPredicates(leftTheLine())).
		// Freed NodePorts: a lab's Service deleted, or a lab gone with its namespace.
		Watches(&corev1.Service{}, handler.EnqueueRequestsFromMapFunc(r.nodePortWaiters), builder.WithPredicates(nodePortServiceDeleted())).
		Watches(&labforgev1alpha1.LabEnvironment{}, handler.EnqueueRequestsFromMapFunc(r.nodePortWaiters), builder.WithPredicates(onlyDeletes())).
		// Where students connect: the node running a lab's control plane, and its address.
		Watches(&kubevirtv1.VirtualMachineInstance{}, handler.EnqueueRequestsFromMapFunc(r.claimOfVMI), builder.WithPredicates(r.controlPlaneMoved())).
		WatchesRawSource(source.Channel(r.Host.Subscribe(func(old, cur hostcluster.Network) bool { return !old.SameAddresses(cur) }),
			handler.EnqueueRequestsFromMapFunc(r.boundClaims)))
	if r.Checks != nil {
		// A check's result changed in a claimed lab.
		b = b.WatchesRawSource(source.Channel(r.Checks.Events(), &handler.EnqueueRequestForObject{}))
	}
	return b.WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		Complete(r)
}

// controlPlaneMoved lets through the updates of a lab's control-plane VMI that move it to
// another node, when students connect to that node (no public address), and the updates
// of any VMI whose access-credential synchronisation changed (the student's keys).
func (r *Reconciler) controlPlaneMoved() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			old, okOld := e.ObjectOld.(*kubevirtv1.VirtualMachineInstance)
			cur, okNew := e.ObjectNew.(*kubevirtv1.VirtualMachineInstance)
			if !okOld || !okNew {
				return false
			}
			// The student's keys: whether KubeVirt could put them in this VM.
			if keysChanged(old, cur) {
				return true
			}
			return cur.Name == lab.ControlPlaneVM && old.Status.NodeName != cur.Status.NodeName &&
				r.Host.Network().PublicAddress == ""
		},
	}
}

// claimOfVMI wakes the claim bound to the lab of a VMI.
func (r *Reconciler) claimOfVMI(ctx context.Context, o client.Object) []reconcile.Request {
	name := o.GetLabels()[labforgev1alpha1.LabelEnvironment]
	if name == "" {
		return nil
	}
	env := &labforgev1alpha1.LabEnvironment{}
	if err := r.Client.Get(ctx, client.ObjectKey{Name: name}, env, readOnly); err != nil || env.Spec.ClaimRef == nil {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: env.Spec.ClaimRef.Namespace, Name: env.Spec.ClaimRef.Name}}}
}

// boundClaims wakes every claim bound to a lab: the host's node addresses changed.
func (r *Reconciler) boundClaims(ctx context.Context, _ client.Object) []reconcile.Request {
	var labs labforgev1alpha1.LabEnvironmentList
	if err := r.Client.List(ctx, &labs, readOnly); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list LabEnvironments")
		return nil
	}
	var reqs []reconcile.Request
	for _, env := range labs.Items {
		if ref := env.Spec.ClaimRef; ref != nil {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}})
		}
	}
	return reqs
}

// claimsOfLab wakes the claim a lab is bound to and, for a lab of a pool (which may just
// have become Ready, or have been taken, moving everyone up the line), the claims waiting
// on that pool.
func (r *Reconciler) claimsOfLab(ctx context.Context, o client.Object) []reconcile.Request {
	env := o.(*labforgev1alpha1.LabEnvironment)
	var reqs []reconcile.Request
	if ref := env.Spec.ClaimRef; ref != nil {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}})
	}
	if env.Spec.PoolRef != nil {
		reqs = append(reqs, r.waitingClaims(ctx, env.Spec.PoolRef.Name)...)
	} else if env.Spec.ClaimRef != nil {
		// A lab booted for a template's claim became Ready or went: room under the
		// template's caps for the claims waiting on it.
		reqs = append(reqs, r.wakeTemplateLine(ctx, env.Spec.TemplateRef.Name, false)...)
	}
	return reqs
}

// claimsBehind wakes the claims waiting on the pool of a claim that left the line. Their
// place in line counts the claims before them that still wait, as the cache shows them: a
// claim whose bind reached the LabEnvironment cache before its own status did would
// otherwise be counted as waiting by the last pass of those behind it, and hold them
// back for good.
func (r *Reconciler) claimsBehind(ctx context.Context, o client.Object) []reconcile.Request {
	c := o.(*labforgev1alpha1.LabClaim)
	if ref := c.Spec.PoolRef; ref != nil {
		return r.waitingClaims(ctx, ref.Name)
	}
	if ref := c.Spec.TemplateRef; ref != nil {
		return r.wakeTemplateLine(ctx, ref.Name, false)
	}
	return nil
}

// inLine says whether a claim waits for a lab of its pool, or of its template (what
// placeInLine and placeInTemplateLine count).
func inLine(c *labforgev1alpha1.LabClaim) bool {
	return (c.Spec.PoolRef != nil || c.Spec.TemplateRef != nil) && c.Status.Lab == "" && c.DeletionTimestamp.IsZero() &&
		!meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionStalled)
}

// leftTheLine lets through the events of a claim of a pool or template that stops waiting.
func leftTheLine() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc: func(e event.DeleteEvent) bool {
			c, ok := e.Object.(*labforgev1alpha1.LabClaim)
			return ok && (c.Spec.PoolRef != nil || c.Spec.TemplateRef != nil)
		},
		UpdateFunc: func(e event.UpdateEvent) bool {
			old, okOld := e.ObjectOld.(*labforgev1alpha1.LabClaim)
			c, okNew := e.ObjectNew.(*labforgev1alpha1.LabClaim)
			return okOld && okNew && inLine(old) && !inLine(c)
		},
	}
}

// waitingClaimsOfPool wakes, on a change of the pool, the claims of its line worth a pass
// and the claims it refused: a change of its claimNamespaceSelector may admit them.
func (r *Reconciler) waitingClaimsOfPool(ctx context.Context, o client.Object) []reconcile.Request {
	return r.wakeLine(ctx, o.GetName(), true)
}

// waitingClaims wakes the claims of a pool's line worth a pass (wakeable).
func (r *Reconciler) waitingClaims(ctx context.Context, pool string) []reconcile.Request {
	return r.wakeLine(ctx, pool, false)
}

// wakeLine returns the claims of pool's line worth a pass (wakeable) and, when refused is
// set, the claims the pool refused. It runs for every event of every lab of a pool, so it
// only reads the cache (no copies, see readOnly) and counts the labs only when a claim waits.
func (r *Reconciler) wakeLine(ctx context.Context, pool string, refused bool) []reconcile.Request {
	var claims labforgev1alpha1.LabClaimList
	if err := r.Client.List(ctx, &claims, client.MatchingFields{index.ClaimByPool: pool}, readOnly); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list the LabClaims of LabPool", "pool", pool)
		return nil
	}
	line, reqs := splitLine(claims.Items, func(c *labforgev1alpha1.LabClaim) bool { return refused && c.Status.Lab == "" })
	if len(line) == 0 {
		return reqs
	}
	var envs labforgev1alpha1.LabEnvironmentList
	if err := r.Client.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: pool}, readOnly); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list the labs of LabPool", "pool", pool)
		return nil
	}
	sort.Slice(line, func(i, j int) bool { return before(line[i], line[j]) })
	for _, c := range wakeable(line, len(freeLabs(envs.Items, pool))) {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(c)})
	}
	return reqs
}

// splitLine returns the claims in line and a request for each other claim wake says to
// wake: what a pool's and a template's lines both start from.
func splitLine(claims []labforgev1alpha1.LabClaim, wake func(*labforgev1alpha1.LabClaim) bool) ([]*labforgev1alpha1.LabClaim, []reconcile.Request) {
	var line []*labforgev1alpha1.LabClaim
	var reqs []reconcile.Request
	for i := range claims {
		c := &claims[i]
		switch {
		case inLine(c):
			line = append(line, c)
		case wake(c):
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(c)})
		}
	}
	return line, reqs
}

// wakeable returns the claims of a line (in line order) worth a pass now that the pool has
// free Ready labs: the first free+ExactPositions (they can bind, or must see their exact
// place), and those further back whose status gives a place more than twice their actual
// one (reportedPosition). Waking every waiting claim at every change cost, per bind, a
// pass per waiting claim that each counted the whole line: the square of the line's
// length in cache reads, thousands of passes per bind behind a long line.
func wakeable(line []*labforgev1alpha1.LabClaim, free int) []*labforgev1alpha1.LabClaim {
	var out []*labforgev1alpha1.LabClaim
	for i, c := range line {
		actual := int32(i + 1)
		if i < free+ExactPositions || reportedPosition(c.Status.QueuePosition, actual) != c.Status.QueuePosition {
			out = append(out, c)
		}
	}
	return out
}

// cacheLags says whether the cache holds the claim as it was before this process wrote
// its bound status. A pass on such a claim would take the bind for new: mint the kubeconfig
// again with an expiry counted from now, and write both again. Its own status write wakes
// the claim right after (and the claim's Secrets too), often before the cache has it.
func (r *Reconciler) cacheLags(claim *labforgev1alpha1.LabClaim) bool {
	if _, written := r.boundStatus.Load(claim.UID); !written {
		return false
	}
	if claim.Status.BoundTime == nil {
		return true
	}
	r.boundStatus.Delete(claim.UID)
	return false
}

// writeStatus computes the status and writes it when it changed.
func (r *Reconciler) writeStatus(ctx context.Context, s *scope, succeeded bool) error {
	before := s.claim.DeepCopy()
	setStatus(s, succeeded)
	if equality.Semantic.DeepEqual(before.Status, s.claim.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, s.claim, client.MergeFrom(before)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("patching LabClaim %s/%s status: %w", s.claim.Namespace, s.claim.Name, err))
	}
	if before.Status.BoundTime == nil && s.claim.Status.BoundTime != nil {
		r.boundStatus.Store(s.claim.UID, struct{}{})
	}
	r.recordTransitions(ctx, before, s)
	return nil
}

// coldLabName is the name of the lab booted for a claim that names a template: derived
// from the claim's UID, so that a retried create can never make a second lab.
func coldLabName(claim *labforgev1alpha1.LabClaim) string {
	sum := sha256.Sum256([]byte(claim.UID))
	return "claim-" + hex.EncodeToString(sum[:])[:12]
}
