// Package labenvironment holds the LabEnvironment controller: it turns one lab instance
// into a namespace of VMs that boot into a kubeadm cluster, knows from the lab itself when
// it is Ready, and removes every trace of it when the LabEnvironment is deleted.
package labenvironment

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
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
	"github.com/labforge/labforge/internal/claimsfirst"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/index"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/internal/ssa"
)

// ControllerName names the controller in logs, events, metrics and as the field manager.
const ControllerName = "labenvironment"

// DefaultProbeInterval is how often a booting lab whose VMs all run is asked whether its
// bootstrap finished.
const DefaultProbeInterval = 5 * time.Second

// Reconciler provisions, observes and tears down labs.
type Reconciler struct {
	Client    client.Client
	APIReader client.Reader
	Recorder  events.EventRecorder
	Applier   *ssa.Applier
	// Prober asks a lab whether its bootstrap finished. It runs in a labprobe.Pool sized
	// by ProbePool, never on the reconcile workers.
	Prober    labprobe.Prober
	ProbePool labprobe.PoolOptions
	// Host is the host cluster's network, kept current: a change of what the labs'
	// NetworkPolicies say of it wakes every lab.
	Host *hostcluster.Host
	// OperatorNamespace is where the operator runs: the only namespace allowed to reach a
	// lab's API from inside the host cluster.
	OperatorNamespace string
	// Prover signs the lab's namespace and checks the proof on one the lab did not
	// create itself (namespaceIsLabs): keyed with the operator's own key.
	Prover *ownership.Prover
	Clock  clock.PassiveClock
	// ProbeInterval is how often a booting lab is probed; DefaultProbeInterval if zero.
	ProbeInterval time.Duration
	// Rand is the source of key material; crypto/rand if nil.
	Rand io.Reader
	// MaxConcurrentReconciles is how many labs are worked on at once; 8 if zero. A pass
	// is mostly waiting on API round trips, so a pool fills in parallel.
	MaxConcurrentReconciles int

	probes *labprobe.Pool
}

// +kubebuilder:rbac:groups=labforge.dev,resources=labenvironments,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=labforge.dev,resources=labenvironments/status,verbs=patch
// +kubebuilder:rbac:groups=labforge.dev,resources=labenvironments/finalizers,verbs=update
// +kubebuilder:rbac:groups=labforge.dev,resources=labtemplates,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets;configmaps;services,verbs=get;list;watch;create;patch
// The lab's guards are replaced whole, by an update under the version last seen, when
// anyone changed them (decision 60).
// +kubebuilder:rbac:groups="",resources=resourcequotas;limitranges,verbs=get;list;watch;create;patch;update
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;update
// +kubebuilder:rbac:groups=kubevirt.io,resources=virtualmachines,verbs=get;list;watch;create;patch
// +kubebuilder:rbac:groups=kubevirt.io,resources=virtualmachineinstances,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one lab one step closer to Ready, or removes it.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	env := &labforgev1alpha1.LabEnvironment{}
	if err := r.Client.Get(ctx, req.NamespacedName, env); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !env.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, env)
	}
	if !controllerutil.ContainsFinalizer(env, labforgev1alpha1.LabEnvironmentFinalizer) {
		patch := client.MergeFrom(env.DeepCopy())
		controllerutil.AddFinalizer(env, labforgev1alpha1.LabEnvironmentFinalizer)
		if err := r.Client.Patch(ctx, env, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer to LabEnvironment %s: %w", env.Name, err)
		}
	}

	s := &scope{env: env, now: r.Clock.Now(), host: r.Host.Network()}
	result, err := r.reconcileNormal(ctx, s)
	if statusErr := r.writeStatus(ctx, s, err == nil); statusErr != nil {
		err = errors.Join(err, statusErr)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	return result, nil
}

