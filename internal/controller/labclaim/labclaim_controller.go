// Package labclaim holds the LabClaim controller: it binds a claim to a lab (the oldest
// Ready unbound lab of its pool, first come first served, or a lab booted just for it),
// hands the lab over to the student, and ends it at expiry or when the claim is deleted.
//
// A pass over a live claim (Reconcile) finds the claim's lab, then runs its phases in this
// order (labclaim_phases.go): expired (an Expired claim stays so), request (its pool or
// template, who may claim, its duration), expiry, bind (the ledger of the claim line,
// labclaim_ledger.go, says which lab), lab (lost or failed for good), handover (NodePorts,
// keys and kubeconfig, once the lab is built) and keys (Ready once KubeVirt put them in).
// It then computes the status from what the phases found and writes it once
// (labclaim_status.go). A claim being deleted runs reconcileDelete instead.
//
// The other files hold what the phases call: labclaim_bind.go (finding and binding the
// lab), labclaim_admit.go (who may claim, a template's caps), labclaim_terms.go (the
// terms frozen at the bind), labclaim_handover.go and labclaim_keys.go (the handover),
// labclaim_adopt.go (the claim's Secrets).
package labclaim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/claimsfirst"
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
	// LabConfig is how the operator reaches a claimed lab's own API to expose its Services
	// (reconcileExposure); nil exposes nothing.
	LabConfig LabConfigFunc
	// MaxConcurrentReconciles is how many claims are worked on at once; 16 if zero. A
	// claim's pass mostly waits on the API server, and a burst of claims is what students
	// wait for.
	MaxConcurrentReconciles int
	// Checks evaluates the solution checks of claimed labs (labclaim_checks.go); nil
	// leaves every claim without status.checks and Solved.
	Checks *solution.Evaluator

	// writes holds the writes this process made that its cache does not show yet (the
	// one expectations component): the labs it is binding or bound (expectBind), the
	// claims whose bound status it wrote (expectBoundStatus) and the labs it deleted
	// because their claim was gone (expectRelease).
	writes *expectations.Tracker
	// ledger reads the claim lines of pools and templates and holds the labs created for
	// template claims that the cache does not show yet (see lines).
	ledger *ledger
	once   sync.Once
	// labServices watches the Services of claimed labs whose template exposes them, and
	// exposureRefusals remembers the host Services the API server refused (see
	// reconcileExposure).
	labServices      *labServices
	exposureRefusals refusals
}

// What r.writes expects, by kind (decision 83).
const (
	// expectBind: a lab one of the workers is binding, or bound to a claim (on behalf of
	// the claim's UID), until the LabEnvironment cache shows the bind (findLab). The
	// other workers pass it over (tryBind), and the claim's next pass asks the API server
	// for it (findLaggingLab).
	expectBind = "LabEnvironment bind"
	// expectBoundStatus: a claim whose bound status this process wrote, until the
	// LabClaim cache shows that write (cacheLags).
	expectBoundStatus = "LabClaim bound status"
	// expectRelease: a lab this process deleted because its claim was gone, until the
	// LabEnvironment cache shows it deleting (deleteOrphanedLabs).
	expectRelease = "LabEnvironment release"
)

// expected returns r.writes, made on first use (SetupWithManager makes it; a Reconciler
// built by a unit test gets one here).
func (r *Reconciler) expected() *expectations.Tracker {
	r.prepare()
	return r.writes
}

// prepare makes what a Reconciler keeps between passes, once.
func (r *Reconciler) prepare() {
	r.once.Do(func() {
		if r.writes == nil {
			r.writes = expectations.NewTracker(r.Clock, 0)
		}
		if r.ledger == nil {
			r.ledger = newLedger(r.Client, r.Clock)
		}
	})
}

