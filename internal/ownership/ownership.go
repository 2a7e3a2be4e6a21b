// Package ownership adopts and releases the objects labforge's controllers own, the way
// Kubernetes' own controllers do (ReplicaSet's ControllerRefManager): an object that has
// no controlling owner and carries its owner's labels is adopted, an object its owner no
// longer wants is released, each with one patch under an optimistic lock, so a concurrent
// change (a bind, another operator's adoption) makes the write fail rather than win.
//
// Owner references are what the garbage collector follows, but nothing keeps them: a
// backup restored without them (Velero and most GitOps tools drop or rewrite them), a
// kubectl edit, or an older operator leaves objects with labels and no owner. The
// controllers call Adopt on the objects they find that way, so the owner graph comes back
// and deletion cleans up again.
package ownership

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// ControllerReference returns the owner reference labforge writes on what an object of
// kind (a labforge kind) controls: the one controller, which blocks its owner's
// foreground deletion until the object is gone.
func ControllerReference(kind string, owner metav1.Object) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion:         labforgev1alpha1.GroupVersion.String(),
		Kind:               kind,
		Name:               owner.GetName(),
		UID:                owner.GetUID(),
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}
}

// Orphan says whether obj has no controlling owner.
func Orphan(obj metav1.Object) bool { return metav1.GetControllerOf(obj) == nil }

// Managed says whether obj is labelled as labforge's. Only such objects are ever adopted or
// removed as orphans: anything else is someone else's, whatever its name.
func Managed(obj metav1.Object) bool {
	return obj.GetLabels()[labforgev1alpha1.LabelManagedBy] == labforgev1alpha1.ManagedByValue
}

// Adopt makes ref the controller of obj, which must have no controller. obj is updated in
// place with what the API server returned. On a conflict (obj as read was stale), obj is
// read again through reader, when given: if ref's owner controls it now (an earlier pass
// adopted it and the cache has not caught up), that is success.
func Adopt(ctx context.Context, c client.Client, reader client.Reader, obj client.Object, ref metav1.OwnerReference) error {
	if owner := metav1.GetControllerOf(obj); owner != nil {
		return fmt.Errorf("adopting %s: it is controlled by %s %s", key(obj), owner.Kind, owner.Name)
	}
	patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
	obj.SetOwnerReferences(append(obj.GetOwnerReferences(), ref))
	err := c.Patch(ctx, obj, patch)
	if apierrors.IsConflict(err) && reader != nil {
		if getErr := reader.Get(ctx, client.ObjectKeyFromObject(obj), obj); getErr == nil {
			if owner := metav1.GetControllerOf(obj); owner != nil && owner.UID == ref.UID {
				return nil
			}
		}
	}
	if err != nil {
		return fmt.Errorf("adopting %s: %w", key(obj), err)
	}
	return nil
}

// Release removes the owner reference of the owner with uid from obj, leaving any other.
func Release(ctx context.Context, c client.Client, obj client.Object, uid types.UID) error {
	refs := obj.GetOwnerReferences()
	kept := make([]metav1.OwnerReference, 0, len(refs))
	for _, r := range refs {
		if r.UID != uid {
			kept = append(kept, r)
		}
	}
	if len(kept) == len(refs) {
		return nil
	}
	patch := client.MergeFromWithOptions(obj.DeepCopyObject().(client.Object), client.MergeFromWithOptimisticLock{})
	obj.SetOwnerReferences(kept)
	if err := c.Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("releasing %s: %w", key(obj), err)
	}
	return nil
}

func key(obj client.Object) string {
	if obj.GetNamespace() == "" {
		return obj.GetName()
	}
	return obj.GetNamespace() + "/" + obj.GetName()
}
