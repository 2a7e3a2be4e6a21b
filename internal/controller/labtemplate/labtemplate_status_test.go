package labtemplate

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

func TestSetStatus(t *testing.T) {
	ignoreTime := cmpopts.IgnoreFields(metav1.Condition{}, "LastTransitionTime")
	tests := map[string]struct {
		existing []metav1.Condition
		problems []string
		want     []metav1.Condition
	}{
		"valid template is Ready": {
			want: []metav1.Condition{{Type: "Ready", Status: "True", ObservedGeneration: 3, Reason: "Accepted", Message: "Labs can be built from this template"}},
		},
		"invalid template is not Ready and Stalled": {
			problems: []string{"a", "b"},
			want: []metav1.Condition{
				{Type: "Ready", Status: "False", ObservedGeneration: 3, Reason: "InvalidTemplate", Message: "a; b"},
				{Type: "Stalled", Status: "True", ObservedGeneration: 3, Reason: "InvalidTemplate", Message: "Fix the template: a; b"},
			},
		},
		"fixed template drops Stalled": {
			existing: []metav1.Condition{
				{Type: "Ready", Status: "False", ObservedGeneration: 2, Reason: "InvalidTemplate", Message: "a"},
				{Type: "Stalled", Status: "True", ObservedGeneration: 2, Reason: "InvalidTemplate", Message: "Fix the template: a"},
			},
			want: []metav1.Condition{{Type: "Ready", Status: "True", ObservedGeneration: 3, Reason: "Accepted", Message: "Labs can be built from this template"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tmpl := &labforgev1alpha1.LabTemplate{}
			tmpl.Generation = 3
			tmpl.Status.Conditions = tc.existing
			tmpl.Status.ObservedGeneration = -1
			setStatus(tmpl, tc.problems)
			if diff := cmp.Diff(tc.want, tmpl.Status.Conditions, ignoreTime); diff != "" {
				t.Errorf("conditions mismatch (-want +got):\n%s", diff)
			}
			if tmpl.Status.ObservedGeneration != 3 {
				t.Errorf("observedGeneration = %d, want 3", tmpl.Status.ObservedGeneration)
			}
		})
	}
}
