package labenvironment

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/render"
)

var created = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// testScope is a provisioned two-node lab whose VMIs are in the given phases.
func testScope(now time.Time, phases ...kubevirtv1.VirtualMachineInstancePhase) *scope {
	env := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: "e", Generation: 1, CreationTimestamp: metav1.NewTime(created)}}
	tmpl := &labforgev1alpha1.LabTemplateSpec{BootTimeout: metav1.Duration{Duration: 15 * time.Minute}}
	s := &scope{env: env, now: now, template: tmpl, templateGeneration: 1, provisioned: true,
		vms:  []render.Node{{Name: "control-plane", Size: labforgev1alpha1.NodeSize{Memory: resource.MustParse("2Gi")}}, {Name: "worker-1"}},
		vmis: map[string]*kubevirtv1.VirtualMachineInstance{}}
	for i, p := range phases {
		s.vmis[s.vms[i].Name] = &kubevirtv1.VirtualMachineInstance{Status: kubevirtv1.VirtualMachineInstanceStatus{Phase: p}}
	}
	return s
}

func probed(s *scope, phase, msg string, err error) *scope {
	s.probed, s.probe, s.probeErr = true, labprobe.Result{Reachable: err == nil, Phase: phase, Message: msg}, err
	return s
}

func TestSetStatus(t *testing.T) {
	type cond struct{ Status, Reason string }
	soon := created.Add(time.Minute)
	late := created.Add(16 * time.Minute)
	tests := map[string]struct {
		scope     *scope
		succeeded bool
		want      map[string]cond
		wantReady bool
	}{
		"template missing": {
			scope: func() *scope {
				s := testScope(soon)
				s.provisioned, s.template, s.templateReason, s.templateMessage = false, nil, labforgev1alpha1.ReasonTemplateNotFound, "LabTemplate t does not exist"
				return s
			}(),
			succeeded: true,
			want: map[string]cond{"Ready": {"False", "TemplateNotFound"}, "Stalled": {"True", "TemplateNotFound"},
				"VMsScheduled": {"Unknown", "Provisioning"}, "VMsRunning": {"Unknown", "Provisioning"},
				"APIReachable": {"Unknown", "WaitingForVMs"}, "BootstrapComplete": {"Unknown", "WaitingForVMs"}},
		},
		"write failed": {
			scope: func() *scope { s := testScope(soon); s.provisioned = false; return s }(),
			want: map[string]cond{"Ready": {"Unknown", "ProvisioningFailed"}, "VMsScheduled": {"Unknown", "Provisioning"},
				"VMsRunning": {"Unknown", "Provisioning"}, "APIReachable": {"Unknown", "WaitingForVMs"}, "BootstrapComplete": {"Unknown", "WaitingForVMs"}},
		},
		"one VM scheduled": {
			scope: testScope(soon, kubevirtv1.Scheduled), succeeded: true,
			want: map[string]cond{"Ready": {"Unknown", "Booting"}, "VMsScheduled": {"Unknown", "WaitingForScheduling"},
				"VMsRunning": {"Unknown", "Booting"}, "APIReachable": {"Unknown", "WaitingForVMs"}, "BootstrapComplete": {"Unknown", "WaitingForVMs"}},
		},
		"VMs run, API not up yet": {
			scope: probed(testScope(soon, kubevirtv1.Running, kubevirtv1.Running), "", "", errors.New("connection refused")), succeeded: true,
			want: map[string]cond{"Ready": {"Unknown", "Bootstrapping"}, "VMsScheduled": {"True", "Scheduled"},
				"VMsRunning": {"True", "Running"}, "APIReachable": {"Unknown", "Unreachable"}, "BootstrapComplete": {"Unknown", "Bootstrapping"}},
		},
		"VMs run, first probe not answered yet": {
			scope: func() *scope {
				s := testScope(soon, kubevirtv1.Running, kubevirtv1.Running)
				s.probePending = true
				return s
			}(),
			succeeded: true,
			want: map[string]cond{"Ready": {"Unknown", "Bootstrapping"}, "VMsScheduled": {"True", "Scheduled"},
				"VMsRunning": {"True", "Running"}, "APIReachable": {"Unknown", "Probing"}, "BootstrapComplete": {"Unknown", "Probing"}},
		},
		"bootstrap complete": {
			scope: probed(testScope(soon, kubevirtv1.Running, kubevirtv1.Running), lab.MarkerPhaseComplete, "", nil), succeeded: true,
			want: map[string]cond{"Ready": {"True", "LabReady"}, "VMsScheduled": {"True", "Scheduled"},
				"VMsRunning": {"True", "Running"}, "APIReachable": {"True", "Reached"}, "BootstrapComplete": {"True", "BootstrapComplete"}},
			wantReady: true,
		},
		"bootstrap failed": {
			scope: probed(testScope(soon, kubevirtv1.Running, kubevirtv1.Running), lab.MarkerPhaseFailed, "kubeadm init: port 6443 in use", nil), succeeded: true,
			want: map[string]cond{"Ready": {"False", "BootstrapFailed"}, "Stalled": {"True", "BootstrapFailed"}, "VMsScheduled": {"True", "Scheduled"},
				"VMsRunning": {"True", "Running"}, "APIReachable": {"True", "Reached"}, "BootstrapComplete": {"False", "BootstrapFailed"}},
		},
		"boot timeout": {
			scope: testScope(late, kubevirtv1.Running, kubevirtv1.Scheduled), succeeded: true,
			want: map[string]cond{"Ready": {"False", "BootTimeout"}, "Stalled": {"True", "BootTimeout"}, "VMsScheduled": {"True", "Scheduled"},
				"VMsRunning": {"Unknown", "Booting"}, "APIReachable": {"Unknown", "WaitingForVMs"}, "BootstrapComplete": {"Unknown", "WaitingForVMs"}},
		},
		"a VM failed": {
			scope: testScope(soon, kubevirtv1.Running, kubevirtv1.Failed), succeeded: true,
			want: map[string]cond{"Ready": {"Unknown", "Booting"}, "VMsScheduled": {"Unknown", "WaitingForScheduling"},
				"VMsRunning": {"False", "VMFailed"}, "APIReachable": {"Unknown", "WaitingForVMs"}, "BootstrapComplete": {"Unknown", "WaitingForVMs"}},
		},
		"ready lab whose VM stopped": {
			scope: func() *scope {
				s := testScope(late, kubevirtv1.Running)
				t := metav1.NewTime(soon)
				s.env.Status.ReadyTime = &t
				return s
			}(),
			succeeded: true,
			want: map[string]cond{"Ready": {"False", "VMsNotRunning"}, "VMsScheduled": {"Unknown", "WaitingForScheduling"},
				"VMsRunning": {"Unknown", "Booting"}, "APIReachable": {"True", "Reached"}, "BootstrapComplete": {"True", "BootstrapComplete"}},
			wantReady: true,
		},
		"lab rebuilt after its namespace was deleted, past the first boot's deadline": {
			scope: func() *scope {
				s := testScope(late, kubevirtv1.Scheduled)
				t := metav1.NewTime(soon)
				s.env.Status.ReadyTime = &t
				s.rebuilt, s.namespaceCreated = true, late.Add(-time.Minute)
				return s
			}(),
			succeeded: true,
			want: map[string]cond{"Ready": {"Unknown", "Booting"}, "VMsScheduled": {"Unknown", "WaitingForScheduling"},
				"VMsRunning": {"Unknown", "Booting"}, "APIReachable": {"Unknown", "WaitingForVMs"}, "BootstrapComplete": {"Unknown", "WaitingForVMs"}},
		},
		"rebuilt lab whose new boot timed out": {
			scope: func() *scope {
				s := testScope(late.Add(20*time.Minute), kubevirtv1.Scheduled)
				t := metav1.NewTime(soon)
				s.env.Status.ReadyTime = &t
				s.rebuilt, s.namespaceCreated = true, late
				return s
			}(),
			succeeded: true,
			want: map[string]cond{"Ready": {"False", "BootTimeout"}, "Stalled": {"True", "BootTimeout"}, "VMsScheduled": {"Unknown", "WaitingForScheduling"},
				"VMsRunning": {"Unknown", "Booting"}, "APIReachable": {"Unknown", "WaitingForVMs"}, "BootstrapComplete": {"Unknown", "WaitingForVMs"}},
		},
		"claimed lab whose namespace was deleted": {
			scope: func() *scope {
				s := testScope(late)
				t := metav1.NewTime(soon)
				s.env.Status.ReadyTime = &t
				s.env.Spec.ClaimRef = &labforgev1alpha1.ClaimReference{Namespace: "students", Name: "alice", UID: "u"}
				s.provisioned, s.namespaceLost = false, true
				return s
			}(),
			succeeded: true,
			want: map[string]cond{"Ready": {"False", "NamespaceLost"}, "Stalled": {"True", "NamespaceLost"},
				"VMsScheduled": {"Unknown", "Provisioning"}, "VMsRunning": {"Unknown", "Provisioning"},
				"APIReachable": {"True", "Reached"}, "BootstrapComplete": {"True", "BootstrapComplete"}},
			wantReady: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			setStatus(tc.scope, tc.succeeded)
			got := map[string]cond{}
			for _, c := range tc.scope.env.Status.Conditions {
				got[c.Type] = cond{string(c.Status), c.Reason}
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
			if gotReady := tc.scope.env.Status.ReadyTime != nil; gotReady != tc.wantReady {
				t.Errorf("readyTime set = %v, want %v", gotReady, tc.wantReady)
			}
			wantObserved := int64(-1)
			if tc.succeeded {
				wantObserved = 1
			}
			if tc.scope.env.Status.ObservedGeneration != wantObserved && !(wantObserved == -1 && tc.scope.env.Status.ObservedGeneration == 0) {
				t.Errorf("observedGeneration = %d, want %d", tc.scope.env.Status.ObservedGeneration, wantObserved)
			}
		})
	}
}

