package labenvironment

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"
)

func TestNotUsageOnly(t *testing.T) {
	quota := func(change func(*corev1.ResourceQuota)) *corev1.ResourceQuota {
		q := &corev1.ResourceQuota{
			ObjectMeta: metav1.ObjectMeta{Name: "lab-quota", Namespace: "lab-a", ResourceVersion: "1",
				Labels: map[string]string{"labforge.dev/environment": "a"}},
			Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("4")}},
		}
		change(q)
		return q
	}
	tests := map[string]struct {
		change func(*corev1.ResourceQuota)
		want   bool
	}{
		"usage recounted": {change: func(q *corev1.ResourceQuota) {
			q.ResourceVersion = "2"
			q.Status.Used = corev1.ResourceList{corev1.ResourcePods: resource.MustParse("2")}
		}},
		"a limit edited": {change: func(q *corev1.ResourceQuota) {
			q.ResourceVersion = "2"
			q.Spec.Hard[corev1.ResourcePods] = resource.MustParse("50")
		}, want: true},
		"a label removed": {change: func(q *corev1.ResourceQuota) {
			q.ResourceVersion = "2"
			q.Labels = nil
		}, want: true},
		"owner references stripped": {change: func(q *corev1.ResourceQuota) {
			q.ResourceVersion = "2"
			q.OwnerReferences = []metav1.OwnerReference{{Name: "someone"}}
		}, want: true},
	}
	p := notUsageOnly()
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			old := quota(func(*corev1.ResourceQuota) {})
			if got := p.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: quota(tc.change)}); got != tc.want {
				t.Errorf("reconcile = %v, want %v", got, tc.want)
			}
			if old.ResourceVersion != "1" {
				t.Error("the cached object was changed")
			}
		})
	}
	if !p.Create(event.CreateEvent{Object: quota(func(*corev1.ResourceQuota) {})}) ||
		!p.Delete(event.DeleteEvent{Object: quota(func(*corev1.ResourceQuota) {})}) {
		t.Error("creates and deletes must reconcile")
	}
}
