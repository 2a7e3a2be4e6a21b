package labenvironment

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/ownership"
)

var bootFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "labforge_lab_boot_failures_total",
	Help: "Labs that failed to become Ready, by template and reason (BootstrapFailed, BootTimeout, VMsNotRunning).",
}, []string{"template", "reason"})

// vmRestarts counts the restarts a lab reports (one per newly restarted set of its VMs):
// an admin alerts on it, since each one lost a student's work.
var vmRestarts = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "labforge_lab_vm_restarts_total",
	Help: "Times a Ready lab's VMs were found restarted (evicted, node lost, deleted) and rebuilt from empty disks, by template.",
}, []string{"template"})

func init() { metrics.Registry.MustRegister(bootFailures, vmRestarts) }

// terminalReasons are the Ready=False reasons retrying cannot fix.
var terminalReasons = map[string]bool{
	labforgev1alpha1.ReasonTemplateNotFound: true, labforgev1alpha1.ReasonInvalidTemplate: true, labforgev1alpha1.ReasonBootstrapFailed: true, labforgev1alpha1.ReasonBootTimeout: true,
	labforgev1alpha1.ReasonNamespaceLost: true, labforgev1alpha1.ReasonForeignNamespace: true,
}

// notBootFailures are the Ready=False reasons that say nothing about how labs of a
// template boot, and so are not counted as boot failures.
var notBootFailures = map[string]bool{
	labforgev1alpha1.ReasonInvalidTemplate: true, labforgev1alpha1.ReasonTemplateNotFound: true, labforgev1alpha1.ReasonNamespaceLost: true, labforgev1alpha1.ReasonForeignNamespace: true,
}

// setStatus computes the whole status from what this pass observed.
func setStatus(s *scope, succeeded bool) {
	st := &s.env.Status
	st.Namespace = namespaceOf(s.env)
	if s.namespaceUID != "" {
		st.NamespaceUID = s.namespaceUID
	}
	if s.rebuilt {
		// A lab built again in a new namespace has to prove itself Ready again.
		st.ReadyTime, st.ReadyInstances = nil, nil
	}
	if (s.template != nil || s.foreignNamespace) && s.templateGeneration > 0 {
		st.TemplateGeneration = s.templateGeneration
	}
	gen := s.env.Generation
	set := func(t string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: status, ObservedGeneration: gen, Reason: reason, Message: msg})
	}
	setMachineConditions(s, set)
	setProbeConditions(s, set)

	ready, reason, msg := readiness(s, succeeded)
	set(labforgev1alpha1.ConditionReady, ready, reason, msg)
	if ready == metav1.ConditionTrue && st.ReadyTime == nil {
		t := metav1.NewTime(s.now)
		st.ReadyTime = &t
		// In the same write: knowing them costs no write of its own.
		st.ReadyInstances = readyInstances(s)
	}
	setRestartedCondition(s, set)
	if ready == metav1.ConditionFalse && terminalReasons[reason] {
		set(labforgev1alpha1.ConditionStalled, metav1.ConditionTrue, reason, msg)
	} else {
		meta.RemoveStatusCondition(&st.Conditions, labforgev1alpha1.ConditionStalled)
	}
	if succeeded {
		st.ObservedGeneration = gen
	}
}

type setter func(t string, status metav1.ConditionStatus, reason, msg string)

func setMachineConditions(s *scope, set setter) {
	if !s.provisioned {
		set(labforgev1alpha1.ConditionVMsScheduled, metav1.ConditionUnknown, labforgev1alpha1.ReasonProvisioning, "The lab's VMs are not created yet")
		set(labforgev1alpha1.ConditionVMsRunning, metav1.ConditionUnknown, labforgev1alpha1.ReasonProvisioning, "The lab's VMs are not created yet")
		return
	}
	total := len(s.vms)
	var scheduled, running int
	var failed []string
	for _, n := range s.vms {
		vmi := s.vmis[n.Name]
		if vmi == nil {
			continue
		}
		switch vmi.Status.Phase {
		case kubevirtv1.Scheduled:
			scheduled++
		case kubevirtv1.Running:
			scheduled++
			running++
		case kubevirtv1.Failed:
			failed = append(failed, n.Name)
		}
	}
	switch refused := refusedPods(s); {
	case scheduled == total:
		set(labforgev1alpha1.ConditionVMsScheduled, metav1.ConditionTrue, labforgev1alpha1.ReasonScheduled, fmt.Sprintf("All %d VMs are scheduled", total))
	case refused != "":
		set(labforgev1alpha1.ConditionVMsScheduled, metav1.ConditionFalse, labforgev1alpha1.ReasonVMPodRefused, refused)
	default:
		set(labforgev1alpha1.ConditionVMsScheduled, metav1.ConditionUnknown, labforgev1alpha1.ReasonWaitingForScheduling, fmt.Sprintf("%d of %d VMs are scheduled", scheduled, total))
	}
	switch {
	case len(failed) > 0:
		set(labforgev1alpha1.ConditionVMsRunning, metav1.ConditionFalse, labforgev1alpha1.ReasonVMFailed, "VMs failed: "+strings.Join(failed, ", "))
	case running == total:
		set(labforgev1alpha1.ConditionVMsRunning, metav1.ConditionTrue, labforgev1alpha1.ReasonRunning, fmt.Sprintf("All %d VMs are running", total))
	default:
		set(labforgev1alpha1.ConditionVMsRunning, metav1.ConditionUnknown, labforgev1alpha1.ReasonBooting, fmt.Sprintf("%d of %d VMs are running", running, total))
	}
}

