package manager

import (
	"reflect"
	"testing"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// TestCompactMetaSharesStrings decodes two objects of one lab, as the cache does, and
// checks that compactMeta keeps their metadata as it was while the strings they have in
// common end up stored once.
func TestCompactMetaSharesStrings(t *testing.T) {
	obj := func(name string) *corev1.ConfigMap {
		// Fresh strings for every field, as a decoder makes them.
		s := func(v string) string { return string([]byte(v)) }
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: s(name), Namespace: s("lab-a"), UID: types.UID(s("uid-of-object-" + name)),
			Labels:      map[string]string{s("labforge.dev/managed-by"): s("labforge"), s("labforge.dev/environment"): s("a")},
			Annotations: map[string]string{s("note"): s("n")},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: s("labforge.dev/v1alpha1"), Kind: s("LabEnvironment"),
				Name: s("a"), UID: types.UID(s("owner-uid")), Controller: ptr.To(true)}},
			Finalizers:    []string{s("labforge.dev/cleanup")},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "labforge"}},
		}, Data: map[string]string{"k": s("v")}}
	}
	var out [2]*corev1.ConfigMap
	for i, name := range []string{"one", "two"} {
		o, err := compactMeta(obj(name))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = o.(*corev1.ConfigMap)
	}
	a, b := out[0], out[1]
	if a.ManagedFields != nil {
		t.Error("managedFields kept in the cache")
	}
	if a.Name != "one" || a.Namespace != "lab-a" || a.Labels["labforge.dev/environment"] != "a" ||
		a.Annotations["note"] != "n" || a.OwnerReferences[0].Kind != "LabEnvironment" ||
		a.OwnerReferences[0].UID != "owner-uid" || !*a.OwnerReferences[0].Controller ||
		a.Finalizers[0] != "labforge.dev/cleanup" || a.Data["k"] != "v" || a.UID != "uid-of-object-one" {
		t.Errorf("metadata changed: %+v", a)
	}
	same := func(what, x, y string) {
		t.Helper()
		if unsafe.StringData(x) != unsafe.StringData(y) {
			t.Errorf("%s stored twice", what)
		}
	}
	same("namespace", a.Namespace, b.Namespace)
	same("label value", a.Labels["labforge.dev/managed-by"], b.Labels["labforge.dev/managed-by"])
	same("annotation value", a.Annotations["note"], b.Annotations["note"])
	same("owner name", a.OwnerReferences[0].Name, b.OwnerReferences[0].Name)
	same("owner UID", string(a.OwnerReferences[0].UID), string(b.OwnerReferences[0].UID))
	same("owner kind", a.OwnerReferences[0].Kind, b.OwnerReferences[0].Kind)
	same("finalizer", a.Finalizers[0], b.Finalizers[0])
	if reflect.ValueOf(a.Labels).UnsafePointer() != reflect.ValueOf(b.Labels).UnsafePointer() {
		t.Error("equal label maps stored twice")
	}
	for k := range a.Labels {
		for k2 := range b.Labels {
			if k == k2 {
				same("label key", k, k2)
			}
		}
	}
	// Objects that are not Kubernetes objects pass through.
	if got, _ := compactMeta("x"); got != "x" {
		t.Errorf("compactMeta(%q) = %v", "x", got)
	}
}

// TestShareSpec checks that objects with equal specs end up holding one copy of them, that
// different specs stay apart, and that nothing is lost on the way.
func TestShareSpec(t *testing.T) {
	limits := func(memory string) *corev1.LimitRange {
		return &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "lab-limits", Namespace: "lab-" + memory},
			Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
				Max: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memory)}}}}}
	}
	transform := func(o any) any {
		t.Helper()
		out, err := shareSpec(o)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a := transform(limits("2Gi")).(*corev1.LimitRange)
	b := transform(limits("2Gi")).(*corev1.LimitRange)
	c := transform(limits("4Gi")).(*corev1.LimitRange)
	if &a.Spec.Limits[0] != &b.Spec.Limits[0] {
		t.Error("two LimitRanges with one spec hold two copies")
	}
	if &a.Spec.Limits[0] == &c.Spec.Limits[0] || c.Spec.Limits[0].Max.Memory().String() != "4Gi" {
		t.Errorf("different specs shared: %v", c.Spec)
	}
	if b.Name != "lab-limits" || b.Namespace != "lab-2Gi" || b.Spec.Limits[0].Max.Memory().String() != "2Gi" {
		t.Errorf("object changed: %+v", b)
	}

	vm := func(env string) *kubevirtv1.VirtualMachine {
		return &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Name: "control-plane", Namespace: "lab-" + env},
			Spec: kubevirtv1.VirtualMachineSpec{Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"labforge.dev/environment": env}},
				Spec: kubevirtv1.VirtualMachineInstanceSpec{Hostname: "control-plane",
					Networks: []kubevirtv1.Network{{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}}}},
			}}}
	}
	x := transform(vm("x")).(*kubevirtv1.VirtualMachine)
	y := transform(vm("y")).(*kubevirtv1.VirtualMachine)
	if &x.Spec.Template.Spec.Networks[0] != &y.Spec.Template.Spec.Networks[0] {
		t.Error("two VMs with one machine hold two copies")
	}
	if y.Spec.Template.ObjectMeta.Labels["labforge.dev/environment"] != "y" || y.Spec.Template.Spec.Hostname != "control-plane" {
		t.Errorf("VM changed: %+v", y.Spec.Template)
	}

	snapshot := func() *corev1.ConfigMap {
		return &corev1.ConfigMap{Data: map[string]string{"spec": string([]byte(`{"workers":1}`))}}
	}
	p := transform(snapshot()).(*corev1.ConfigMap)
	q := transform(snapshot()).(*corev1.ConfigMap)
	if unsafe.StringData(p.Data["spec"]) != unsafe.StringData(q.Data["spec"]) || q.Data["spec"] != `{"workers":1}` {
		t.Error("two template snapshots hold two copies")
	}
}

// TestSpecPoolBound checks that the pool starts over instead of growing past its bound.
func TestSpecPoolBound(t *testing.T) {
	p := &specPool{max: 100}
	for i := range p.max + 10 {
		if _, err := share(p, "ConfigMap", map[string]int{"n": i}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(p.specs); n > p.max {
		t.Errorf("the pool holds %d specs, more than %d", n, p.max)
	}
}

// TestNodeFacts: the cache keeps of a Node what labforge reads, not the kubelet's report.
func TestNodeFacts(t *testing.T) {
	in := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u1", ResourceVersion: "7", Labels: map[string]string{"zone": "a"},
			Annotations: map[string]string{"projectcalico.org/IPv4Address": "192.168.1.11/24"}},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"}, ProviderID: "kind://n1",
			Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.11"}},
			Images:     []corev1.ContainerImage{{Names: []string{"registry.k8s.io/pause:3.10"}, SizeBytes: 1 << 20}},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	got, err := nodeFacts(in)
	if err != nil {
		t.Fatal(err)
	}
	want := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u1", ResourceVersion: "7", Labels: map[string]string{"zone": "a"}},
		Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24", PodCIDRs: []string{"10.244.1.0/24"},
			Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.1.11"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nodeFacts (-want +got):\n%s", diff)
	}
}
