package labenvironment

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

func TestBelongsTo(t *testing.T) {
	env := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: "e", UID: "e-uid"}}
	labels := func(managedBy, environment string) map[string]string {
		return map[string]string{labforgev1alpha1.LabelManagedBy: managedBy, labforgev1alpha1.LabelEnvironment: environment}
	}
	ref := func(uid string) []metav1.OwnerReference {
		return []metav1.OwnerReference{{APIVersion: "labforge.dev/v1alpha1", Kind: "LabEnvironment", Name: "e", UID: types.UID(uid), Controller: ptr.To(true)}}
	}
	tests := map[string]struct {
		meta metav1.ObjectMeta
		want bool
	}{
		"controlled by the lab":                       {meta: metav1.ObjectMeta{OwnerReferences: ref("e-uid")}, want: true},
		"controlled by an earlier lab of that name":   {meta: metav1.ObjectMeta{Labels: labels("labforge", "e"), OwnerReferences: ref("old-uid")}},
		"orphan labelled as the lab's":                {meta: metav1.ObjectMeta{Labels: labels("labforge", "e")}, want: true},
		"orphan labelled as another lab's":            {meta: metav1.ObjectMeta{Labels: labels("labforge", "f")}},
		"orphan with the lab's label, not labforge's": {meta: metav1.ObjectMeta{Labels: labels("someone", "e")}},
		"orphan with no labels":                       {},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := belongsTo(&corev1.Namespace{ObjectMeta: tc.meta}, env); got != tc.want {
				t.Errorf("belongsTo = %v, want %v", got, tc.want)
			}
		})
	}
}
