package labclaim

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// TestRestartedLab: a claim whose lab reports restarted VMs says so in a condition of
// its own, Ready staying as the lab reports it; the condition goes with the lab's.
func TestRestartedLab(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	const labMessage = "VMs restarted after the lab was ready and set themselves up again from empty disks: worker-1. A restarted control plane runs kubeadm init again"
	labWith := func(conditions ...metav1.Condition) *labforgev1alpha1.LabEnvironment {
		return &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: "pool-abcde"},
			Status: labforgev1alpha1.LabEnvironmentStatus{Conditions: conditions}}
	}
	restartedLab := metav1.Condition{Type: "VMsRestarted", Status: metav1.ConditionTrue, Reason: "VMRestarted", Message: labMessage}
	claimCondition := &metav1.Condition{Type: "VMsRestarted", Status: metav1.ConditionTrue, Reason: "VMRestarted", ObservedGeneration: 2,
		Message: "Lab pool-abcde: " + labMessage + ". Delete this claim and claim again for a fresh lab, or ask your admin"}
	handedOver := &handover{host: "labs.example.com", sshPort: 30022, apiPort: 30443, sshUser: "ubuntu"}
	tests := map[string]struct {
		scope     scope
		before    []metav1.Condition
		want      *metav1.Condition
		wantReady string
	}{
		"Ready lab with a restarted worker": {
			scope:     scope{env: labWith(restartedLab), duration: time.Hour, labReady: true, handover: handedOver},
			want:      claimCondition,
			wantReady: "LabReady",
		},
		"lab not Ready any more, restarted": {
			scope:     scope{env: labWith(restartedLab), duration: time.Hour, handover: handedOver},
			want:      claimCondition,
			wantReady: "LabBooting",
		},
		"lab without restarts": {
			scope:     scope{env: labWith(), duration: time.Hour, labReady: true, handover: handedOver},
			wantReady: "LabReady",
		},
		"lab gone: what the claim said stands": {
			scope:     scope{refusedReason: labforgev1alpha1.ReasonLabLost, refusedMessage: "Lab pool-abcde was deleted while the claim held it"},
			before:    []metav1.Condition{*claimCondition},
			want:      claimCondition,
			wantReady: "LabLost",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := tc.scope
			s.now = now
			s.claim = &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Name: "alice", Namespace: "students", Generation: 2}}
			s.claim.Status.Conditions = tc.before
			if s.env != nil {
				s.claim.Status.Lab = s.env.Name
			}
			setStatus(&s, true)
			got := meta.FindStatusCondition(s.claim.Status.Conditions, "VMsRestarted")
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(metav1.Condition{}, "LastTransitionTime")); diff != "" {
				t.Errorf("VMsRestarted (-want +got):\n%s", diff)
			}
			if ready := meta.FindStatusCondition(s.claim.Status.Conditions, "Ready"); ready == nil || ready.Reason != tc.wantReady {
				t.Errorf("Ready = %+v, want reason %s", ready, tc.wantReady)
			}
		})
	}
}
