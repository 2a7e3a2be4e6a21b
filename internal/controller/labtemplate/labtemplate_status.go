package labtemplate

import (
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// setStatus sets the template's Ready and Stalled conditions and observedGeneration from
// the problems templatecheck.Check found. An invalid template cannot get better by retrying, so it is Stalled
// as well as not Ready.
func setStatus(t *labforgev1alpha1.LabTemplate, problems []string) {
	gen := t.Generation
	if len(problems) == 0 {
		meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{
			Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: gen,
			Reason: labforgev1alpha1.ReasonAccepted, Message: "Labs can be built from this template",
		})
		meta.RemoveStatusCondition(&t.Status.Conditions, labforgev1alpha1.ConditionStalled)
	} else {
		msg := strings.Join(problems, "; ")
		meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{
			Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionFalse, ObservedGeneration: gen,
			Reason: labforgev1alpha1.ReasonInvalidTemplate, Message: msg,
		})
		meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{
			Type: labforgev1alpha1.ConditionStalled, Status: metav1.ConditionTrue, ObservedGeneration: gen,
			Reason: labforgev1alpha1.ReasonInvalidTemplate, Message: "Fix the template: " + msg,
		})
	}
	t.Status.ObservedGeneration = gen
}
