package labclaim

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

func TestLaunchType(t *testing.T) {
	claimed := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	pool := &labforgev1alpha1.LocalObjectReference{Name: "warm"}
	tests := map[string]struct {
		templateRef   bool
		queuePosition int32
		labCreated    time.Time
		want          labforgev1alpha1.LaunchType
	}{
		"a lab booted for a template claim":           {templateRef: true, labCreated: claimed.Add(time.Second), want: labforgev1alpha1.LaunchCold},
		"a pool's lab, the claim never waited":        {labCreated: claimed.Add(time.Minute), want: labforgev1alpha1.LaunchWarm},
		"a pool's lab older than a claim that waited": {queuePosition: 2, labCreated: claimed.Add(-time.Minute), want: labforgev1alpha1.LaunchWarm},
		"a pool's lab booted while the claim waited":  {queuePosition: 1, labCreated: claimed.Add(time.Minute), want: labforgev1alpha1.LaunchCold},
		"a pool's lab as old as a claim that waited":  {queuePosition: 1, labCreated: claimed, want: labforgev1alpha1.LaunchCold},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			claim := &labforgev1alpha1.LabClaim{
				ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(claimed)},
				Status:     labforgev1alpha1.LabClaimStatus{QueuePosition: tc.queuePosition},
			}
			if tc.templateRef {
				claim.Spec.TemplateRef = &labforgev1alpha1.LocalObjectReference{Name: "t"}
			} else {
				claim.Spec.PoolRef = pool
			}
			env := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(tc.labCreated)}}
			if got := launchType(claim, env); got != tc.want {
				t.Errorf("launchType = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReportedPosition(t *testing.T) {
	tests := []struct {
		said, actual, want int32
	}{
		{said: 0, actual: 40, want: 40},  // first pass in line
		{said: 40, actual: 39, want: 40}, // moved up a little: the status stands
		{said: 40, actual: 21, want: 40},
		{said: 40, actual: 20, want: 20}, // halved: written
		{said: 40, actual: 45, want: 45}, // moved back (an older claim came in): written
		{said: 12, actual: 10, want: 10}, // within the exact ten
		{said: 3, actual: 2, want: 2},
	}
	for _, tc := range tests {
		if got := reportedPosition(tc.said, tc.actual); got != tc.want {
			t.Errorf("reportedPosition(said %d, actual %d) = %d, want %d", tc.said, tc.actual, got, tc.want)
		}
	}
}
