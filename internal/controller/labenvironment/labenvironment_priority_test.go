package labenvironment

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/claimsfirst"
)

// TestWorkPriority: a lab a claim waits on boots first, a lab being deleted last
// (decision 91).
func TestWorkPriority(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := labforgev1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	claim := &labforgev1alpha1.ClaimReference{Namespace: "students", Name: "alice"}
	lab := func(name string, mutate func(*labforgev1alpha1.LabEnvironment)) *labforgev1alpha1.LabEnvironment {
		env := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: name}}
		mutate(env)
		return env
	}
	objs := []client.Object{
		lab("warm-building", func(*labforgev1alpha1.LabEnvironment) {}),
		lab("cold-for-claim", func(e *labforgev1alpha1.LabEnvironment) { e.Spec.ClaimRef = claim }),
		lab("handed-over", func(e *labforgev1alpha1.LabEnvironment) { e.Spec.ClaimRef, e.Status.ReadyTime = claim, &now }),
		lab("going", func(e *labforgev1alpha1.LabEnvironment) {
			e.DeletionTimestamp, e.Finalizers = &now, []string{labforgev1alpha1.LabEnvironmentFinalizer}
		}),
	}
	r := &Reconciler{Client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithStatusSubresource(objs...).Build()}
	for name, want := range map[string]int{
		"warm-building":  claimsfirst.Normal,
		"cold-for-claim": claimsfirst.Claim,
		"handed-over":    claimsfirst.Normal,
		"going":          claimsfirst.Background,
		"gone":           claimsfirst.Normal,
	} {
		if got := r.workPriority(reconcile.Request{NamespacedName: client.ObjectKey{Name: name}}); got != want {
			t.Errorf("%s: priority %d, want %d", name, got, want)
		}
	}
}