func setProbeConditions(s *scope, set setter) {
	switch {
	case bootstrapDone(s):
		// Reported once by the lab; what a student does to the lab later is theirs.
		set(labforgev1alpha1.ConditionAPIReachable, metav1.ConditionTrue, labforgev1alpha1.ReasonReached, "The operator reached the lab API and verified it against the lab's CA")
		set(labforgev1alpha1.ConditionBootstrapComplete, metav1.ConditionTrue, labforgev1alpha1.ReasonBootstrapComplete, "The lab reported that its bootstrap finished")
	case s.probePending:
		set(labforgev1alpha1.ConditionAPIReachable, metav1.ConditionUnknown, labforgev1alpha1.ReasonProbing, "The operator is asking the lab API whether its bootstrap finished")
		set(labforgev1alpha1.ConditionBootstrapComplete, metav1.ConditionUnknown, labforgev1alpha1.ReasonProbing, "The operator is asking the lab API whether its bootstrap finished")
	case !s.probed:
		set(labforgev1alpha1.ConditionAPIReachable, metav1.ConditionUnknown, labforgev1alpha1.ReasonWaitingForVMs, "Waiting for the lab's VMs to run")
		set(labforgev1alpha1.ConditionBootstrapComplete, metav1.ConditionUnknown, labforgev1alpha1.ReasonWaitingForVMs, "Waiting for the lab's VMs to run")
	case s.probeErr != nil:
		set(labforgev1alpha1.ConditionAPIReachable, metav1.ConditionUnknown, labforgev1alpha1.ReasonUnreachable, s.probeErr.Error())
		set(labforgev1alpha1.ConditionBootstrapComplete, metav1.ConditionUnknown, labforgev1alpha1.ReasonBootstrapping, "The lab API is not reachable yet")
	default:
		set(labforgev1alpha1.ConditionAPIReachable, metav1.ConditionTrue, labforgev1alpha1.ReasonReached, "The operator reached the lab API and verified it against the lab's CA")
		switch s.probe.Phase {
		case lab.MarkerPhaseComplete:
			set(labforgev1alpha1.ConditionBootstrapComplete, metav1.ConditionTrue, labforgev1alpha1.ReasonBootstrapComplete, "The lab reported that its bootstrap finished")
		case lab.MarkerPhaseFailed:
			set(labforgev1alpha1.ConditionBootstrapComplete, metav1.ConditionFalse, labforgev1alpha1.ReasonBootstrapFailed, "The lab's bootstrap failed: "+s.probe.Message)
		default:
			set(labforgev1alpha1.ConditionBootstrapComplete, metav1.ConditionUnknown, labforgev1alpha1.ReasonBootstrapping, "The lab has not finished its bootstrap")
		}
	}
}

// readyInstances are the lab's VM instances as this pass observed them, in node order.
func readyInstances(s *scope) []labforgev1alpha1.InstanceReference {
	var out []labforgev1alpha1.InstanceReference
	for _, n := range s.vms {
		if vmi := s.vmis[n.Name]; vmi != nil {
			out = append(out, labforgev1alpha1.InstanceReference{Name: n.Name, UID: vmi.UID})
		}
	}
	return out
}

// setRestartedCondition reports the VMs of a Ready lab that run another instance than
// the one the lab was Ready with, or none any more: their container disk and data disk
// are new, so they booted and ran their bootstrap again from nothing. A VMI KubeVirt
// recreates (runStrategy Always) is a new object with a new UID. Ready is left as the lab
// reports it (a restarted worker may rejoin), and the condition stays once set: what was
// lost does not come back. A pass that did not observe the VMIs changes nothing.
func setRestartedCondition(s *scope, set setter) {
	st := &s.env.Status
	if st.ReadyTime == nil {
		meta.RemoveStatusCondition(&st.Conditions, labforgev1alpha1.ConditionVMsRestarted)
		return
	}
	if !s.provisioned || s.vmis == nil {
		return
	}
	nodes := restartedNodes(s)
	if len(nodes) == 0 {
		meta.RemoveStatusCondition(&st.Conditions, labforgev1alpha1.ConditionVMsRestarted)
		return
	}
	set(labforgev1alpha1.ConditionVMsRestarted, metav1.ConditionTrue, labforgev1alpha1.ReasonVMRestarted, restartedMessage(nodes))
}

