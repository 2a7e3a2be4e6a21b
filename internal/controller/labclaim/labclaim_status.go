package labclaim

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/render"
)

var (
	claimReadySeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "labforge_claim_ready_seconds",
		Help:    "Time from a LabClaim's creation to its first Ready, by template and launch type.",
		Buckets: []float64{0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 60, 120, 300, 600, 1200},
	}, []string{"template", "launch_type"})
	bindsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "labforge_claim_binds_total",
		Help: "Bind attempts on warm labs by pool and result (bound, conflict).",
	}, []string{"pool", "result"})
)

func init() {
	metrics.Registry.MustRegister(claimReadySeconds, bindsTotal)
}

// statusSetters compute the claim's status from the scope, each its own fields, in this
// order (which is also the order in which conditions first appear in the status). A phase
// that owns a part of the status adds its setter here; writeStatus writes the result once.
var statusSetters = []func(s *scope, succeeded bool){
	setWords,     // the template's description and hints
	setBinding,   // lab, launch type, terms, expiry, place in line; Bound
	setAccess,    // where to connect, and the Secrets
	setReady,     // Expired, Ready, Stalled
	setExtension, // ExtensionRefused
	setRestarted, // VMsRestarted
	setExposure,  // what of the lab's own Services is exposed; ServicesExposed
	setSolved,    // status.checks, solvedTime; Solved (labclaim_checks.go)
}

// setStatus computes the claim's status from the scope; succeeded says whether every
// phase of the pass did (observedGeneration then follows the spec).
func setStatus(s *scope, succeeded bool) {
	for _, set := range statusSetters {
		set(s, succeeded)
	}
	if succeeded {
		s.claim.Status.ObservedGeneration = s.claim.Generation
	}
}

// setCondition sets a condition of the claim, observed at its current generation.
func (s *scope) setCondition(t string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&s.claim.Status.Conditions, metav1.Condition{
		Type: t, Status: status, ObservedGeneration: s.claim.Generation, Reason: reason, Message: msg})
}

// setWords shows the template's words while the claim waits and at its bind; a bound
// claim keeps them (s.template is never read for a bound claim).
func setWords(s *scope, _ bool) {
	if s.template != nil {
		s.claim.Status.Description, s.claim.Status.Hints = s.template.Spec.Description, s.template.Spec.Hints
	}
}

// setBinding says which lab the claim holds, how it was served and until when, or its
// place in line while it holds none.
func setBinding(s *scope, _ bool) {
	st := &s.claim.Status
	if s.env == nil {
		if !s.expired && st.Lab == "" {
			s.setCondition(labforgev1alpha1.ConditionBound, metav1.ConditionFalse, labforgev1alpha1.ReasonNotBound, "No lab is bound yet")
			st.QueuePosition = s.queuePosition
		}
		return
	}
	st.Lab = s.env.Name
	if s.launch != "" && (s.boundNow || st.LaunchType == "") {
		st.LaunchType = s.launch
	}
	// From the lab's terms: what the bind recorded, rebuilt as it was if the status was
	// lost. Without them (the pass failed before it read them) what the status says stays.
	if t := s.terms; t != nil {
		bound, lifetime := t.BoundTime, t.Lifetime
		st.BoundTime, st.Lifetime = &bound, &lifetime
		exp := metav1.NewTime(s.expiresAt())
		st.ExpiresAt = &exp
	}
	st.QueuePosition = 0
	s.setCondition(labforgev1alpha1.ConditionBound, metav1.ConditionTrue, labforgev1alpha1.ReasonBound, "Bound to lab "+s.env.Name)
}

// setAccess tells the student where to connect and which Secrets hold the credentials,
// once the lab is handed over.
func setAccess(s *scope, _ bool) {
	h := s.handover
	if h == nil {
		return
	}
	st := &s.claim.Status
	st.SSH = &labforgev1alpha1.SSHEndpoint{
		Host: h.host, Port: h.sshPort, User: h.sshUser,
		Command: fmt.Sprintf("ssh -p %d %s@%s", h.sshPort, h.sshUser, h.host),
	}
	st.APIServerURL = h.server()
	st.KubeconfigSecretName = render.KubeconfigSecretName(s.claim.Name)
	st.SSHKeySecretName = h.sshKeySecret
}