// reconcileDelete deletes the lab's namespace and holds the finalizer until it is gone:
// nothing the lab created outlives it. A namespace that never existed counts as gone.
func (r *Reconciler) reconcileDelete(ctx context.Context, env *labforgev1alpha1.LabEnvironment) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(env, labforgev1alpha1.LabEnvironmentFinalizer) {
		return ctrl.Result{}, nil
	}
	ns := &corev1.Namespace{}
	err := r.Client.Get(ctx, client.ObjectKey{Name: namespaceOf(env)}, ns)
	switch {
	case apierrors.IsNotFound(err):
		patch := client.MergeFrom(env.DeepCopy())
		controllerutil.RemoveFinalizer(env, labforgev1alpha1.LabEnvironmentFinalizer)
		if err := r.Client.Patch(ctx, env, patch); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		r.Applier.ForgetNamespace(namespaceOf(env))
		r.probes.Forget(env.Name)
		ctrl.LoggerFrom(ctx).Info("Deleted LabEnvironment", "namespace", namespaceOf(env))
		return ctrl.Result{}, nil
	case err != nil:
		return ctrl.Result{}, fmt.Errorf("reading namespace of LabEnvironment %s: %w", env.Name, err)
	}
	if !r.namespaceIsLabs(ns, env) {
		// Never delete a namespace labforge did not make for this lab, whatever its name
		// and labels. An orphan carrying the lab's proof (a restore that dropped owner
		// references) is its own.
		patch := client.MergeFrom(env.DeepCopy())
		controllerutil.RemoveFinalizer(env, labforgev1alpha1.LabEnvironmentFinalizer)
		return ctrl.Result{}, client.IgnoreNotFound(r.Client.Patch(ctx, env, patch))
	}
	if ns.DeletionTimestamp.IsZero() {
		if err := r.Client.Delete(ctx, ns, client.PropagationPolicy("Background")); client.IgnoreNotFound(err) != nil {
			return ctrl.Result{}, fmt.Errorf("deleting namespace %s: %w", ns.Name, err)
		}
		r.Recorder.Eventf(env, nil, corev1.EventTypeNormal, "DeletingLab", "Delete", "Deleting namespace %s", ns.Name)
	}
	if err := r.markDeleting(ctx, env); err != nil {
		return ctrl.Result{}, err
	}
	// The namespace's deletion event requeues this environment.
	return ctrl.Result{}, nil
}

// markDeleting sets Ready=False (Deleting) on a lab whose namespace is going, once: a lab
// being torn down must not show Ready=True for the seconds its namespace takes.
func (r *Reconciler) markDeleting(ctx context.Context, env *labforgev1alpha1.LabEnvironment) error {
	if c := meta.FindStatusCondition(env.Status.Conditions, labforgev1alpha1.ConditionReady); c != nil &&
		c.Status == metav1.ConditionFalse && c.Reason == labforgev1alpha1.ReasonDeleting {
		return nil
	}
	// Only this controller writes a lab's status: no optimistic lock, so no conflict.
	patch := client.MergeFrom(env.DeepCopy())
	meta.SetStatusCondition(&env.Status.Conditions, metav1.Condition{Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionFalse,
		ObservedGeneration: env.Generation, Reason: labforgev1alpha1.ReasonDeleting, Message: fmt.Sprintf("The lab is being deleted with its namespace %s", namespaceOf(env))})
	// The deletion is this generation (it bumped it), and this pass acted on it.
	env.Status.ObservedGeneration = env.Generation
	if err := r.Client.Status().Patch(ctx, env, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("marking LabEnvironment %s as deleting: %w", env.Name, err)
	}
	return nil
}

