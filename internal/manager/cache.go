package manager

import (
	"encoding/json"
	"fmt"
	"sync"
	"unique"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
)

// What the cache keeps of each object is decided here: the cache is most of the
// operator's memory, about 19 objects per lab (docs/performance.md, "scale").

// cacheOptions caches only labforge's own objects of the kinds a host cluster has many of,
// and keeps of every object only what labforge reads.
func cacheOptions() cache.Options {
	// Only labforge's own objects of these kinds are cached: a host cluster's other
	// Secrets and ConfigMaps are none of its business and would cost memory.
	byObject := managedOnly(&corev1.Secret{}, &corev1.ConfigMap{}, &corev1.Service{},
		&corev1.ResourceQuota{}, &corev1.LimitRange{}, &networkingv1.NetworkPolicy{},
		&kubevirtv1.VirtualMachine{}, &kubevirtv1.VirtualMachineInstance{},
		// Launcher pods carry their VM's labels. The operator never reads pods; a
		// simulated VM backend run in the manager does (informers start only for
		// kinds something reads or watches, so the shipped operator has none).
		&corev1.Pod{})
	// Every Node is cached (the host's facts: hostcluster.Host), but only what labforge
	// reads of it.
	byObject[&corev1.Node{}] = cache.ByObject{Transform: nodeFacts}
	return cache.Options{DefaultTransform: compactMeta, ByObject: byObject}
}

// nodeFacts keeps of a Node its name and labels, its pod ranges, taints and
// schedulability, and its addresses: what hostcluster.Facts reads, and what a scheduler
// (the simulated one) would. A real Node's status lists every image the kubelet holds,
// its conditions and capacity (often 10-50 KB), and its annotations are the CNI's and
// kubeadm's; a host of a few hundred nodes would cost megabytes for nothing.
func nodeFacts(in any) (any, error) {
	n, ok := in.(*corev1.Node)
	if !ok {
		return in, nil
	}
	kept := &corev1.Node{
		TypeMeta: n.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels,
			CreationTimestamp: n.CreationTimestamp, DeletionTimestamp: n.DeletionTimestamp,
		},
		Spec: corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs,
			Taints: n.Spec.Taints, Unschedulable: n.Spec.Unschedulable},
		Status: corev1.NodeStatus{Addresses: n.Status.Addresses},
	}
	return kept, nil
}

// managedOnly restricts the cache of each kind to objects labelled as labforge's.
func managedOnly(objs ...client.Object) map[client.Object]cache.ByObject {
	selector := labels.SelectorFromSet(labels.Set{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue})
	out := make(map[client.Object]cache.ByObject, len(objs))
	for _, o := range objs {
		by := cache.ByObject{Label: selector}
		switch o.(type) {
		case *corev1.Secret:
			by.Transform = dropUserData
		case *kubevirtv1.VirtualMachineInstance:
			by.Transform = vmiStatusOnly
		case *corev1.ResourceQuota:
			by.Transform = quotaWithoutUsage
		case *corev1.Pod:
			by.Transform = PodSkeleton
		case *corev1.LimitRange, *networkingv1.NetworkPolicy, *kubevirtv1.VirtualMachine, *corev1.ConfigMap:
			by.Transform = shareSpec
		}
		out[o] = by
	}
	return out
}

// compactMeta drops an object's managedFields, which labforge never reads and which are
// most of the bytes of many objects, and keeps one copy of what its metadata has in common
// with other objects: label and annotation maps (most of a lab's nineteen objects carry
// the same labels), and the strings of its namespace, name (every lab has a "lab-pki"),
// owner references and finalizers. Every cached object goes through it, also through the
// transforms below.
//
// The strings are Go's canonical copies (package unique), held only while some object uses
// them, so the names of deleted labs do not pile up; the maps come from a bounded pool.
func compactMeta(in any) (any, error) {
	o, ok := in.(metav1.Object)
	if !ok {
		return in, nil
	}
	o.SetManagedFields(nil)
	o.SetNamespace(intern(o.GetNamespace()))
	o.SetName(intern(o.GetName()))
	o.SetLabels(sharedMap(o.GetLabels()))
	o.SetAnnotations(sharedMap(o.GetAnnotations()))
	refs := o.GetOwnerReferences()
	for i := range refs {
		r := &refs[i]
		r.APIVersion, r.Kind, r.Name = intern(r.APIVersion), intern(r.Kind), intern(r.Name)
		r.UID = types.UID(intern(string(r.UID)))
	}
	finalizers := o.GetFinalizers()
	for i := range finalizers {
		finalizers[i] = intern(finalizers[i])
	}
	return in, nil
}

// intern returns the canonical copy of s.
func intern(s string) string {
	if s == "" {
		return s
	}
	return unique.Make(s).Value()
}

// sharedMap returns the one copy of a label (or annotation) map equal to m: most of a
// lab's objects carry the same labels. Its keys and values are canonical strings; a new
// copy is made only for a map the pool does not hold yet.
func sharedMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return m
	}
	key, err := json.Marshal(m)
	if err != nil {
		return m // a map of strings always encodes
	}
	return labelSets.lookupOrAdd(string(key), func() any {
		canonical := make(map[string]string, len(m))
		for k, v := range m {
			canonical[intern(k)] = intern(v)
		}
		return canonical
	}).(map[string]string)
}