// setReady sets Ready (and Expired or Stalled) from what the pass decided, the first
// that holds of: expired, refused, waiting, failed, handed over and Ready, bound.
func setReady(s *scope, succeeded bool) {
	st := &s.claim.Status
	switch {
	case s.expired:
		s.setCondition(labforgev1alpha1.ConditionExpired, metav1.ConditionTrue, labforgev1alpha1.ReasonExpired, "The claim's duration ran out and its lab was deleted")
		s.setCondition(labforgev1alpha1.ConditionReady, metav1.ConditionFalse, labforgev1alpha1.ReasonExpired, "The claim's duration ran out and its lab was deleted")
		st.SSH, st.APIServerURL, st.KubeconfigSecretName, st.SSHKeySecretName = nil, "", "", ""
	case s.refusedReason != "":
		s.setCondition(labforgev1alpha1.ConditionReady, metav1.ConditionFalse, s.refusedReason, s.refusedMessage)
		s.setCondition(labforgev1alpha1.ConditionStalled, metav1.ConditionTrue, s.refusedReason, s.refusedMessage)
	case s.pendingReason != "":
		s.setCondition(labforgev1alpha1.ConditionReady, metav1.ConditionUnknown, s.pendingReason, s.pendingMessage)
		if s.pendingReason == labforgev1alpha1.ReasonNodePortsExhausted {
			// The lab has no ports of its own now: never point the student at ports that
			// may already be another lab's.
			st.SSH, st.APIServerURL = nil, ""
		}
	case !succeeded:
		s.setCondition(labforgev1alpha1.ConditionReady, metav1.ConditionUnknown, labforgev1alpha1.ReasonHandoverFailed, "Handing the lab over failed; retrying")
	case s.handover != nil && s.labReady:
		s.setCondition(labforgev1alpha1.ConditionReady, metav1.ConditionTrue, labforgev1alpha1.ReasonLabReady, "The lab is ready: "+st.SSH.Command)
		if st.ReadyTime == nil {
			t := metav1.NewTime(s.now)
			st.ReadyTime = &t
		}
	case s.env != nil:
		// Handed over already if it is built: status.ssh and the Secrets are there, for
		// when it is Ready.
		s.setCondition(labforgev1alpha1.ConditionReady, metav1.ConditionUnknown, labforgev1alpha1.ReasonLabBooting, "Lab "+s.env.Name+" is booting")
	}
	if !s.expired && s.refusedReason == "" {
		meta.RemoveStatusCondition(&st.Conditions, labforgev1alpha1.ConditionStalled)
	}
}

// setExtension says why a longer spec.duration was not applied, while it is not.
func setExtension(s *scope, _ bool) {
	if s.extensionRefused != "" && !s.expired {
		s.setCondition(labforgev1alpha1.ConditionExtensionRefused, metav1.ConditionTrue, labforgev1alpha1.ReasonDurationTooLong, s.extensionRefused)
		return
	}
	meta.RemoveStatusCondition(&s.claim.Status.Conditions, labforgev1alpha1.ConditionExtensionRefused)
}

// setRestarted tells the student that VMs of their lab restarted after it was ready and
// set themselves up again from nothing (the lab's VMsRestarted, whose message the
// operator writes, never the lab). Ready stays as the lab reports it. A claim whose lab
// is gone keeps what it said.
func setRestarted(s *scope, _ bool) {
	if s.env == nil {
		return
	}
	c := meta.FindStatusCondition(s.env.Status.Conditions, labforgev1alpha1.ConditionVMsRestarted)
	if c == nil || c.Status != metav1.ConditionTrue {
		meta.RemoveStatusCondition(&s.claim.Status.Conditions, labforgev1alpha1.ConditionVMsRestarted)
		return
	}
	s.setCondition(labforgev1alpha1.ConditionVMsRestarted, metav1.ConditionTrue, labforgev1alpha1.ReasonVMRestarted,
		fmt.Sprintf("Lab %s: %s. Delete this claim and claim again for a fresh lab, or ask your admin", s.env.Name, c.Message))
}

