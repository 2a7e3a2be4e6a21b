package labenvironment

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

func TestQuotaUsage(t *testing.T) {
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
	p := quotaUsage
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

func TestVMStatus(t *testing.T) {
	vm := func(change func(*kubevirtv1.VirtualMachine)) *kubevirtv1.VirtualMachine {
		v := &kubevirtv1.VirtualMachine{
			ObjectMeta: metav1.ObjectMeta{Name: "worker-1", Namespace: "lab-a", ResourceVersion: "1"},
			Spec:       kubevirtv1.VirtualMachineSpec{RunStrategy: ptr.To(kubevirtv1.RunStrategyAlways)},
		}
		change(v)
		return v
	}
	old := vm(func(*kubevirtv1.VirtualMachine) {})
	reported := vm(func(v *kubevirtv1.VirtualMachine) {
		v.ResourceVersion = "2"
		v.Status = kubevirtv1.VirtualMachineStatus{Ready: true, PrintableStatus: kubevirtv1.VirtualMachineStatusRunning}
	})
	halted := vm(func(v *kubevirtv1.VirtualMachine) {
		v.ResourceVersion = "2"
		v.Spec.RunStrategy = ptr.To(kubevirtv1.RunStrategyHalted)
	})
	if vmStatus.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: reported}) {
		t.Error("KubeVirt's status report woke the lab")
	}
	if !vmStatus.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: halted}) {
		t.Error("a VM stopped by hand did not wake the lab")
	}
}

func TestOwnerLive(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := labforgev1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	live := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: "live", UID: "live-uid"}}
	going := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: "going", UID: "going-uid",
		DeletionTimestamp: &now, Finalizers: []string{labforgev1alpha1.LabEnvironmentFinalizer}}}
	r := &Reconciler{Client: fake.NewClientBuilder().WithScheme(scheme).WithObjects(live, going).Build()}
	ownedBy := func(name, uid string) *corev1.Secret {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "lab-" + name}}
		if name != "" {
			s.OwnerReferences = []metav1.OwnerReference{{APIVersion: labforgev1alpha1.GroupVersion.String(),
				Kind: "LabEnvironment", Name: name, UID: types.UID(uid), Controller: ptr.To(true)}}
		}
		return s
	}
	tests := map[string]struct {
		obj  *corev1.Secret
		want bool
	}{
		"of a live lab":                      {obj: ownedBy("live", "live-uid"), want: true},
		"of a lab being deleted":             {obj: ownedBy("going", "going-uid")},
		"of a lab gone":                      {obj: ownedBy("gone", "gone-uid")},
		"of an earlier lab of the same name": {obj: ownedBy("live", "old-uid")},
		"of no lab (an orphan)":              {obj: ownedBy("", ""), want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := r.ownerLive(tc.obj); got != tc.want {
				t.Errorf("ownerLive = %v, want %v", got, tc.want)
			}
		})
	}
	p := r.ownChildren()
	if p.Create(event.CreateEvent{Object: ownedBy("live", "live-uid")}) {
		t.Error("the creation of the lab's own object woke it")
	}
	if !p.Delete(event.DeleteEvent{Object: ownedBy("live", "live-uid")}) || p.Delete(event.DeleteEvent{Object: ownedBy("going", "going-uid")}) {
		t.Error("deletes: a live lab's must wake it, a deleted lab's must not")
	}
}

func TestLabChanged(t *testing.T) {
	lab := func(change func(*labforgev1alpha1.LabEnvironment)) *labforgev1alpha1.LabEnvironment {
		env := &labforgev1alpha1.LabEnvironment{
			ObjectMeta: metav1.ObjectMeta{Name: "a", ResourceVersion: "1", Generation: 1, Finalizers: []string{labforgev1alpha1.LabEnvironmentFinalizer}},
			Spec:       labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "t"}},
		}
		change(env)
		return env
	}
	tests := map[string]struct {
		// before changes the lab as the cache had it, if set; change the lab as updated.
		before, change func(*labforgev1alpha1.LabEnvironment)
		want           bool
	}{
		"its own status write": {change: func(env *labforgev1alpha1.LabEnvironment) {
			env.ResourceVersion = "2"
			env.Status.ObservedGeneration = 1
			env.Status.Conditions = []metav1.Condition{{Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionTrue}}
		}},
		"its own finalizer added": {
			before: func(env *labforgev1alpha1.LabEnvironment) { env.Finalizers = nil },
			change: func(env *labforgev1alpha1.LabEnvironment) { env.ResourceVersion = "2" },
		},
		"its finalizer taken away": {change: func(env *labforgev1alpha1.LabEnvironment) {
			env.ResourceVersion = "2"
			env.Finalizers = nil
		}, want: true},
		"a resync": {change: func(*labforgev1alpha1.LabEnvironment) {}, want: true},
		"bound to a claim": {change: func(env *labforgev1alpha1.LabEnvironment) {
			env.ResourceVersion, env.Generation = "2", 2
			env.Spec.ClaimRef = &labforgev1alpha1.ClaimReference{Namespace: "s", Name: "c", UID: "u"}
		}, want: true},
		"being deleted": {change: func(env *labforgev1alpha1.LabEnvironment) {
			env.ResourceVersion = "2"
			env.DeletionTimestamp = &metav1.Time{}
		}, want: true},
		"annotated": {change: func(env *labforgev1alpha1.LabEnvironment) {
			env.ResourceVersion = "2"
			env.Annotations = map[string]string{"a": "b"}
		}, want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := tc.before
			if before == nil {
				before = func(*labforgev1alpha1.LabEnvironment) {}
			}
			old := lab(before)
			if got := labChanged.Update(event.UpdateEvent{ObjectOld: old, ObjectNew: lab(tc.change)}); got != tc.want {
				t.Errorf("reconcile = %v, want %v", got, tc.want)
			}
		})
	}
	if !labChanged.Create(event.CreateEvent{Object: lab(func(*labforgev1alpha1.LabEnvironment) {})}) ||
		!labChanged.Delete(event.DeleteEvent{Object: lab(func(*labforgev1alpha1.LabEnvironment) {})}) {
		t.Error("creates and deletes must reconcile")
	}
}

func TestNotHandedOver(t *testing.T) {
	svc := func(typ corev1.ServiceType) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "lab-api", Namespace: "lab-a"}, Spec: corev1.ServiceSpec{Type: typ}}
	}
	secret := func(name string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "lab-a"}}
	}
	tests := map[string]struct {
		old, cur client.Object
		want     bool
	}{
		"the claim turns the Service NodePort": {old: svc(corev1.ServiceTypeClusterIP), cur: svc(corev1.ServiceTypeNodePort)},
		"the claimed Service edited":           {old: svc(corev1.ServiceTypeNodePort), cur: svc(corev1.ServiceTypeNodePort)},
		"the warm lab's Service edited":        {old: svc(corev1.ServiceTypeClusterIP), cur: svc(corev1.ServiceTypeClusterIP), want: true},
		"the student's keys written":           {old: secret("ssh-authorized-keys"), cur: secret("ssh-authorized-keys")},
		"the PKI edited":                       {old: secret("lab-pki"), cur: secret("lab-pki"), want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := notHandedOver.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.cur}); got != tc.want {
				t.Errorf("reconcile = %v, want %v", got, tc.want)
			}
		})
	}
	if !notHandedOver.Delete(event.DeleteEvent{Object: svc(corev1.ServiceTypeNodePort)}) ||
		!notHandedOver.Delete(event.DeleteEvent{Object: secret("ssh-authorized-keys")}) {
		t.Error("deletes must reconcile")
	}
}