// shareSpec keeps one copy of each distinct spec of the kinds whose specs repeat from lab
// to lab: the LimitRange, most of the NetworkPolicies, the VMs' machine (everything under
// spec.template.spec: disks, volumes, interfaces, resources, the same for every lab's
// control plane of one template) and the template snapshot ConfigMap's data. Objects with
// equal specs then hold the same maps, slices and pointers: the cache never changes an
// object it holds, and hands out deep copies (or, to callers that ask for none, promises
// not to change what it hands out).
func shareSpec(in any) (any, error) {
	var err error
	switch o := in.(type) {
	case *corev1.LimitRange:
		o.Spec, err = share(specs, "LimitRange", o.Spec)
	case *corev1.ResourceQuota:
		o.Spec, err = share(specs, "ResourceQuota", o.Spec)
	case *networkingv1.NetworkPolicy:
		o.Spec, err = share(specs, "NetworkPolicy", o.Spec)
	case *kubevirtv1.VirtualMachine:
		if t := o.Spec.Template; t != nil {
			t.Spec, err = share(specs, "VirtualMachineInstanceSpec", t.Spec)
		}
	case *corev1.ConfigMap:
		for k, v := range o.Data {
			o.Data[k] = intern(v)
		}
	}
	if err != nil {
		return nil, err
	}
	return compactMeta(in)
}

// specs and labelSets are the process's pools of shared specs and label maps, for every
// manager in it. A thousand labs have about five thousand distinct label maps.
var (
	specs     = &specPool{max: 1024}
	labelSets = &specPool{max: 8192}
)

// specPool keeps one copy of each distinct spec, by kind and encoding (protobuf where the
// type has one, JSON otherwise).
type specPool struct {
	// max bounds the specs kept: past it, sharing starts over (objects already cached keep
	// what they hold).
	max   int
	mu    sync.Mutex
	specs map[string]any
}

// share returns p's copy of spec (a spec of kind), adding spec when it has none.
func share[T any](p *specPool, kind string, spec T) (T, error) {
	var b []byte
	var err error
	if m, ok := any(&spec).(interface{ Marshal() ([]byte, error) }); ok {
		b, err = m.Marshal() // the built-in kinds: their protobuf, sorted maps included
	} else {
		b, err = json.Marshal(spec)
	}
	if err != nil {
		return spec, fmt.Errorf("encoding a %s spec: %w", kind, err)
	}
	shared, ok := p.lookupOrAdd(kind+"\x00"+string(b), func() any { return spec }).(T)
	if !ok {
		return spec, nil
	}
	return shared, nil
}

// lookupOrAdd returns what p holds under key, or, when it holds nothing, what add makes,
// kept under key.
func (p *specPool) lookupOrAdd(key string, add func() any) any {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.specs[key]; ok {
		return v
	}
	if p.specs == nil || len(p.specs) >= p.max {
		p.specs = map[string]any{}
	}
	v := add()
	p.specs[key] = v
	return v
}

// vmiStatusOnly keeps a VMI's metadata and status in the cache, not its spec: labforge
// reads only what KubeVirt reports of a VMI, and a VMI's spec is its VM's template again
// with KubeVirt's defaults, a tenth of a thousand labs' cache. The simulated backend takes
// what it needs from the VM.
func vmiStatusOnly(in any) (any, error) {
	if vmi, ok := in.(*kubevirtv1.VirtualMachineInstance); ok {
		vmi.Spec = kubevirtv1.VirtualMachineInstanceSpec{}
	}
	return compactMeta(in)
}

// PodSkeleton keeps of a pod what a VM backend reads of its launcher pods: metadata, the
// node it is bound to, and its phase and addresses. A pod's spec is most of its bytes.
func PodSkeleton(in any) (any, error) {
	if pod, ok := in.(*corev1.Pod); ok {
		pod.Spec = corev1.PodSpec{NodeName: pod.Spec.NodeName}
		pod.Status = corev1.PodStatus{
			Phase: pod.Status.Phase, HostIP: pod.Status.HostIP, PodIP: pod.Status.PodIP,
			HostIPs: pod.Status.HostIPs, PodIPs: pod.Status.PodIPs,
		}
	}
	return compactMeta(in)
}

// quotaWithoutUsage keeps a ResourceQuota without its status: labforge writes a lab's
// quota and never reads what it counts.
func quotaWithoutUsage(in any) (any, error) {
	if q, ok := in.(*corev1.ResourceQuota); ok {
		q.Status = corev1.ResourceQuotaStatus{}
	}
	return shareSpec(in)
}

// dropUserData keeps only the metadata of cloud-init Secrets in the cache. They are
// written once and never read back, and at 17-26 KB each they would be most of the cache
// of a thousand labs.
func dropUserData(in any) (any, error) {
	if s, ok := in.(*corev1.Secret); ok {
		if _, ok := s.Labels[lab.LabelUserData]; ok {
			s.Data = nil
			s.StringData = nil
		}
	}
	return compactMeta(in)
}
