package ownership_test

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/labforge/labforge/internal/ownership"
)

var (
	env   = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "e", UID: "env-uid"}}
	ref   = ownership.ControllerReference("LabEnvironment", env)
	other = metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "other", UID: "other-uid"}
)

func TestControllerReference(t *testing.T) {
	want := metav1.OwnerReference{APIVersion: "labforge.dev/v1alpha1", Kind: "LabEnvironment", Name: "e", UID: "env-uid",
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}
	if diff := cmp.Diff(want, ref); diff != "" {
		t.Errorf("ControllerReference (-want +got):\n%s", diff)
	}
}

func stored(t *testing.T, c client.Client, name string) *corev1.Secret {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: "lab-e", Name: name}, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAdopt(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithObjects(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "lab-e", Name: "orphan", OwnerReferences: []metav1.OwnerReference{other}}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "lab-e", Name: "taken",
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "x", UID: "x", Controller: ptr.To(true)}}}},
	).Build()

	t.Run("an orphan gets the controller, keeping its other owners", func(t *testing.T) {
		obj := stored(t, c, "orphan")
		if err := ownership.Adopt(ctx, c, nil, obj, ref); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]metav1.OwnerReference{other, ref}, stored(t, c, "orphan").OwnerReferences); diff != "" {
			t.Errorf("owner references (-want +got):\n%s", diff)
		}
	})
	t.Run("a controlled object is never taken over", func(t *testing.T) {
		err := ownership.Adopt(ctx, c, nil, stored(t, c, "taken"), ref)
		if got, want := errString(err), "adopting lab-e/taken: it is controlled by ConfigMap x"; got != want {
			t.Errorf("error = %q, want %q", got, want)
		}
	})
	t.Run("a stale read conflicts instead of overwriting", func(t *testing.T) {
		stale := stored(t, c, "taken")
		stale.OwnerReferences = nil
		stale.ResourceVersion = "1"
		if err := ownership.Adopt(ctx, c, nil, stale, ref); !apierrors.IsConflict(err) {
			t.Errorf("error = %v, want a conflict", err)
		}
	})
	t.Run("a stale read of an object this owner adopted already is success", func(t *testing.T) {
		stale := stored(t, c, "orphan")
		stale.OwnerReferences = []metav1.OwnerReference{other}
		stale.ResourceVersion = "1"
		if err := ownership.Adopt(ctx, c, c, stale, ref); err != nil {
			t.Errorf("error = %v, want none", err)
		}
	})
}

func TestRelease(t *testing.T) {
	ctx := context.Background()
	c := fake.NewClientBuilder().WithObjects(
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "lab-e", Name: "s", OwnerReferences: []metav1.OwnerReference{other, ref}}},
	).Build()
	obj := stored(t, c, "s")
	rv := obj.ResourceVersion
	if err := ownership.Release(ctx, c, obj, "nobody"); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, c, "s").ResourceVersion; got != rv {
		t.Errorf("releasing an owner the object does not have wrote it (resourceVersion %s -> %s)", rv, got)
	}
	if err := ownership.Release(ctx, c, obj, ref.UID); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]metav1.OwnerReference{other}, stored(t, c, "s").OwnerReferences); diff != "" {
		t.Errorf("owner references (-want +got):\n%s", diff)
	}
}

func TestManagedAndOrphan(t *testing.T) {
	tests := map[string]struct {
		meta                  metav1.ObjectMeta
		wantManaged, wantOrph bool
	}{
		"labforge's, no owner":   {meta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/managed-by": "labforge"}}, wantManaged: true, wantOrph: true},
		"someone else's":         {meta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/managed-by": "helm"}}, wantOrph: true},
		"owned, not controlled":  {meta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{other}}, wantOrph: true},
		"controlled by labforge": {meta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{ref}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			obj := &corev1.Secret{ObjectMeta: tc.meta}
			if got := ownership.Managed(obj); got != tc.wantManaged {
				t.Errorf("Managed = %v, want %v", got, tc.wantManaged)
			}
			if got := ownership.Orphan(obj); got != tc.wantOrph {
				t.Errorf("Orphan = %v, want %v", got, tc.wantOrph)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
