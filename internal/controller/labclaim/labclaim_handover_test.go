package labclaim

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/event"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/index"
)

// rangeFull is the error kube-apiserver v1.36 returns when a Service's NodePorts do not
// fit its --service-node-port-range (seen on the real API server; test/integration/hostile
// provokes it), as the Applier wraps it.
func rangeFull() error {
	inner := apierrors.NewInternalError(fmt.Errorf("failed to allocate a nodePort: %w", errors.New("range is full")))
	return fmt.Errorf("applying Service lab-pool-abcde/lab-api: %w", inner)
}

func TestNodePortsExhausted(t *testing.T) {
	tests := map[string]struct {
		err  error
		want bool
	}{
		"the range is full":      {err: rangeFull(), want: true},
		"no error":               {err: nil, want: false},
		"another internal error": {err: apierrors.NewInternalError(errors.New("etcdserver: request timed out")), want: false},
		"a port taken by name":   {err: apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "lab-api", nil), want: false},
		"range is full, but not a 500 from the API server": {err: errors.New("failed to allocate a nodePort: range is full"), want: false},
		"a conflict": {err: apierrors.NewConflict(schema.GroupResource{Resource: "services"}, "lab-api", errors.New("changed")), want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := nodePortsExhausted(tc.err); got != tc.want {
				t.Errorf("nodePortsExhausted(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestNodePortsExhaustedMessage(t *testing.T) {
	want := "The host cluster's NodePort range (kube-apiserver --service-node-port-range) has no 2 free ports for the lab's SSH and API " +
		"(Internal error occurred: failed to allocate a nodePort: range is full); the claim waits until another lab releases its ports"
	if got := nodePortsExhaustedMessage(rangeFull()); got != want {
		t.Errorf("message:\n got %q\nwant %q", got, want)
	}
}

func TestRequeueAfter(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	tests := map[string]struct {
		scope scope
		want  time.Duration
	}{
		"handed over: at the expiry":                       {scope: scope{duration: 2 * time.Hour}, want: 2 * time.Hour},
		"waiting for NodePorts: retried within a minute":   {scope: scope{duration: 2 * time.Hour, pendingReason: labforgev1alpha1.ReasonNodePortsExhausted}, want: NodePortRetryInterval},
		"waiting for NodePorts, expiring sooner: expiry":   {scope: scope{duration: 30 * time.Second, pendingReason: labforgev1alpha1.ReasonNodePortsExhausted}, want: 30 * time.Second},
		"another pending reason does not shorten the wait": {scope: scope{duration: 2 * time.Hour, pendingReason: labforgev1alpha1.ReasonLabBooting}, want: 2 * time.Hour},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := tc.scope
			s.now = now
			s.claim = &labforgev1alpha1.LabClaim{}
			if got := s.requeueAfter(); got != tc.want {
				t.Errorf("requeueAfter() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestWaitingForNodePortsIndex(t *testing.T) {
	claim := func(reason string) *labforgev1alpha1.LabClaim {
		c := &labforgev1alpha1.LabClaim{}
		if reason != "" {
			meta.SetStatusCondition(&c.Status.Conditions, metav1.Condition{Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionUnknown, Reason: reason})
		}
		return c
	}
	tests := map[string]struct {
		claim *labforgev1alpha1.LabClaim
		want  []string
	}{
		"waiting for NodePorts": {claim: claim(labforgev1alpha1.ReasonNodePortsExhausted), want: []string{"true"}},
		"waiting for a lab":     {claim: claim(labforgev1alpha1.ReasonWaitingForLab)},
		"ready":                 {claim: claim(labforgev1alpha1.ReasonLabReady)},
		"new":                   {claim: claim("")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, index.ClaimWaiting(tc.claim)); diff != "" {
				t.Errorf("index values (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNodePortServiceDeleted(t *testing.T) {
	svc := func(t corev1.ServiceType) *corev1.Service { return &corev1.Service{Spec: corev1.ServiceSpec{Type: t}} }
	p := nodePortServiceDeleted()
	if !p.Delete(event.DeleteEvent{Object: svc(corev1.ServiceTypeNodePort)}) {
		t.Error("the deletion of a NodePort Service did not wake the waiting claims")
	}
	if p.Delete(event.DeleteEvent{Object: svc(corev1.ServiceTypeClusterIP)}) {
		t.Error("the deletion of a ClusterIP Service woke the waiting claims")
	}
	if p.Create(event.CreateEvent{Object: svc(corev1.ServiceTypeNodePort)}) || p.Update(event.UpdateEvent{ObjectOld: svc(corev1.ServiceTypeNodePort), ObjectNew: svc(corev1.ServiceTypeNodePort)}) {
		t.Error("a create or update woke the waiting claims")
	}
}

// TestNodePortsExhaustedEventOnce checks that a claim waiting for NodePorts gets one
// Warning event when it starts to wait, and none on the passes that find it still waiting.
func TestNodePortsExhaustedEventOnce(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	env := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: "pool-abcde"}}
	recorder := events.NewFakeRecorder(10)
	r := &Reconciler{Recorder: recorder}
	claim := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "alice", Generation: 1}}
	meta.SetStatusCondition(&claim.Status.Conditions, metav1.Condition{Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionUnknown, Reason: labforgev1alpha1.ReasonLabBooting})

	var got []string
	for pass := range 3 {
		before := claim.DeepCopy()
		s := &scope{claim: claim, now: now.Add(time.Duration(pass) * time.Second), env: env, duration: time.Hour,
			pendingReason: labforgev1alpha1.ReasonNodePortsExhausted, pendingMessage: nodePortsExhaustedMessage(rangeFull())}
		setStatus(s, true)
		r.recordTransitions(context.Background(), before, s)
	drain:
		for {
			select {
			case e := <-recorder.Events:
				got = append(got, e)
			default:
				break drain
			}
		}
	}
	want := []string{"Warning NodePortsExhausted " + nodePortsExhaustedMessage(rangeFull())}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events over three passes (-want +got):\n%s", diff)
	}
}
