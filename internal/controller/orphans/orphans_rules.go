package orphans

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/internal/render"
)

// Kinds of owner an orphan names.
const (
	KindLabEnvironment = "LabEnvironment"
	KindLabPool        = "LabPool"
	KindLabClaim       = "LabClaim"
)

// Owner is the object a candidate orphan belongs to, by its labels or spec: the candidate
// is an orphan when no such object exists.
type Owner struct {
	// Kind is KindLabEnvironment, KindLabPool or KindLabClaim.
	Kind string
	// Namespace is the owner's namespace (LabClaims only).
	Namespace string
	// Name is the owner's name.
	Name string
	// UID, when set, is the owner's UID: an owner of that name with another UID is a
	// different object (deleted and created again), and the candidate an orphan.
	UID types.UID
}

// A candidate is always labelled as labforge's (app.kubernetes.io/managed-by=labforge) and
// not being deleted yet; the rules below add what else makes it one. Whatever has a
// controlling owner is the garbage collector's: it deletes an object whose owner (by UID)
// is gone, so only objects without one need labforge. A lab bound to a claim is the
// exception: a claim is namespaced and cannot own the cluster-scoped LabEnvironment, so
// spec.claimRef is the only link, and only labforge can follow it.

// candidate says whether obj may be an orphan at all.
func candidate(obj metav1.Object) bool {
	return ownership.Managed(obj) && obj.GetDeletionTimestamp().IsZero()
}

// NamespaceOwner returns the LabEnvironment a lab namespace with no owner belongs to: the
// one its environment label names, when the namespace carries that lab's name and the
// proof labforge wrote on it (p), which names the lab's UID. Labels alone prove nothing
// (anyone who may create namespaces may write them), so a namespace without a valid proof
// is never deleted, whatever its name and labels: a namespace of an earlier labforge
// (before proofs) or of a lost key stays for an admin to delete.
func NamespaceOwner(ns metav1.Object, p *ownership.Prover) (Owner, bool) {
	env := ns.GetLabels()[labforgev1alpha1.LabelEnvironment]
	if !candidate(ns) || !ownership.Orphan(ns) || env == "" || ns.GetName() != lab.Namespace(env) {
		return Owner{}, false
	}
	uid, proven := p.OwnerUID(ns, ownership.LabNamespace(ns.GetName(), env, "", ns.GetLabels()[labforgev1alpha1.LabelPool]))
	if !proven {
		return Owner{}, false
	}
	return Owner{Kind: KindLabEnvironment, Name: env, UID: uid}, true
}

// EnvironmentOwner returns what a LabEnvironment lives for: the claim it is bound to (by
// UID), or else, when it has no owner, the pool it was created for.
func EnvironmentOwner(env *labforgev1alpha1.LabEnvironment) (Owner, bool) {
	if !candidate(env) {
		return Owner{}, false
	}
	if ref := env.Spec.ClaimRef; ref != nil {
		return Owner{Kind: KindLabClaim, Namespace: ref.Namespace, Name: ref.Name, UID: ref.UID}, true
	}
	if ref := env.Spec.PoolRef; ref != nil && ownership.Orphan(env) {
		return Owner{Kind: KindLabPool, Name: ref.Name}, true
	}
	return Owner{}, false
}

// SecretOwner returns the LabClaim a claim's Secret with no owner belongs to: the one its
// claim label names, when the Secret carries one of that claim's Secret names.
func SecretOwner(secret metav1.Object) (Owner, bool) {
	claim := secret.GetLabels()[render.LabelClaim]
	if !candidate(secret) || !ownership.Orphan(secret) || claim == "" {
		return Owner{}, false
	}
	if name := secret.GetName(); name != render.KubeconfigSecretName(claim) && name != render.SSHKeySecretName(claim) {
		return Owner{}, false
	}
	return Owner{Kind: KindLabClaim, Namespace: secret.GetNamespace(), Name: claim}, true
}
