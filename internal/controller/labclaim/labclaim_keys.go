package labclaim

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
)

// maxKeysMessage bounds the part of a claim's message that comes from KubeVirt's.
const maxKeysMessage = 256

// observeKeys holds the claim of a Ready lab until KubeVirt says that every VM's guest
// agent synchronised its access credentials, the way the student's keys reach the VMs.
//
// KubeVirt's virt-handler writes AccessCredentialsSynchronized only when the result or
// the message of a sync changes (v1.8, pkg/virt-handler: updateAccessCredentialConditions):
// a VM whose agent synchronised an empty key Secret at boot already says True, and keeps
// saying it after the claim's keys arrive. So True proves that the agent works and its
// last sync succeeded, not that it has these keys; False proves that keys cannot reach
// the VM, and is what a student would otherwise learn only from a refused ssh (decision 52).
func (r *Reconciler) observeKeys(ctx context.Context, s *scope) error {
	var vmis kubevirtv1.VirtualMachineInstanceList
	if err := r.Client.List(ctx, &vmis, client.InNamespace(lab.Namespace(s.env.Name)),
		client.MatchingLabels{labforgev1alpha1.LabelEnvironment: s.env.Name}); err != nil {
		return fmt.Errorf("listing the VMs of lab %s: %w", s.env.Name, err)
	}
	s.pendingReason, s.pendingMessage = keysPending(vmis.Items)
	return nil
}

// keysPending says why the keys of a lab whose VMs are vmis may not be in place yet:
// empty when every VM's guest agent reports a successful synchronisation.
func keysPending(vmis []kubevirtv1.VirtualMachineInstance) (reason, message string) {
	var waiting, failed []string
	for i := range vmis {
		vmi := &vmis[i]
		c := vmiCondition(vmi, kubevirtv1.VirtualMachineInstanceAccessCredentialsSynchronized)
		switch {
		case c == nil || c.Status == corev1.ConditionUnknown:
			waiting = append(waiting, vmi.Name)
		case c.Status == corev1.ConditionFalse:
			msg := labprobe.SanitizeMessage(c.Message)
			if len(msg) > maxKeysMessage {
				msg = strings.ToValidUTF8(msg[:maxKeysMessage], "") + "..."
			}
			if msg == "" {
				msg = "no reason given"
			}
			failed = append(failed, fmt.Sprintf("%s (%s)", vmi.Name, msg))
		}
	}
	slices.Sort(waiting)
	slices.Sort(failed)
	switch {
	case len(failed) > 0:
		return labforgev1alpha1.ReasonKeysNotSynchronized, "KubeVirt could not put the SSH keys into VM " + strings.Join(failed, ", ") +
			"; the claim is Ready once they are in place"
	case len(waiting) > 0:
		return labforgev1alpha1.ReasonWaitingForKeys, "Waiting for the guest agent of VM " + strings.Join(waiting, ", ") + " to put the SSH keys in place"
	}
	return "", ""
}

func vmiCondition(vmi *kubevirtv1.VirtualMachineInstance, t kubevirtv1.VirtualMachineInstanceConditionType) *kubevirtv1.VirtualMachineInstanceCondition {
	for i := range vmi.Status.Conditions {
		if vmi.Status.Conditions[i].Type == t {
			return &vmi.Status.Conditions[i]
		}
	}
	return nil
}

// keysChanged says whether KubeVirt's report of a VM's access credentials changed
// between two versions of its VMI.
func keysChanged(old, cur *kubevirtv1.VirtualMachineInstance) bool {
	a := vmiCondition(old, kubevirtv1.VirtualMachineInstanceAccessCredentialsSynchronized)
	b := vmiCondition(cur, kubevirtv1.VirtualMachineInstanceAccessCredentialsSynchronized)
	if a == nil || b == nil {
		return (a == nil) != (b == nil)
	}
	return a.Status != b.Status || a.Message != b.Message
}