// restartedNodes names the lab's VMs whose instance is not the one recorded at Ready. A
// lab that became Ready before instances were recorded has only its ReadyTime: an
// instance created after it is a restart (the API server's clock against the
// operator's, to the second: a restart within the second of Ready goes unseen there).
func restartedNodes(s *scope) []string {
	st := &s.env.Status
	recorded := map[string]types.UID{}
	for _, r := range st.ReadyInstances {
		recorded[r.Name] = r.UID
	}
	var out []string
	for _, n := range s.vms {
		vmi := s.vmis[n.Name]
		switch uid, ok := recorded[n.Name]; {
		case ok && (vmi == nil || vmi.UID != uid):
			out = append(out, n.Name)
		case !ok && len(st.ReadyInstances) == 0 && vmi != nil && vmi.CreationTimestamp.After(st.ReadyTime.Time):
			out = append(out, n.Name)
		}
	}
	return out
}

// restartedMessage says which nodes restarted and what that means; nothing in it comes
// from the lab, so a claim may show it to its student.
func restartedMessage(nodes []string) string {
	return fmt.Sprintf("VMs restarted after the lab was ready and set themselves up again from empty disks: %s. "+
		"A restarted control plane runs kubeadm init again (the lab's cluster starts empty); a restarted worker "+
		"rejoins only while the lab's bootstrap token is valid. What was done on these nodes is gone",
		strings.Join(nodes, ", "))
}

// readiness decides the Ready condition: True only when the lab itself said its bootstrap
// finished and all its VMs run; False only for a real failure; Unknown while in progress.
func readiness(s *scope, succeeded bool) (metav1.ConditionStatus, string, string) {
	switch {
	case s.foreignNamespace:
		return metav1.ConditionFalse, labforgev1alpha1.ReasonForeignNamespace, fmt.Sprintf("Namespace %s exists and labforge did not create it for this lab "+
			"(it carries no valid %s annotation); nothing in it is used or deleted. Delete the namespace to have the lab built",
			namespaceOf(s.env), ownership.AnnotationProof)
	case s.templateReason != "":
		return metav1.ConditionFalse, s.templateReason, s.templateMessage
	case s.namespaceLost:
		return metav1.ConditionFalse, labforgev1alpha1.ReasonNamespaceLost, fmt.Sprintf("Namespace %s was deleted while LabClaim %s/%s held the lab; a claimed lab is never rebuilt",
			namespaceOf(s.env), s.env.Spec.ClaimRef.Namespace, s.env.Spec.ClaimRef.Name)
	case s.namespaceTerminating:
		return metav1.ConditionUnknown, labforgev1alpha1.ReasonNamespaceTerminating, fmt.Sprintf("Namespace %s is being deleted; the lab is rebuilt once it is gone", namespaceOf(s.env))
	case !succeeded:
		return metav1.ConditionUnknown, labforgev1alpha1.ReasonProvisioningFailed, "Writing the lab's objects failed; retrying"
	case bootstrapFailed(s):
		return metav1.ConditionFalse, labforgev1alpha1.ReasonBootstrapFailed, "The lab's bootstrap failed: " + s.probe.Message
	case bootstrapDone(s) || bootstrapSucceeded(s):
		if allRunning(s) {
			return metav1.ConditionTrue, labforgev1alpha1.ReasonLabReady, "The lab is ready"
		}
		return metav1.ConditionFalse, labforgev1alpha1.ReasonVMsNotRunning, "The lab was ready, but not all of its VMs run any more"
	case timedOut(s):
		msg := fmt.Sprintf("The lab did not become ready within the template's bootTimeout of %s", s.template.BootTimeout.Duration)
		if refused := refusedPods(s); refused != "" {
			msg += "; " + refused
		}
		return metav1.ConditionFalse, labforgev1alpha1.ReasonBootTimeout, msg
	case refusedPods(s) != "":
		return metav1.ConditionFalse, labforgev1alpha1.ReasonVMPodRefused, refusedPods(s)
	case !allRunning(s):
		return metav1.ConditionUnknown, labforgev1alpha1.ReasonBooting, "Waiting for the lab's VMs to run"
	default:
		return metav1.ConditionUnknown, labforgev1alpha1.ReasonBootstrapping, "Waiting for the lab to report that its bootstrap finished"
	}
}

