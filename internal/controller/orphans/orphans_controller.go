// Package orphans holds the orphan sweep: it deletes objects labelled as labforge's whose
// owner no longer exists (or exists with another UID), and never anything else. The
// garbage collector removes objects whose owner reference points at a deleted owner; what
// it cannot see are labforge's objects without a (valid) owner reference: a lab namespace
// or a pool's lab restored from a backup without owner references after their owner was
// deleted, a lab bound to a claim that was deleted while the operator was down (a claim
// cannot own a cluster-scoped lab; spec.claimRef is the only link), a claim's Secret left
// the same way. Live objects are never written: a candidate whose owner exists is the
// owner's controller's to adopt.
package orphans

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/internal/render"
)

// ControllerName prefixes the names of the sweep's controllers in logs and metrics.
const ControllerName = "orphans"

// Reconciler deletes orphans. It runs one controller per kind of candidate (lab
// namespaces, LabEnvironments, claims' Secrets), each woken by its candidates and by the
// deletion of their owners.
type Reconciler struct {
	Client client.Client
	// APIReader confirms a missing owner with the API server: a cache that lags behind a
	// create must never get a live object deleted.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Prover checks the proof on a lab namespace (NamespaceOwner).
	Prover *ownership.Prover
}

// +kubebuilder:rbac:groups="",resources=namespaces;secrets,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=labforge.dev,resources=labenvironments,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=labforge.dev,resources=labclaims;labpools,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// sweeper reconciles the candidates of one kind.
type sweeper struct {
	*Reconciler
	kind   string
	newObj func() client.Object
	owner  func(client.Object) (Owner, bool)
}

// Reconcile deletes one object if it is an orphan.
func (s *sweeper) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	obj := s.newObj()
	if err := s.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	owner, ok := s.owner(obj)
	if !ok {
		return ctrl.Result{}, nil
	}
	exists, err := s.ownerExists(ctx, owner)
	if err != nil || exists {
		return ctrl.Result{}, err
	}
	// The preconditions make the delete fail if the object changed since it was read
	// (adopted, say), or is another object of the same name. The watch event of that
	// change brings it back, and the next pass decides again.
	uid, rv := obj.GetUID(), obj.GetResourceVersion()
	if err := s.Client.Delete(ctx, obj, client.Preconditions{UID: &uid, ResourceVersion: &rv}); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("deleting orphaned %s %s: %w", s.kind, ownerName(Owner{Namespace: req.Namespace, Name: req.Name}), err)
	}
	msg := fmt.Sprintf("Deleted: it belongs to %s %s, which no longer exists", owner.Kind, ownerName(owner))
	if owner.UID != "" {
		msg = fmt.Sprintf("Deleted: it belongs to %s %s (UID %s), which no longer exists", owner.Kind, ownerName(owner), owner.UID)
	}
	s.Recorder.Eventf(obj, nil, corev1.EventTypeNormal, labforgev1alpha1.ReasonDeletedOrphan, "Delete", "%s", msg)
	ctrl.LoggerFrom(ctx).Info("Deleted an orphaned object", "kind", s.kind, "ownerKind", owner.Kind, "owner", ownerName(owner))
	return ctrl.Result{}, nil
}

// ownerExists looks the owner up in the cache first (a live owner costs no request), and
// confirms a miss with the API server.
func (r *Reconciler) ownerExists(ctx context.Context, o Owner) (bool, error) {
	var obj client.Object
	switch o.Kind {
	case KindLabEnvironment:
		obj = &labforgev1alpha1.LabEnvironment{}
	case KindLabPool:
		obj = &labforgev1alpha1.LabPool{}
	case KindLabClaim:
		obj = &labforgev1alpha1.LabClaim{}
	default:
		return false, fmt.Errorf("unknown owner kind %q", o.Kind)
	}
	key := client.ObjectKey{Namespace: o.Namespace, Name: o.Name}
	for _, reader := range []client.Reader{r.Client, r.APIReader} {
		err := reader.Get(ctx, key, obj)
		if err == nil && (o.UID == "" || obj.GetUID() == o.UID) {
			return true, nil
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("reading %s %s: %w", o.Kind, ownerName(o), err)
		}
	}
	return false, nil
}

func ownerName(o Owner) string {
	if o.Namespace == "" {
		return o.Name
	}
	return o.Namespace + "/" + o.Name
}

// SetupWithManager registers the sweep's controllers.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := r.setupNamespaces(mgr); err != nil {
		return err
	}
	if err := r.setupEnvironments(mgr); err != nil {
		return err
	}
	return r.setupSecrets(mgr)
}

