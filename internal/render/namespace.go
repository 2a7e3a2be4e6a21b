package render

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/ownership"
)

// Headroom the lab's quota gives each VM's launcher pod beyond KubeVirt's own arithmetic
// (LauncherMemoryRequest, and the vCPUs at a cpuAllocationRatio of 1, the most a VM's
// compute container can ask): its support containers (a CPU millicore and a megabyte per
// containerDisk container, an init container of up to ten millicores), a KubeVirt whose
// admin raised additionalGuestMemoryOverheadRatio or the support containers' requests,
// and a hotplug attachment pod. Decision 40.
var (
	LauncherCPUHeadroom    = resource.MustParse("100m")
	LauncherMemoryHeadroom = resource.MustParse("256Mi")
)

// Namespace returns the lab's namespace. virt-launcher pods need privileged PodSecurity
// (they run QEMU with devices); the namespace holds nothing a student can schedule into,
// since students never get credentials for the host cluster.
func Namespace(l Lab) *corev1.Namespace {
	labels := l.Labels()
	labels["pod-security.kubernetes.io/enforce"] = "privileged"
	labels["pod-security.kubernetes.io/warn"] = "privileged"
	ns := &corev1.Namespace{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{
			Name:            l.Namespace(),
			Labels:          labels,
			OwnerReferences: []metav1.OwnerReference{l.OwnerReference()},
		},
	}
	if l.NamespaceProof != "" {
		ns.Annotations = map[string]string{ownership.AnnotationProof: l.NamespaceProof}
	}
	return ns
}

// ResourceQuota bounds what the lab namespace can hold to what its VMs' launcher pods
// need: per VM, the CPU of its vCPUs and the memory KubeVirt asks for it (guest memory
// plus KubeVirt's overhead), each with the launcher's headroom (LauncherCPUHeadroom,
// LauncherMemoryHeadroom), so that no cpuAllocationRatio can make a launcher pod exceed
// it; twice the launcher pods and NodePorts it needs (quota admission charges a create
// before the create can fail, so two operators racing to create the same object, or a
// retried create, are charged twice until kube-controller-manager recounts, and an exact
// fit would refuse the lab's own objects meanwhile); no volumes and no load balancers.
// It has no limits.* lines: KubeVirt sets limits on a launcher pod only where a quota
// asks for them, and a lab needs none.
//
// It counts only what costs the host: compute, the pods that hold it, and host ports.
// Every create or delete of a kind the quota counts is one more write (admission charges
// it to the quota's status, kube-controller-manager recounts it), and only labforge writes
// Secrets, ConfigMaps, Services and VirtualMachines in a lab namespace. A VirtualMachine
// costs the host only through its launcher pod, which the pod and compute lines count:
// counting VirtualMachines too cost four to five writes per lab (and a conflict with
// kube-controller-manager's recount at teardown) and guarded nothing more (decision 38).
func ResourceQuota(l Lab) *corev1.ResourceQuota {
	vms := VirtualMachines(l)
	cpu := resource.Quantity{Format: resource.DecimalSI}
	memory := resource.Quantity{Format: resource.BinarySI}
	for _, vm := range vms {
		spec := &vm.Spec.Template.Spec
		cpu.Add(*resource.NewQuantity(VCPUs(spec.Domain.CPU), resource.DecimalSI))
		cpu.Add(LauncherCPUHeadroom)
		memory.Add(LauncherMemoryRequest(spec))
		memory.Add(LauncherMemoryHeadroom)
	}
	count := int64(len(vms))
	// The SSH and API ports, and one per Service the student may expose
	// (ExposedService; a Service of several ports takes more, and its host Service is
	// refused once the quota is used up).
	nodePorts := 2 + int64(l.Template.Network.MaxExposedServices)
	return &corev1.ResourceQuota{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ResourceQuota"},
		ObjectMeta: l.objectMeta("lab-quota", nil),
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			// Launcher pods, plus one spare each for KubeVirt's hotplug or migration pods.
			corev1.ResourcePods:                   *resource.NewQuantity(2*count, resource.DecimalSI),
			corev1.ResourceRequestsCPU:            cpu,
			corev1.ResourceRequestsMemory:         memory,
			corev1.ResourceServicesNodePorts:      *resource.NewQuantity(2*nodePorts, resource.DecimalSI),
			corev1.ResourceServicesLoadBalancers:  *resource.NewQuantity(0, resource.DecimalSI),
			corev1.ResourcePersistentVolumeClaims: *resource.NewQuantity(0, resource.DecimalSI),
		}},
	}
}

// LimitRange gives a container that asks for nothing a small request, and nothing else
// (decision 50). It sets no default limit and no maximum: KubeVirt gives a launcher pod's
// compute container a memory request of the guest memory plus overhead and no memory
// limit, so a default limit would be copied in below the request and make the pod
// invalid; a maximum becomes the default limit where none is set (the API server's
// defaulting of a LimitRange), with the same effect below a launcher's request and a
// memory limit KubeVirt would not set above it.
// The quota bounds the namespace's total; students never get credentials for the host
// cluster, so nothing else is created in a lab namespace.
func LimitRange(l Lab) *corev1.LimitRange {
	return &corev1.LimitRange{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "LimitRange"},
		ObjectMeta: l.objectMeta("lab-limits", nil),
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type:           corev1.LimitTypeContainer,
			DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi")},
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