func TestNextCheck(t *testing.T) {
	r := &Reconciler{ProbeInterval: 5 * time.Second}
	tests := map[string]struct {
		scope *scope
		want  time.Duration
	}{
		"booting: wake at the boot deadline":     {scope: testScope(created.Add(time.Minute), kubevirtv1.Scheduled), want: 14 * time.Minute},
		"running, not bootstrapped: probe soon":  {scope: probed(testScope(created.Add(time.Minute), kubevirtv1.Running, kubevirtv1.Running), "", "", nil), want: 5 * time.Second},
		"complete: nothing to wait for":          {scope: probed(testScope(created.Add(time.Minute), kubevirtv1.Running, kubevirtv1.Running), lab.MarkerPhaseComplete, "", nil)},
		"past the deadline: nothing to wait for": {scope: testScope(created.Add(20 * time.Minute))},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := r.nextCheck(tc.scope).RequeueAfter; got != tc.want {
				t.Errorf("RequeueAfter = %v, want %v", got, tc.want)
			}
		})
	}
}

// A launcher pod the API server refused makes the lab say so at once, with the API
// server's message made printable and bounded; after the boot timeout the lab times out
// and still says why.
func TestRefusedLauncherPod(t *testing.T) {
	refused := func(now time.Time, msg string) *scope {
		s := testScope(now, kubevirtv1.Scheduled, kubevirtv1.Pending)
		s.vmis["worker-1"].Status.Conditions = []kubevirtv1.VirtualMachineInstanceCondition{{
			Type: kubevirtv1.VirtualMachineInstanceSynchronized, Status: "False", Reason: "FailedCreate", Message: msg,
		}}
		return s
	}
	quota := `failed to create virtual machine pod: pods "virt-launcher-worker-1-x2kq9" is forbidden: exceeded quota: tight, requested: requests.memory=1815Mi, used: requests.memory=0, limited: requests.memory=1Gi`
	tests := map[string]struct {
		scope                    *scope
		wantReason, wantMessage  string
		wantScheduled, wantStall string
	}{
		"refused by a quota": {
			scope: refused(created.Add(time.Minute), quota), wantReason: labforgev1alpha1.ReasonVMPodRefused,
			wantMessage:   "The API server refused the virt-launcher pod of VM worker-1: " + quota,
			wantScheduled: "False",
		},
		"a hostile message is made printable and bounded": {
			scope:         refused(created.Add(time.Minute), "evil\x1b[31m\n"+strings.Repeat("é", 1000)),
			wantReason:    labforgev1alpha1.ReasonVMPodRefused,
			wantMessage:   "The API server refused the virt-launcher pod of VM worker-1: evil[31m " + strings.Repeat("é", (maxRefusalPerVM-len("evil[31m ")-3)/2) + "...",
			wantScheduled: "False",
		},
		"still refused at the boot timeout": {
			scope: refused(created.Add(16*time.Minute), quota), wantReason: labforgev1alpha1.ReasonBootTimeout,
			wantMessage:   "The lab did not become ready within the template's bootTimeout of 15m0s; The API server refused the virt-launcher pod of VM worker-1: " + quota,
			wantScheduled: "False", wantStall: "True",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			setStatus(tc.scope, true)
			ready := meta.FindStatusCondition(tc.scope.env.Status.Conditions, labforgev1alpha1.ConditionReady)
			if ready == nil || ready.Status != metav1.ConditionFalse || ready.Reason != tc.wantReason {
				t.Fatalf("Ready %+v, want False %s", ready, tc.wantReason)
			}
			if diff := cmp.Diff(tc.wantMessage, ready.Message); diff != "" {
				t.Errorf("Ready message (-want +got):\n%s", diff)
			}
			if sched := meta.FindStatusCondition(tc.scope.env.Status.Conditions, labforgev1alpha1.ConditionVMsScheduled); sched == nil ||
				string(sched.Status) != tc.wantScheduled {
				t.Errorf("VMsScheduled %+v", sched)
			}
			stalled := meta.FindStatusCondition(tc.scope.env.Status.Conditions, labforgev1alpha1.ConditionStalled)
			if got := ""; stalled != nil {
				got = string(stalled.Status)
				if got != tc.wantStall {
					t.Errorf("Stalled %+v, want %q", stalled, tc.wantStall)
				}
			} else if tc.wantStall != "" {
				t.Errorf("no Stalled condition, want %s", tc.wantStall)
			}
		})
	}
}
