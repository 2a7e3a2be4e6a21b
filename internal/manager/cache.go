package manager

import (
	"unique"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
)

// What the cache keeps of each object is decided here: the cache is most of the
// operator's memory, about 19 objects per lab (docs/performance.md, "scale").

// cacheOptions caches only labforge's own objects of the kinds a host cluster has many of,
// and keeps of every object only what labforge reads.
func cacheOptions() cache.Options {
	return cache.Options{
		DefaultTransform: compactMeta,
		// Only labforge's own objects of these kinds are cached: a host cluster's other
		// Secrets and ConfigMaps are none of its business and would cost memory.
		ByObject: managedOnly(&corev1.Secret{}, &corev1.ConfigMap{}, &corev1.Service{},
			&corev1.ResourceQuota{}, &corev1.LimitRange{}, &networkingv1.NetworkPolicy{},
			&kubevirtv1.VirtualMachine{}, &kubevirtv1.VirtualMachineInstance{}),
	}
}

// managedOnly restricts the cache of each kind to objects labelled as labforge's.
func managedOnly(objs ...client.Object) map[client.Object]cache.ByObject {
	selector := labels.SelectorFromSet(labels.Set{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue})
	out := make(map[client.Object]cache.ByObject, len(objs))
	for _, o := range objs {
		by := cache.ByObject{Label: selector}
		switch o.(type) {
		case *corev1.Secret:
			by.Transform = dropUserData
		case *kubevirtv1.VirtualMachineInstance:
			by.Transform = vmiStatusOnly
		case *corev1.ResourceQuota:
			by.Transform = quotaWithoutUsage
		}
		out[o] = by
	}
	return out
}

// compactMeta drops an object's managedFields, which labforge never reads and which are
// most of the bytes of many objects, and makes the strings of its metadata that other
// objects share (its namespace, label and annotation keys and values, owner references,
// finalizers, and names every lab has such as "lab-pki") point at one copy each instead of
// one per object: a lab's nineteen objects carry its namespace, name and labels nineteen
// times. Every cached object goes through it, also through the transforms below.
//
// The copies are Go's canonical ones (package unique): held only while some object uses
// them, so the names of deleted labs do not pile up.
func compactMeta(in any) (any, error) {
	o, ok := in.(metav1.Object)
	if !ok {
		return in, nil
	}
	o.SetManagedFields(nil)
	o.SetNamespace(intern(o.GetNamespace()))
	o.SetName(intern(o.GetName()))
	o.SetLabels(internMap(o.GetLabels()))
	o.SetAnnotations(internMap(o.GetAnnotations()))
	refs := o.GetOwnerReferences()
	for i := range refs {
		r := &refs[i]
		r.APIVersion, r.Kind, r.Name = intern(r.APIVersion), intern(r.Kind), intern(r.Name)
		r.UID = types.UID(intern(string(r.UID)))
	}
	finalizers := o.GetFinalizers()
	for i := range finalizers {
		finalizers[i] = intern(finalizers[i])
	}
	return in, nil
}

// intern returns the canonical copy of s.
func intern(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}

// internMap returns m with canonical keys and values, in a new map of its exact size.
func internMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[intern(k)] = intern(v)
	}
	return out
}

// vmiStatusOnly keeps a VMI's metadata and status in the cache, not its spec: labforge
// reads only what KubeVirt reports of a VMI, and a VMI's spec is its VM's template again
// with KubeVirt's defaults, a tenth of a thousand labs' cache. The simulated backend takes
// what it needs from the VM.
func vmiStatusOnly(in any) (any, error) {
	if vmi, ok := in.(*kubevirtv1.VirtualMachineInstance); ok {
		vmi.Spec = kubevirtv1.VirtualMachineInstanceSpec{}
	}
	return compactMeta(in)
}

// quotaWithoutUsage keeps a ResourceQuota without its status: labforge writes a lab's
// quota and never reads what it counts.
func quotaWithoutUsage(in any) (any, error) {
	if q, ok := in.(*corev1.ResourceQuota); ok {
		q.Status = corev1.ResourceQuotaStatus{}
	}
	return compactMeta(in)
}

// dropUserData keeps only the metadata of cloud-init Secrets in the cache. They are
// written once and never read back, and at 17-26 KB each they would be most of the cache
// of a thousand labs.
func dropUserData(in any) (any, error) {
	if s, ok := in.(*corev1.Secret); ok {
		if _, ok := s.Labels[lab.LabelUserData]; ok {
			s.Data = nil
			s.StringData = nil
		}
	}
	return compactMeta(in)
}