// SetupWithManager registers the controller and what it watches.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.ProbeInterval == 0 {
		r.ProbeInterval = DefaultProbeInterval
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.MaxConcurrentReconciles == 0 {
		r.MaxConcurrentReconciles = 8
	}
	byEnvLabel := handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
		if name := o.GetLabels()[labforgev1alpha1.LabelEnvironment]; name != "" {
			return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
		}
		return nil
	})
	r.probes = labprobe.NewPool(r.Prober, r.ProbePool)
	if err := mgr.Add(r.probes); err != nil {
		return fmt.Errorf("adding the lab probe pool: %w", err)
	}
	// A probe's answer that no pass waited for wakes its lab. The pool adds to the
	// workqueue directly: it never blocks, and the queue folds repeats.
	probeAnswers := source.Func(func(_ context.Context, q workqueue.TypedRateLimitingInterface[reconcile.Request]) error {
		r.probes.SetNotify(func(env string) { q.Add(reconcile.Request{NamespacedName: client.ObjectKey{Name: env}}) })
		return nil
	})
	children := builder.WithPredicates(r.ownChildren())
	hostChanged := r.Host.Subscribe(func(old, cur hostcluster.Network) bool { return !old.SamePolicies(cur) })
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		For(&labforgev1alpha1.LabEnvironment{}, builder.WithPredicates(labChanged)).
		// The namespace's every event: its deletion is what a lab's teardown waits for.
		Owns(&corev1.Namespace{}).
		Owns(&corev1.Secret{}, children, builder.WithPredicates(notHandedOver)).
		Owns(&corev1.ConfigMap{}, children).
		Owns(&corev1.Service{}, children, builder.WithPredicates(notHandedOver)).
		Owns(&corev1.ResourceQuota{}, children, builder.WithPredicates(quotaUsage)).
		Owns(&corev1.LimitRange{}, children).
		Owns(&networkingv1.NetworkPolicy{}, children).
		Owns(&kubevirtv1.VirtualMachine{}, children, builder.WithPredicates(vmStatus)).
		Watches(&kubevirtv1.VirtualMachineInstance{}, byEnvLabel).
		Watches(&labforgev1alpha1.LabTemplate{}, handler.EnqueueRequestsFromMapFunc(r.environmentsOfTemplate)).
		// The host's ranges or DNS servers changed: every lab's policies are rendered
		// again, and only those that change are written (ssa.Applier compares).
		WatchesRawSource(source.Channel(hostChanged, handler.EnqueueRequestsFromMapFunc(r.allLabs))).
		WatchesRawSource(probeAnswers).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles,
			NewQueue: claimsfirst.NewQueue(r.workPriority)}).
		Complete(r)
}

// workPriority puts a lab a claim took while it boots (a cold claim waits on it) ahead of
// warm labs being built, and a lab being deleted behind both (decision 91), as the cache
// shows the lab.
func (r *Reconciler) workPriority(req reconcile.Request) int {
	env := &labforgev1alpha1.LabEnvironment{}
	switch err := r.Client.Get(context.Background(), req.NamespacedName, env); {
	case err != nil:
		return claimsfirst.Normal
	case !env.DeletionTimestamp.IsZero():
		return claimsfirst.Background
	case env.Spec.ClaimRef != nil && env.Status.ReadyTime == nil:
		return claimsfirst.Claim
	}
	return claimsfirst.Normal
}

// environmentsOfTemplate wakes the labs that wait for a template to exist or be fixed.
// Labs that already took their snapshot ignore template changes.
func (r *Reconciler) environmentsOfTemplate(ctx context.Context, o client.Object) []reconcile.Request {
	var list labforgev1alpha1.LabEnvironmentList
	if err := r.Client.List(ctx, &list, client.MatchingFields{index.LabByTemplate: o.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list LabEnvironments of LabTemplate", "template", o.GetName())
		return nil
	}
	var reqs []reconcile.Request
	for _, env := range list.Items {
		if env.Status.TemplateGeneration == 0 {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Name: env.Name}})
		}
	}
	return reqs
}

// allLabs names every lab not being deleted.
func (r *Reconciler) allLabs(ctx context.Context, _ client.Object) []reconcile.Request {
	var list labforgev1alpha1.LabEnvironmentList
	if err := r.Client.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list LabEnvironments")
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for _, env := range list.Items {
		if env.DeletionTimestamp.IsZero() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Name: env.Name}})
		}
	}
	return reqs
}

// writeStatus computes the status from the scope and writes it when it changed.
func (r *Reconciler) writeStatus(ctx context.Context, s *scope, succeeded bool) error {
	before := s.env.DeepCopy()
	setStatus(s, succeeded)
	if equality.Semantic.DeepEqual(before.Status, s.env.Status) {
		return nil
	}
	if err := r.Client.Status().Patch(ctx, s.env, client.MergeFrom(before)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("patching LabEnvironment %s status: %w", s.env.Name, err))
	}
	r.recordTransitions(ctx, before, s.env)
	return nil
}

