package labenvironment

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
)

// instance is a running VMI of the given UID, created at the given time.
func instance(uid types.UID, createdAt time.Time) *kubevirtv1.VirtualMachineInstance {
	return &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{UID: uid, CreationTimestamp: metav1.NewTime(createdAt)},
		Status:     kubevirtv1.VirtualMachineInstanceStatus{Phase: kubevirtv1.Running},
	}
}

// TestRestartedVMs: a VM of a Ready lab whose instance is not the one the lab was Ready
// with is reported, by name, whatever Ready says; before Ready nothing is.
func TestRestartedVMs(t *testing.T) {
	readyAt := created.Add(2 * time.Minute)
	now := created.Add(time.Hour)
	recorded := []labforgev1alpha1.InstanceReference{{Name: "control-plane", UID: "cp-1"}, {Name: "worker-1", UID: "w1-1"}}
	const (
		cpAndWorker = "VMs restarted after the lab was ready and set themselves up again from empty disks: control-plane, worker-1. " +
			"A restarted control plane runs kubeadm init again (the lab's cluster starts empty); a restarted worker " +
			"rejoins only while the lab's bootstrap token is valid. What was done on these nodes is gone"
		workerOnly = "VMs restarted after the lab was ready and set themselves up again from empty disks: worker-1. " +
			"A restarted control plane runs kubeadm init again (the lab's cluster starts empty); a restarted worker " +
			"rejoins only while the lab's bootstrap token is valid. What was done on these nodes is gone"
	)
	type want struct {
		restarted      *metav1.Condition // nil: no VMsRestarted condition
		ready          string            // Ready's reason
		readyInstances []labforgev1alpha1.InstanceReference
	}
	restarted := func(msg string) *metav1.Condition {
		return &metav1.Condition{Type: "VMsRestarted", Status: metav1.ConditionTrue, Reason: "VMRestarted", Message: msg, ObservedGeneration: 1}
	}
	tests := map[string]struct {
		scope func() *scope
		want  want
	}{
		"becoming Ready records the instances in the same write": {
			scope: func() *scope {
				s := probed(testScope(readyAt), lab.MarkerPhaseComplete, "", nil)
				s.vmis["control-plane"], s.vmis["worker-1"] = instance("cp-1", created), instance("w1-1", created)
				return s
			},
			want: want{ready: "LabReady", readyInstances: recorded},
		},
		"Ready with the same instances": {
			scope: func() *scope {
				s := readyScope(now, readyAt, recorded)
				s.vmis["control-plane"], s.vmis["worker-1"] = instance("cp-1", created), instance("w1-1", created)
				return s
			},
			want: want{ready: "LabReady", readyInstances: recorded},
		},
		"a worker recreated by KubeVirt": {
			scope: func() *scope {
				s := readyScope(now, readyAt, recorded)
				s.vmis["control-plane"], s.vmis["worker-1"] = instance("cp-1", created), instance("w1-2", now.Add(-time.Minute))
				return s
			},
			want: want{restarted: restarted(workerOnly), ready: "LabReady", readyInstances: recorded},
		},
		"a worker gone, not recreated yet": {
			scope: func() *scope {
				s := readyScope(now, readyAt, recorded)
				s.vmis["control-plane"] = instance("cp-1", created)
				return s
			},
			want: want{restarted: restarted(workerOnly), ready: "VMsNotRunning", readyInstances: recorded},
		},
		"control plane and worker recreated": {
			scope: func() *scope {
				s := readyScope(now, readyAt, recorded)
				s.vmis["control-plane"], s.vmis["worker-1"] = instance("cp-2", now), instance("w1-2", now)
				return s
			},
			want: want{restarted: restarted(cpAndWorker), ready: "LabReady", readyInstances: recorded},
		},
		"the VMIs were not observed this pass: what was reported stands": {
			scope: func() *scope {
				s := readyScope(now, readyAt, recorded)
				s.vmis = nil
				meta.SetStatusCondition(&s.env.Status.Conditions, *restarted(workerOnly))
				return s
			},
			want: want{restarted: restarted(workerOnly), ready: "VMsNotRunning", readyInstances: recorded},
		},
		"a lab Ready before instances were recorded: an instance created after Ready": {
			scope: func() *scope {
				s := readyScope(now, readyAt, nil)
				s.vmis["control-plane"], s.vmis["worker-1"] = instance("cp-1", created), instance("w1-2", readyAt.Add(time.Second))
				return s
			},
			want: want{restarted: restarted(workerOnly), ready: "LabReady"},
		},
		"a lab Ready before instances were recorded: instances from before Ready": {
			scope: func() *scope {
				s := readyScope(now, readyAt, nil)
				s.vmis["control-plane"], s.vmis["worker-1"] = instance("cp-1", created), instance("w1-1", readyAt)
				return s
			},
			want: want{ready: "LabReady"},
		},
		"booting: new instances are no restart": {
			scope: func() *scope {
				s := testScope(created.Add(time.Minute))
				s.vmis["control-plane"], s.vmis["worker-1"] = instance("cp-2", created.Add(time.Minute)), instance("w1-1", created)
				return s
			},
			want: want{ready: "Bootstrapping"},
		},
		"rebuilt in a new namespace: a new lab, nothing restarted yet": {
			scope: func() *scope {
				s := readyScope(now, readyAt, recorded)
				meta.SetStatusCondition(&s.env.Status.Conditions, *restarted(workerOnly))
				s.rebuilt, s.namespaceCreated = true, now.Add(-time.Minute)
				s.vmis["control-plane"], s.vmis["worker-1"] = instance("cp-9", now), instance("w1-9", now)
				return s
			},
			want: want{ready: "Bootstrapping"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := tc.scope()
			setStatus(s, true)
			got := meta.FindStatusCondition(s.env.Status.Conditions, "VMsRestarted")
			if diff := cmp.Diff(tc.want.restarted, got, cmpopts.IgnoreFields(metav1.Condition{}, "LastTransitionTime")); diff != "" {
				t.Errorf("VMsRestarted (-want +got):\n%s", diff)
			}
			if got := meta.FindStatusCondition(s.env.Status.Conditions, "Ready"); got == nil || got.Reason != tc.want.ready {
				t.Errorf("Ready = %+v, want reason %s", got, tc.want.ready)
			}
			if diff := cmp.Diff(tc.want.readyInstances, s.env.Status.ReadyInstances, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("readyInstances (-want +got):\n%s", diff)
			}
		})
	}
}

// readyScope is a two-node lab that became Ready at readyAt with the given instances.
func readyScope(now, readyAt time.Time, instances []labforgev1alpha1.InstanceReference) *scope {
	s := testScope(now)
	t := metav1.NewTime(readyAt)
	s.env.Status.ReadyTime = &t
	s.env.Status.ReadyInstances = instances
	return s
}
