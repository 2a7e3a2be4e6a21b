package render

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
)

// VMOverhead is what a VM's launcher pod needs beyond the guest memory (QEMU, libvirt,
// virt-launcher). KubeVirt computes it per VM; this upper bound sizes the quota.
var VMOverhead = resource.MustParse("512Mi")

// Namespace returns the lab's namespace. virt-launcher pods need privileged PodSecurity
// (they run QEMU with devices); the namespace holds nothing a student can schedule into,
// since students never get credentials for the host cluster.
func Namespace(l Lab) *corev1.Namespace {
	labels := l.Labels()
	labels["pod-security.kubernetes.io/enforce"] = "privileged"
	labels["pod-security.kubernetes.io/warn"] = "privileged"
	return &corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            l.Namespace(),
			Labels:          labels,
			OwnerReferences: []metav1.OwnerReference{l.OwnerReference()},
		},
	}
}

// ResourceQuota bounds what the lab namespace can hold to what the template describes:
// the CPU and memory of its VMs exactly, twice the launcher pods and NodePorts it needs
// (quota admission charges a create before the create can fail, so two operators racing
// to create the same object, or a retried create, are charged twice until
// kube-controller-manager recounts, and an exact fit would refuse the lab's own objects
// meanwhile), no volumes and no load balancers.
//
// It counts only what costs the host: compute, the pods that hold it, and host ports.
// Every create or delete of a kind the quota counts is one more write (admission charges
// it to the quota's status, kube-controller-manager recounts it), and only labforge writes
// Secrets, ConfigMaps, Services and VirtualMachines in a lab namespace. A VirtualMachine
// costs the host only through its launcher pod, which the pod and compute lines count:
// counting VirtualMachines too cost four to five writes per lab (and a conflict with
// kube-controller-manager's recount at teardown) and guarded nothing more (decision 38).
func ResourceQuota(l Lab) *corev1.ResourceQuota {
	nodes := l.Nodes()
	var vcpus int64
	memory := resource.Quantity{}
	for _, n := range nodes {
		vcpus += int64(n.Size.Cores) * int64(n.Size.Threads)
		memory.Add(n.Size.Memory)
		memory.Add(VMOverhead)
	}
	count := int64(len(nodes))
	const headroom = 2
	return &corev1.ResourceQuota{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ResourceQuota"},
		ObjectMeta: l.objectMeta("lab-quota", nil),
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			// Launcher pods, plus one spare each for KubeVirt's hotplug or migration pods.
			corev1.ResourcePods:                   *resource.NewQuantity(2*count, resource.DecimalSI),
			corev1.ResourceRequestsCPU:            *resource.NewQuantity(vcpus, resource.DecimalSI),
			corev1.ResourceRequestsMemory:         memory,
			corev1.ResourceServicesNodePorts:      *resource.NewQuantity(2*headroom, resource.DecimalSI),
			corev1.ResourceServicesLoadBalancers:  *resource.NewQuantity(0, resource.DecimalSI),
			corev1.ResourcePersistentVolumeClaims: *resource.NewQuantity(0, resource.DecimalSI),
		}},
	}
}

// LimitRange caps any single container in the lab namespace at the largest VM's memory
// plus overhead, and gives containers without requests small defaults, so that nothing
// unexpected in the namespace can take a node's memory.
func LimitRange(l Lab) *corev1.LimitRange {
	largest := resource.Quantity{}
	for _, n := range l.Nodes() {
		if n.Size.Memory.Cmp(largest) > 0 {
			largest = n.Size.Memory.DeepCopy()
		}
	}
	largest.Add(VMOverhead)
	return &corev1.LimitRange{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "LimitRange"},
		ObjectMeta: l.objectMeta("lab-limits", nil),
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type:           corev1.LimitTypeContainer,
			Max:            corev1.ResourceList{corev1.ResourceMemory: largest},
			DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
			Default:        corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
		}}},
	}
}

// APIService is the in-cluster Service in front of the lab's API server: the operator's
// readiness probe and the workers' kubeadm join use it. It is the lab's only Service: at
// claim time the claim controller makes it the student's way in (ExposedAPIService).
func APIService(l Lab) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: l.objectMeta(lab.APIService, nil),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeClusterIP,
			Selector: controlPlaneSelector(l),
			Ports:    []corev1.ServicePort{apiPort()},
			// Joining workers must reach the API before the control plane reports ready.
			PublishNotReadyAddresses: true,
		},
	}
}

func apiPort() corev1.ServicePort {
	return corev1.ServicePort{Name: PortAPI, Protocol: corev1.ProtocolTCP, Port: lab.APIPort, TargetPort: intOrString(lab.APIPort)}
}

func controlPlaneSelector(l Lab) map[string]string {
	return map[string]string{
		labforgev1alpha1.LabelEnvironment: l.Env.Name,
		lab.LabelNode:                     lab.ControlPlaneVM,
	}
}