// ownChildren passes the events of a lab's objects that can ask something of the lab: not
// their creation (the lab made them, in a pass that goes on; at a start every lab has its
// own pass anyway), and nothing while the lab is being deleted (its namespace's deletion
// takes them all, and only the namespace's own going ends the teardown). A lab's
// teardown woke it once per object deleted, and its build once per object created.
func (r *Reconciler) ownChildren() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		UpdateFunc:  func(e event.UpdateEvent) bool { return r.ownerLive(e.ObjectNew) },
		DeleteFunc:  func(e event.DeleteEvent) bool { return r.ownerLive(e.Object) },
		GenericFunc: func(event.GenericEvent) bool { return true },
	}
}

// ownerLive says whether the LabEnvironment controlling o may still need a pass: it is
// in the cache and not being deleted. When in doubt, yes.
func (r *Reconciler) ownerLive(o client.Object) bool {
	ref := metav1.GetControllerOf(o)
	if ref == nil || ref.Kind != "LabEnvironment" {
		return true
	}
	// Read only, for every event of every lab's objects: no copy of the cached lab.
	env := &labforgev1alpha1.LabEnvironment{}
	switch err := r.Client.Get(context.Background(), client.ObjectKey{Name: ref.Name}, env, client.UnsafeDisableDeepCopy); {
	case apierrors.IsNotFound(err):
		return false
	case err != nil:
		return true
	}
	return env.UID == ref.UID && env.DeletionTimestamp.IsZero()
}

// Predicates of the lab's own objects' events: see SetupWithManager.
var (
	// A ResourceQuota's usage: kube-controller-manager recounts it at every object created
	// or deleted in the lab, and the lab never reads it (the cache does not keep it).
	quotaUsage = changedBeyond(func(q *corev1.ResourceQuota) { q.Status = corev1.ResourceQuotaStatus{} })
	// A VM's status: KubeVirt's report of it. The lab reads its VMIs' phases instead.
	vmStatus = changedBeyond(func(vm *kubevirtv1.VirtualMachine) { vm.Status = kubevirtv1.VirtualMachineStatus{} })
)

// labChanged lets through every event of a lab but an update of its status alone, or
// one that only added its finalizer: this controller's own writes, made by a pass that
// went on with what it wrote (decision 34). Resyncs (the same resourceVersion) and a
// finalizer taken away go through.
var labChanged = predicate.Or[client.Object](
	predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetResourceVersion() == e.ObjectNew.GetResourceVersion() ||
			(controllerutil.ContainsFinalizer(e.ObjectOld, labforgev1alpha1.LabEnvironmentFinalizer) && !controllerutil.ContainsFinalizer(e.ObjectNew, labforgev1alpha1.LabEnvironmentFinalizer))
	}},
	changedBeyond(func(env *labforgev1alpha1.LabEnvironment) {
		env.Status = labforgev1alpha1.LabEnvironmentStatus{}
		env.Finalizers = nil
	}),
)

// notHandedOver drops the updates a claim's handover makes to what the lab gave it: the
// lab's Service once it is the claim's NodePort Service (the lab leaves it alone), and
// the access-credentials Secret, which the lab creates once and the claim fills with
// the student's keys (decision 34). Their deletion still wakes the lab.
var notHandedOver = predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
	switch o := e.ObjectNew.(type) {
	case *corev1.Service:
		return o.Spec.Type != corev1.ServiceTypeNodePort
	case *corev1.Secret:
		return o.Name != lab.AccessCredentialsSecret
	}
	return true
}}

// changedBeyond lets through every event of an object of type T but an update that
// changed nothing besides what strip clears (and resourceVersion, managedFields): drift
// repair still sees every change of what the lab wrote.
func changedBeyond[T client.Object](strip func(T)) predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		old, okOld := e.ObjectOld.(T)
		cur, okNew := e.ObjectNew.(T)
		if !okOld || !okNew {
			return true
		}
		old, cur = old.DeepCopyObject().(T), cur.DeepCopyObject().(T)
		for _, o := range []T{old, cur} {
			o.SetResourceVersion("")
			o.SetManagedFields(nil)
			strip(o)
		}
		return !equality.Semantic.DeepEqual(old, cur)
	}}
}