// recordTransitions emits events for the bind, the handover, expiry and refusals, and
// observes the claim's time to Ready.
func (r *Reconciler) recordTransitions(ctx context.Context, before *labforgev1alpha1.LabClaim, s *scope) {
	after := s.claim
	log := ctrl.LoggerFrom(ctx)
	wasRestarted := meta.FindStatusCondition(before.Status.Conditions, labforgev1alpha1.ConditionVMsRestarted)
	if restarted := meta.FindStatusCondition(after.Status.Conditions, labforgev1alpha1.ConditionVMsRestarted); restarted != nil &&
		(wasRestarted == nil || wasRestarted.Message != restarted.Message) {
		// Once per newly restarted set of VMs: the student's describe shows it.
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, labforgev1alpha1.ReasonVMRestarted, "Restart", "%s", restarted.Message)
	}
	r.recordSolved(ctx, before, s)
	was := meta.FindStatusCondition(before.Status.Conditions, labforgev1alpha1.ConditionReady)
	now := meta.FindStatusCondition(after.Status.Conditions, labforgev1alpha1.ConditionReady)
	handedOver := now != nil && now.Status == metav1.ConditionTrue && before.Status.ReadyTime == nil
	if s.boundNow {
		log.Info("Bound LabClaim", "lab", s.env.Name, "launch", s.launch)
		// A warm lab is bound and handed over in one pass: one event tells both.
		if !handedOver {
			r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, "Bound", "Bind", "Bound to lab %s (%s)", s.env.Name, s.launch)
		}
	}
	if ext := meta.FindStatusCondition(after.Status.Conditions, labforgev1alpha1.ConditionExtensionRefused); ext != nil {
		if old := meta.FindStatusCondition(before.Status.Conditions, labforgev1alpha1.ConditionExtensionRefused); old == nil || old.Message != ext.Message {
			r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, labforgev1alpha1.ReasonDurationTooLong, "Extend", "%s", ext.Message)
		}
	}
	if now == nil || (was != nil && was.Status == now.Status && was.Reason == now.Reason) {
		return
	}
	switch {
	case handedOver:
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, "HandedOver", "Handover", "Lab %s (%s) is ready: %s", after.Status.Lab, after.Status.LaunchType, after.Status.SSH.Command)
		template := ""
		if s.env != nil {
			template = s.env.Spec.TemplateRef.Name
		}
		claimReadySeconds.WithLabelValues(template, string(after.Status.LaunchType)).Observe(after.Status.ReadyTime.Sub(after.CreationTimestamp.Time).Seconds())
	case now.Reason == labforgev1alpha1.ReasonNodePortsExhausted:
		// Once per wait: the condition does not change while the claim keeps waiting.
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, labforgev1alpha1.ReasonNodePortsExhausted, "Handover", "%s", now.Message)
		log.Info("LabClaim waits for NodePorts", "lab", after.Status.Lab)
	case now.Reason == labforgev1alpha1.ReasonKeysNotSynchronized:
		// Once per failure: the condition does not change while KubeVirt keeps failing.
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, labforgev1alpha1.ReasonKeysNotSynchronized, "Handover", "%s", now.Message)
	case now.Reason == labforgev1alpha1.ReasonExpired:
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, labforgev1alpha1.ReasonExpired, "Expire", "The claim expired; lab %s was deleted", after.Status.Lab)
	case now.Status == metav1.ConditionFalse, now.Reason == labforgev1alpha1.ReasonPoolNotFound, now.Reason == labforgev1alpha1.ReasonTemplateNotFound:
		// Refusals, and a claim naming what does not exist: kubectl describe shows why a
		// kubectl wait would otherwise just time out.
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, now.Reason, "Bind", "%s", now.Message)
	}
}
