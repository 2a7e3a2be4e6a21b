package labclaim

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

func TestKeysPending(t *testing.T) {
	vmi := func(name string, status corev1.ConditionStatus, msg string) kubevirtv1.VirtualMachineInstance {
		v := kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if status != "" {
			v.Status.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{
				{Type: kubevirtv1.VirtualMachineInstanceReady, Status: corev1.ConditionTrue},
				{Type: kubevirtv1.VirtualMachineInstanceAccessCredentialsSynchronized, Status: status, Message: msg},
			}
		}
		return v
	}
	tests := map[string]struct {
		vmis                    []kubevirtv1.VirtualMachineInstance
		wantReason, wantMessage string
	}{
		"every agent synchronised": {
			vmis: []kubevirtv1.VirtualMachineInstance{vmi("control-plane", corev1.ConditionTrue, ""), vmi("worker-1", corev1.ConditionTrue, "")},
		},
		"an agent that has not reported yet": {
			vmis:        []kubevirtv1.VirtualMachineInstance{vmi("worker-2", "", ""), vmi("control-plane", corev1.ConditionTrue, ""), vmi("worker-1", corev1.ConditionUnknown, "")},
			wantReason:  labforgev1alpha1.ReasonWaitingForKeys,
			wantMessage: "Waiting for the guest agent of VM worker-1, worker-2 to put the SSH keys in place",
		},
		"a failed sync wins over a pending one, with KubeVirt's message cleaned": {
			vmis: []kubevirtv1.VirtualMachineInstance{vmi("worker-1", "", ""),
				vmi("control-plane", corev1.ConditionFalse, "guest agent\x1b[31m not\n responding")},
			wantReason:  labforgev1alpha1.ReasonKeysNotSynchronized,
			wantMessage: "KubeVirt could not put the SSH keys into VM control-plane (guest agent[31m not responding); the claim is Ready once they are in place",
		},
		"a failed sync without a message": {
			vmis:        []kubevirtv1.VirtualMachineInstance{vmi("worker-1", corev1.ConditionFalse, "")},
			wantReason:  labforgev1alpha1.ReasonKeysNotSynchronized,
			wantMessage: "KubeVirt could not put the SSH keys into VM worker-1 (no reason given); the claim is Ready once they are in place",
		},
		"no VMs yet": {},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			reason, msg := keysPending(tc.vmis)
			if d := cmp.Diff(tc.wantReason, reason); d != "" {
				t.Errorf("reason (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.wantMessage, msg); d != "" {
				t.Errorf("message (-want +got):\n%s", d)
			}
		})
	}
}

func TestKeysPendingBoundsKubeVirtsMessage(t *testing.T) {
	long := strings.Repeat("é", 400) // two bytes each: the cut must not split one
	_, msg := keysPending([]kubevirtv1.VirtualMachineInstance{{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-1"},
		Status: kubevirtv1.VirtualMachineInstanceStatus{Conditions: []kubevirtv1.VirtualMachineInstanceCondition{
			{Type: kubevirtv1.VirtualMachineInstanceAccessCredentialsSynchronized, Status: corev1.ConditionFalse, Message: long},
		}},
	}})
	inner := strings.TrimSuffix(strings.TrimPrefix(msg, "KubeVirt could not put the SSH keys into VM worker-1 ("), "); the claim is Ready once they are in place")
	if want := strings.Repeat("é", maxKeysMessage/2) + "..."; inner != want {
		t.Errorf("KubeVirt's message became %q (%d bytes), want %d bytes", inner, len(inner), len(want))
	}
}

func TestKeysChanged(t *testing.T) {
	with := func(status corev1.ConditionStatus, msg string) *kubevirtv1.VirtualMachineInstance {
		return &kubevirtv1.VirtualMachineInstance{Status: kubevirtv1.VirtualMachineInstanceStatus{Conditions: []kubevirtv1.VirtualMachineInstanceCondition{
			{Type: kubevirtv1.VirtualMachineInstanceAccessCredentialsSynchronized, Status: status, Message: msg},
		}}}
	}
	none := &kubevirtv1.VirtualMachineInstance{}
	tests := map[string]struct {
		old, cur *kubevirtv1.VirtualMachineInstance
		want     bool
	}{
		"appears":          {old: none, cur: with(corev1.ConditionTrue, ""), want: true},
		"unchanged":        {old: with(corev1.ConditionTrue, ""), cur: with(corev1.ConditionTrue, ""), want: false},
		"fails":            {old: with(corev1.ConditionTrue, ""), cur: with(corev1.ConditionFalse, "x"), want: true},
		"another failure":  {old: with(corev1.ConditionFalse, "x"), cur: with(corev1.ConditionFalse, "y"), want: true},
		"neither reported": {old: none, cur: none, want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := keysChanged(tc.old, tc.cur); got != tc.want {
				t.Errorf("keysChanged = %v, want %v", got, tc.want)
			}
		})
	}
}
