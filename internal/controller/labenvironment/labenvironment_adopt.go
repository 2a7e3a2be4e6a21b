package labenvironment

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/internal/render"
)

// labelledFor says whether obj carries the labels labforge puts on env's objects. With no
// controller, that is what makes it env's to adopt (or to delete with env).
func labelledFor(obj metav1.Object, env *labforgev1alpha1.LabEnvironment) bool {
	return ownership.Managed(obj) && obj.GetLabels()[labforgev1alpha1.LabelEnvironment] == env.Name
}

// belongsTo says whether obj is env's: controlled by env (same UID, not just the same
// name), or an orphan labelled as env's.
func belongsTo(obj metav1.Object, env *labforgev1alpha1.LabEnvironment) bool {
	if ref := metav1.GetControllerOf(obj); ref != nil {
		return ref.UID == env.UID
	}
	return labelledFor(obj, env)
}

// namespaceIdentity is what the proof on env's namespace binds it to.
func namespaceIdentity(env *labforgev1alpha1.LabEnvironment) ownership.Identity {
	pool := ""
	if env.Spec.PoolRef != nil {
		pool = env.Spec.PoolRef.Name
	}
	return ownership.LabNamespace(namespaceOf(env), env.Name, env.UID, pool)
}

// namespaceIsLabs says whether ns is the namespace labforge made for env. A namespace is
// cluster-scoped, and whoever may create namespaces may create lab-<name> before the lab
// does, with labforge's labels and an owner reference to the lab: neither proves
// anything. What does:
//   - the proof annotation, an HMAC under the operator's own key over the namespace's
//     name, the lab's name and UID and its pool (ownership.Prover), written when the
//     operator created the namespace; with it an orphan (a restore that dropped owner
//     references) is adopted;
//   - or, for a namespace made before proofs existed or under a key since lost: env
//     controls it and env's status recorded this very namespace (status.namespaceUID,
//     which only the operator writes, and a UID nobody can choose). The next apply
//     writes the proof under the current key.
//
// Anything else is not the lab's: it is never adopted, used, written or deleted.
func (r *Reconciler) namespaceIsLabs(ns *corev1.Namespace, env *labforgev1alpha1.LabEnvironment) bool {
	if ns.UID != "" && ns.UID == env.Status.NamespaceUID && ownedBy(ns, env) {
		return true
	}
	return r.Prover.Proves(ns, namespaceIdentity(env)) && (ownership.Orphan(ns) || ownedBy(ns, env))
}

// claimChild says whether obj, one of the objects the lab is made of, is env's, adopting it
// first when it is an orphan labelled as env's (a restore that dropped owner references).
// An object controlled by anything else is never taken over.
func (r *Reconciler) claimChild(ctx context.Context, env *labforgev1alpha1.LabEnvironment, obj client.Object) (bool, error) {
	if !ownership.Orphan(obj) {
		return ownedBy(obj, env), nil
	}
	if !labelledFor(obj, env) || !env.DeletionTimestamp.IsZero() {
		return false, nil
	}
	// The cache may hold a LabEnvironment that was deleted and recreated under the same
	// name: only the live one, read from the API server, adopts.
	live := &labforgev1alpha1.LabEnvironment{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(env), live); err != nil {
		return false, client.IgnoreNotFound(fmt.Errorf("reading LabEnvironment %s: %w", env.Name, err))
	}
	if live.UID != env.UID || !live.DeletionTimestamp.IsZero() {
		return false, nil
	}
	if err := ownership.Adopt(ctx, r.Client, r.APIReader, obj, render.Lab{Env: env}.OwnerReference()); err != nil {
		return false, err
	}
	ctrl.LoggerFrom(ctx).Info("Adopted an orphaned object of LabEnvironment", "kind", kindOf(r.Client.Scheme(), obj),
		"namespace", obj.GetNamespace(), "name", obj.GetName())
	return true, nil
}

func kindOf(scheme *runtime.Scheme, obj client.Object) string {
	gvks, _, err := scheme.ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return fmt.Sprintf("%T", obj)
	}
	return gvks[0].Kind
}
