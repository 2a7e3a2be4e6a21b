package labclaim

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/solution"
)

func TestSetSolved(t *testing.T) {
	now := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	earlier := metav1.NewTime(now.Add(-time.Minute))
	checks := []labforgev1alpha1.SolutionCheck{{Name: "a"}, {Name: "b"}}
	tests := map[string]struct {
		sol           *solutionScope
		before        []labforgev1alpha1.CheckStatus
		wantCondition *metav1.Condition
		wantChecks    []labforgev1alpha1.CheckStatus
		wantSolved    bool
	}{
		"no checks: nothing": {},
		"the lab not ready yet": {
			sol:           &solutionScope{checks: checks},
			wantCondition: &metav1.Condition{Status: metav1.ConditionUnknown, Reason: labforgev1alpha1.ReasonWaitingForChecks, Message: "The lab's 2 checks are evaluated once it is ready and handed over"},
		},
		"a failing check wins over one that cannot be evaluated, and both are named": {
			sol: &solutionScope{checks: checks, results: []solution.Result{
				{Name: "a", State: solution.Unevaluable, Message: "Cannot evaluate: refused"},
				{Name: "b", State: solution.Failed, Message: "the hint"},
			}},
			before:        []labforgev1alpha1.CheckStatus{{Name: "a", Passed: false, LastTransitionTime: &earlier}},
			wantCondition: &metav1.Condition{Status: metav1.ConditionFalse, Reason: labforgev1alpha1.ReasonChecksFailed, Message: "1 of 2 checks fail: b: the hint; a: Cannot evaluate: refused"},
			wantChecks: []labforgev1alpha1.CheckStatus{
				{Name: "a", Passed: false, Message: "Cannot evaluate: refused", LastTransitionTime: &earlier},
				{Name: "b", Passed: false, Message: "the hint", LastTransitionTime: &metav1.Time{Time: now}},
			},
		},
		"one cannot be evaluated, the other passes: Unknown, never True": {
			sol: &solutionScope{checks: checks, results: []solution.Result{
				{Name: "a", State: solution.Passed, Message: "ok"},
				{Name: "b", State: solution.Unevaluable, Message: "Cannot evaluate: down"},
			}},
			wantCondition: &metav1.Condition{Status: metav1.ConditionUnknown, Reason: labforgev1alpha1.ReasonChecksNotEvaluated, Message: "1 of 2 checks cannot be evaluated: b: Cannot evaluate: down"},
			wantChecks: []labforgev1alpha1.CheckStatus{
				{Name: "a", Passed: true, Message: "ok", LastTransitionTime: &metav1.Time{Time: now}},
				{Name: "b", Passed: false, Message: "Cannot evaluate: down", LastTransitionTime: &metav1.Time{Time: now}},
			},
		},
		"all pass: Solved, a check that turned passing gets a new transition time": {
			sol: &solutionScope{checks: checks, results: []solution.Result{
				{Name: "a", State: solution.Passed, Message: "ok"}, {Name: "b", State: solution.Passed, Message: "ok too"},
			}},
			before:        []labforgev1alpha1.CheckStatus{{Name: "a", Passed: false, LastTransitionTime: &earlier}, {Name: "b", Passed: true, LastTransitionTime: &earlier}},
			wantCondition: &metav1.Condition{Status: metav1.ConditionTrue, Reason: labforgev1alpha1.ReasonAllChecksPassed, Message: "All 2 checks pass"},
			wantChecks: []labforgev1alpha1.CheckStatus{
				{Name: "a", Passed: true, Message: "ok", LastTransitionTime: &metav1.Time{Time: now}},
				{Name: "b", Passed: true, Message: "ok too", LastTransitionTime: &earlier},
			},
			wantSolved: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := &scope{claim: &labforgev1alpha1.LabClaim{}, now: now, solution: tc.sol}
			s.claim.Status.Checks = tc.before
			setSolved(s, true)
			got := meta.FindStatusCondition(s.claim.Status.Conditions, labforgev1alpha1.ConditionSolved)
			if got != nil {
				got = &metav1.Condition{Status: got.Status, Reason: got.Reason, Message: got.Message}
			}
			if diff := cmp.Diff(tc.wantCondition, got); diff != "" {
				t.Errorf("Solved (-want +got):\n%s", diff)
			}
			if tc.sol != nil && tc.sol.results != nil {
				if diff := cmp.Diff(tc.wantChecks, s.claim.Status.Checks); diff != "" {
					t.Errorf("status.checks (-want +got):\n%s", diff)
				}
			}
			if solved := s.claim.Status.SolvedTime != nil; solved != tc.wantSolved {
				t.Errorf("solvedTime set = %v, want %v", solved, tc.wantSolved)
			}
		})
	}
}