// +kubebuilder:rbac:groups=labforge.dev,resources=labclaims,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=labforge.dev,resources=labclaims/status,verbs=patch
// +kubebuilder:rbac:groups=labforge.dev,resources=labclaims/finalizers,verbs=update
// +kubebuilder:rbac:groups=kubevirt.io,resources=virtualmachineinstances,verbs=get;list;watch
// +kubebuilder:rbac:groups=labforge.dev,resources=labenvironments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=labforge.dev,resources=labpools;labtemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=services,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile serves one claim.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	claim := &labforgev1alpha1.LabClaim{}
	if err := r.Client.Get(ctx, req.NamespacedName, claim); err != nil {
		if apierrors.IsNotFound(err) {
			r.stopChecks(req.NamespacedName)
			r.expected().Forget(expectBoundStatus, req.NamespacedName)
			r.labServices.stopClaim(req.NamespacedName)
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
		r.labServices.stopClaim(req.NamespacedName)
		return ctrl.Result{}, r.reconcileDelete(ctx, s)
	}
	result, err := r.reconcileNormal(ctx, s)
	if err == nil {
		err = r.observeChecks(ctx, s)
	}
	if s.expired || s.refusedReason != "" {
		// The claim holds its lab no more (or never will): nothing of it is exposed.
		r.labServices.stopClaim(req.NamespacedName)
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
		ref, released := env.Spec.ClaimRef, client.ObjectKeyFromObject(env)
		if !env.DeletionTimestamp.IsZero() {
			r.expected().Lower(expectRelease, released)
			continue
		}
		// Only what labforge made: an admin's hand-made lab is the admin's to end.
		if ref == nil || ref.UID == uid || r.expected().Expected(expectRelease, released) ||
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
		// A gone claim is reconciled once for its own delete event and again for each of
		// its Secrets the garbage collector deletes, often before the cache shows its lab
		// deleting: each of those passes would read the claim from the API server, delete
		// the lab again and report it again.
		r.expected().ExpectBy(expectRelease, env, string(ref.UID))
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
	r.prepare()
	r.labServices = newLabServices(r.LabConfig)
	// The labs' watches outlive the passes that start them, not the manager.
	if err := mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		r.labServices.stopAll()
		return nil
	})); err != nil {
		return err
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
			handler.EnqueueRequestsFromMapFunc(r.boundClaims))).
		// A Service inside a claimed lab that may be exposed came, changed or went.
		WatchesRawSource(source.Channel(r.labServices.events, &handler.EnqueueRequestForObject{}))
	if r.Checks != nil {
		// A check's result changed in a claimed lab.
		b = b.WatchesRawSource(source.Channel(r.Checks.Events(), &handler.EnqueueRequestForObject{}))
	}
	return b.WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles,
		NewQueue: claimsfirst.NewQueue(r.workPriority)}).
		Complete(r)
}

// workPriority puts a claim not yet served ahead of a served claim's timers and of a
// released claim's clean-up (decision 91), as the cache shows the claim.
func (r *Reconciler) workPriority(req reconcile.Request) int {
	claim := &labforgev1alpha1.LabClaim{}
	if err := r.Client.Get(context.Background(), req.NamespacedName, claim); err != nil || !claim.DeletionTimestamp.IsZero() {
		// Released: what is left is deleting its lab.
		return claimsfirst.Background
	}
	if meta.IsStatusConditionTrue(claim.Status.Conditions, labforgev1alpha1.ConditionReady) {
		return claimsfirst.Normal
	}
	return claimsfirst.Claim
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

// cacheLags says whether the cache holds the claim as it was before this process wrote
// its bound status. A pass on such a claim would take the bind for new: mint the kubeconfig
// again with an expiry counted from now, and write both again. Its own status write wakes
// the claim right after (and the claim's Secrets too), often before the cache has it. The
// claim the pass read is what the cache shows: it meets the write once it is that write
// or newer.
func (r *Reconciler) cacheLags(claim *labforgev1alpha1.LabClaim) bool {
	r.expected().Observe(expectBoundStatus, claim)
	left, _ := r.expected().Wait(expectBoundStatus, client.ObjectKeyFromObject(claim))
	return left > 0
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
		// s.claim is the claim as the API server returned it: its resourceVersion is the
		// write's.
		r.expected().Expect(expectBoundStatus, s.claim)
	}
	r.recordTransitions(ctx, before, s)
	r.recordExposure(before, s.claim)
	return nil
}

// coldLabName is the name of the lab booted for a claim that names a template: derived
// from the claim's UID, so that a retried create can never make a second lab.
func coldLabName(claim *labforgev1alpha1.LabClaim) string {
	sum := sha256.Sum256([]byte(claim.UID))
	return "claim-" + hex.EncodeToString(sum[:])[:12]
}
