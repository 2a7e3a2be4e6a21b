package labclaim

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/claimsfirst"
)

// TestWorkPriority: a claim not yet served goes first, a released claim's clean-up last
// (decision 91).
func TestWorkPriority(t *testing.T) {
	waiting := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: "waiting"}}
	served := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: "served"},
		Status: labforgev1alpha1.LabClaimStatus{Conditions: []metav1.Condition{{Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionTrue}}}}
	r := &Reconciler{Client: fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(waiting, served).WithStatusSubresource(waiting, served).Build()}
	for name, want := range map[string]int{
		"waiting":  claimsfirst.Claim,
		"served":   claimsfirst.Normal,
		"released": claimsfirst.Background,
	} {
		if got := r.workPriority(reconcile.Request{NamespacedName: client.ObjectKey{Namespace: "students", Name: name}}); got != want {
			t.Errorf("%s: priority %d, want %d", name, got, want)
		}
	}
}
