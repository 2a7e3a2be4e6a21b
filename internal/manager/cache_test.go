package manager

import (
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// TestCompactMetaSharesStrings decodes two objects of one lab, as the cache does, and
// checks that compactMeta keeps their metadata as it was while the strings they have in
// common end up stored once.
func TestCompactMetaSharesStrings(t *testing.T) {
	obj := func(name string) *corev1.ConfigMap {
		// Fresh strings for every field, as a decoder makes them.
		s := func(v string) string { return string([]byte(v)) }
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: s(name), Namespace: s("lab-a"), UID: types.UID(s("uid-of-object-" + name)),
			Labels:      map[string]string{s("labforge.dev/managed-by"): s("labforge"), s("labforge.dev/environment"): s("a")},
			Annotations: map[string]string{s("note"): s("n")},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: s("labforge.dev/v1alpha1"), Kind: s("LabEnvironment"),
				Name: s("a"), UID: types.UID(s("owner-uid")), Controller: ptr.To(true)}},
			Finalizers:    []string{s("labforge.dev/cleanup")},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "labforge"}},
		}, Data: map[string]string{"k": s("v")}}
	}
	var out [2]*corev1.ConfigMap
	for i, name := range []string{"one", "two"} {
		o, err := compactMeta(obj(name))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = o.(*corev1.ConfigMap)
	}
	a, b := out[0], out[1]
	if a.ManagedFields != nil {
		t.Error("managedFields kept in the cache")
	}
	if a.Name != "one" || a.Namespace != "lab-a" || a.Labels["labforge.dev/environment"] != "a" ||
		a.Annotations["note"] != "n" || a.OwnerReferences[0].Kind != "LabEnvironment" ||
		a.OwnerReferences[0].UID != "owner-uid" || !*a.OwnerReferences[0].Controller ||
		a.Finalizers[0] != "labforge.dev/cleanup" || a.Data["k"] != "v" || a.UID != "uid-of-object-one" {
		t.Errorf("metadata changed: %+v", a)
	}
	same := func(what, x, y string) {
		t.Helper()
		if unsafe.StringData(x) != unsafe.StringData(y) {
			t.Errorf("%s stored twice", what)
		}
	}
	same("namespace", a.Namespace, b.Namespace)
	same("label value", a.Labels["labforge.dev/managed-by"], b.Labels["labforge.dev/managed-by"])
	same("annotation value", a.Annotations["note"], b.Annotations["note"])
	same("owner name", a.OwnerReferences[0].Name, b.OwnerReferences[0].Name)
	same("owner UID", string(a.OwnerReferences[0].UID), string(b.OwnerReferences[0].UID))
	same("owner kind", a.OwnerReferences[0].Kind, b.OwnerReferences[0].Kind)
	same("finalizer", a.Finalizers[0], b.Finalizers[0])
	for k := range a.Labels {
		for k2 := range b.Labels {
			if k == k2 {
				same("label key", k, k2)
			}
		}
	}
	// Objects that are not Kubernetes objects pass through.
	if got, _ := compactMeta("x"); got != "x" {
		t.Errorf("compactMeta(%q) = %v", "x", got)
	}
}