// bootstrapDone: the lab reported a finished bootstrap on an earlier pass, and it is still
// the same lab (its namespace was not built again since).
func bootstrapDone(s *scope) bool { return s.env.Status.ReadyTime != nil && !s.rebuilt }

func bootstrapSucceeded(s *scope) bool {
	return s.probed && s.probeErr == nil && s.probe.Phase == lab.MarkerPhaseComplete
}

func bootstrapFailed(s *scope) bool {
	return s.probed && s.probeErr == nil && s.probe.Phase == lab.MarkerPhaseFailed
}

func timedOut(s *scope) bool {
	return s.template != nil && !s.now.Before(s.bootStarted().Add(s.template.BootTimeout.Duration))
}

// Bounds of what the API server's refusal may take of a lab's conditions: the message
// comes from admission plugins and webhooks labforge does not control.
const (
	maxRefusalPerVM = 400
	maxRefusals     = 1000
)

// refusedPods says which of the lab's VMs have no launcher pod because the API server
// refused it, with the API server's message as KubeVirt recorded it on the VMI; "" when
// none has. The messages are made printable and bounded.
func refusedPods(s *scope) string {
	var parts []string
	for _, n := range s.vms {
		vmi := s.vmis[n.Name]
		if vmi == nil || vmi.Status.Phase == kubevirtv1.Running || vmi.Status.Phase == kubevirtv1.Scheduled {
			continue
		}
		for _, c := range vmi.Status.Conditions {
			if c.Type == kubevirtv1.VirtualMachineInstanceSynchronized && c.Status == corev1.ConditionFalse && c.Reason == vmiReasonFailedCreate {
				parts = append(parts, fmt.Sprintf("VM %s: %s", n.Name, printable(c.Message, maxRefusalPerVM)))
			}
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return printable("The API server refused the virt-launcher pod of "+strings.Join(parts, "; "), maxRefusals)
}

// vmiReasonFailedCreate is KubeVirt's reason for a launcher pod it could not create.
const vmiReasonFailedCreate = "FailedCreate"

// printable keeps s on one line of printable characters (labprobe.SanitizeMessage), at
// most n bytes of it, cut at a character.
func printable(s string, n int) string {
	s = labprobe.SanitizeMessage(s)
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

func allRunning(s *scope) bool {
	if len(s.vms) == 0 {
		return false
	}
	for _, n := range s.vms {
		vmi := s.vmis[n.Name]
		if vmi == nil || vmi.Status.Phase != kubevirtv1.Running {
			return false
		}
	}
	return true
}

// recordTransitions emits one event per change of the Ready condition, and one per newly
// restarted set of VMs, never one per pass.
func (r *Reconciler) recordTransitions(ctx context.Context, before, after *labforgev1alpha1.LabEnvironment) {
	wasRestarted := meta.FindStatusCondition(before.Status.Conditions, labforgev1alpha1.ConditionVMsRestarted)
	if restarted := meta.FindStatusCondition(after.Status.Conditions, labforgev1alpha1.ConditionVMsRestarted); restarted != nil &&
		(wasRestarted == nil || wasRestarted.Message != restarted.Message) {
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, labforgev1alpha1.ReasonVMRestarted, "Restart", "%s", restarted.Message)
		vmRestarts.WithLabelValues(after.Spec.TemplateRef.Name).Inc()
		ctrl.LoggerFrom(ctx).Info("LabEnvironment's VMs restarted after Ready", "message", restarted.Message)
	}
	was := meta.FindStatusCondition(before.Status.Conditions, labforgev1alpha1.ConditionReady)
	now := meta.FindStatusCondition(after.Status.Conditions, labforgev1alpha1.ConditionReady)
	if now == nil || (was != nil && was.Status == now.Status && was.Reason == now.Reason) {
		return
	}
	log := ctrl.LoggerFrom(ctx)
	switch {
	case now.Status == metav1.ConditionTrue:
		took := after.Status.ReadyTime.Sub(after.CreationTimestamp.Time).Round(1e6)
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, labforgev1alpha1.ReasonLabReady, "Ready", "Lab is ready (%s after creation)", took)
		log.Info("LabEnvironment became Ready", "took", took.String())
	case now.Status == metav1.ConditionFalse:
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, now.Reason, "Provision", "%s", now.Message)
		if !notBootFailures[now.Reason] {
			bootFailures.WithLabelValues(after.Spec.TemplateRef.Name, now.Reason).Inc()
		}
		log.Info("LabEnvironment failed", "reason", now.Reason, "message", now.Message)
	}
}