// candidates wakes s only for its candidates: an object its rule gives an owner to look
// up. Every other object (a lab's own Secrets, a namespace its lab owns) would be read and
// let be, one pass per object per event: 4 of 9 passes of a restart over 1,000 labs.
func candidates(s *sweeper) builder.Predicates {
	return builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
		_, ok := s.owner(o)
		return ok
	}))
}

// onDelete passes only delete events: an owner's deletion is what orphans its objects.
var onDelete = builder.WithPredicates(predicate.Funcs{
	CreateFunc:  func(event.CreateEvent) bool { return false },
	UpdateFunc:  func(event.UpdateEvent) bool { return false },
	GenericFunc: func(event.GenericEvent) bool { return false },
})

// setupNamespaces sweeps the lab namespaces, woken also by their lab's deletion.
func (r *Reconciler) setupNamespaces(mgr ctrl.Manager) error {
	namespaces := &sweeper{Reconciler: r, kind: "Namespace", newObj: func() client.Object { return &corev1.Namespace{} },
		owner: func(o client.Object) (Owner, bool) { return NamespaceOwner(o, r.Prover) }}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName+"-namespace").
		For(&corev1.Namespace{}, candidates(namespaces)).
		Watches(&labforgev1alpha1.LabEnvironment{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: lab.Namespace(o.GetName())}}}
			}), onDelete).
		Complete(namespaces); err != nil {
		return fmt.Errorf("setting up the orphan sweep of namespaces: %w", err)
	}
	return nil
}

// setupEnvironments sweeps the labs, woken also by their pool's deletion.
func (r *Reconciler) setupEnvironments(mgr ctrl.Manager) error {
	environments := &sweeper{Reconciler: r, kind: "LabEnvironment", newObj: func() client.Object { return &labforgev1alpha1.LabEnvironment{} },
		owner: func(o client.Object) (Owner, bool) { return EnvironmentOwner(o.(*labforgev1alpha1.LabEnvironment)) }}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName+"-labenvironment").
		// Not woken by a claim's deletion: the LabClaim controller deletes the claim's lab
		// at once (deleteOrphanedLabs), and two controllers racing to delete the same lab
		// cost a lookup, a refused delete and an event more per claim. A lab left behind
		// all the same is seen here on its own next event or after a restart.
		For(&labforgev1alpha1.LabEnvironment{}, candidates(environments)).
		Watches(&labforgev1alpha1.LabPool{}, handler.EnqueueRequestsFromMapFunc(r.labsOfPool), onDelete).
		Complete(environments); err != nil {
		return fmt.Errorf("setting up the orphan sweep of LabEnvironments: %w", err)
	}
	return nil
}

// setupSecrets sweeps the claims' Secrets, woken also by their claim's deletion.
func (r *Reconciler) setupSecrets(mgr ctrl.Manager) error {
	secrets := &sweeper{Reconciler: r, kind: "Secret", newObj: func() client.Object { return &corev1.Secret{} },
		owner: func(o client.Object) (Owner, bool) { return SecretOwner(o) }}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName+"-secret").
		For(&corev1.Secret{}, candidates(secrets)).
		Watches(&labforgev1alpha1.LabClaim{}, handler.EnqueueRequestsFromMapFunc(
			func(_ context.Context, o client.Object) []reconcile.Request {
				return []reconcile.Request{
					{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: render.KubeconfigSecretName(o.GetName())}},
					{NamespacedName: client.ObjectKey{Namespace: o.GetNamespace(), Name: render.SSHKeySecretName(o.GetName())}},
				}
			}), onDelete).
		Complete(secrets); err != nil {
		return fmt.Errorf("setting up the orphan sweep of Secrets: %w", err)
	}
	return nil
}

// labsOfPool wakes the labs of a deleted pool.
func (r *Reconciler) labsOfPool(ctx context.Context, o client.Object) []reconcile.Request {
	var list labforgev1alpha1.LabEnvironmentList
	if err := r.Client.List(ctx, &list, client.MatchingLabels{labforgev1alpha1.LabelPool: o.GetName()}, client.UnsafeDisableDeepCopy); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list the LabEnvironments of a deleted LabPool", "pool", o.GetName())
		return nil
	}
	return requests(list.Items)
}

func requests(envs []labforgev1alpha1.LabEnvironment) []reconcile.Request {
	reqs := make([]reconcile.Request, 0, len(envs))
	for _, env := range envs {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Name: env.Name}})
	}
	return reqs
}
