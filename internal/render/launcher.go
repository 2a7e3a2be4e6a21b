package render

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// KubeVirt's virt-launcher arithmetic, as KubeVirt v1.8 does it (kubevirt/kubevirt
// pkg/virt-controller/services/renderresources.go and the memory overhead calculation,
// GetMemoryOverhead, of pkg/virt-controller/services; read, not copied). labforge needs it
// twice: the lab's quota must admit every launcher pod KubeVirt will create, and the
// simulated KubeVirt must create exactly those pods.

// Fixed memory of the processes that run in every launcher pod beside the guest, as
// KubeVirt estimates them (virt-launcher-monitor, virt-launcher, virtlogd, virtqemud, QEMU
// minus the guest), then per vCPU, the IOThread, and the video RAM of the graphics device
// KubeVirt attaches unless told not to.
var (
	launcherProcessesOverhead = resource.MustParse("220Mi") // 25 + 100 + 25 + 40 + 30 Mi
	launcherPerVCPUOverhead   = resource.MustParse("8Mi")
	launcherIOThreadOverhead  = resource.MustParse("8Mi")
	launcherVideoRAMOverhead  = resource.MustParse("32Mi")
	launcherArm64Overhead     = resource.MustParse("128Mi") // two UEFI pflash devices
	launcherDedicatedOverhead = resource.MustParse("100Mi") // dedicated CPUs or guaranteed QoS
	launcherTPMOverhead       = resource.MustParse("53Mi")  // swtpm
	launcherProbeOverhead     = resource.MustParse("10Mi")  // per exec or guest-agent probe
	launcherProbeBinary       = resource.MustParse("100Mi") // virt-probe, once
)

// VCPUs is the number of vCPUs KubeVirt gives a VM with this CPU topology: sockets ×
// cores × threads, an unset figure counting as one.
func VCPUs(cpu *kubevirtv1.CPU) int64 {
	if cpu == nil {
		return 1
	}
	one := func(v uint32) int64 {
		if v == 0 {
			return 1
		}
		return int64(v)
	}
	return one(cpu.Sockets) * one(cpu.Cores) * one(cpu.Threads)
}

// LauncherMemoryOverhead is the memory KubeVirt adds to a VM's memory request on its
// launcher pod's compute container (KubeVirt's GetMemoryOverhead with no
// additionalGuestMemoryOverheadRatio): page tables (one byte per 512 of the memory
// request), the launcher's processes, 8Mi per vCPU, 8Mi for the IOThread, 32Mi of video
// RAM unless autoattachGraphicsDevice is false, and the extras of arm64, dedicated CPUs,
// a TPM and exec probes.
func LauncherMemoryOverhead(spec *kubevirtv1.VirtualMachineInstanceSpec) resource.Quantity {
	domain := &spec.Domain
	overhead := resource.NewScaledQuantity(0, resource.Kilo)

	// KubeVirt rounds the request up to kilobytes before dividing.
	request := domain.Resources.Requests.Memory()
	overhead.Add(*resource.NewQuantity(request.ScaledValue(resource.Kilo)*1000/512, resource.BinarySI))
	overhead.Add(launcherProcessesOverhead)
	vcpus := int64(1)
	switch {
	case domain.CPU != nil:
		vcpus = VCPUs(domain.CPU)
	case domain.Resources.Limits.Cpu().Value() > 0:
		vcpus = domain.Resources.Limits.Cpu().Value()
	case domain.Resources.Requests.Cpu().Value() > 0:
		vcpus = domain.Resources.Requests.Cpu().Value()
	}
	overhead.Add(*resource.NewQuantity(launcherPerVCPUOverhead.Value()*vcpus, resource.BinarySI))
	overhead.Add(launcherIOThreadOverhead)
	if g := domain.Devices.AutoattachGraphicsDevice; g == nil || *g {
		overhead.Add(launcherVideoRAMOverhead)
	}
	if spec.Architecture == "arm64" {
		overhead.Add(launcherArm64Overhead)
	}
	if tpm := domain.Devices.TPM; tpm != nil && (tpm.Enabled == nil || *tpm.Enabled) {
		overhead.Add(launcherTPMOverhead)
	}
	if (domain.CPU != nil && domain.CPU.DedicatedCPUPlacement) || wantsGuaranteedQOS(domain) {
		overhead.Add(launcherDedicatedOverhead)
	}
	liveness := spec.LivenessProbe != nil && spec.LivenessProbe.Exec != nil
	readiness := spec.ReadinessProbe != nil && spec.ReadinessProbe.Exec != nil
	for _, p := range []bool{liveness, readiness} {
		if p {
			overhead.Add(launcherProbeOverhead)
		}
	}
	if liveness || readiness {
		overhead.Add(launcherProbeBinary)
	}
	return *overhead
}

// wantsGuaranteedQOS is KubeVirt's WantsToHaveQOSGuaranteed: CPU and memory requests
// equal to their limits.
func wantsGuaranteedQOS(domain *kubevirtv1.DomainSpec) bool {
	r := domain.Resources
	return !r.Requests.Memory().IsZero() && r.Requests.Memory().Cmp(*r.Limits.Memory()) == 0 &&
		!r.Requests.Cpu().IsZero() && r.Requests.Cpu().Cmp(*r.Limits.Cpu()) == 0
}

// LauncherMemoryRequest is the memory request of a VM's launcher pod's compute container:
// the VM's memory request (its memory limit, or its guest memory, when it sets none) plus
// LauncherMemoryOverhead. KubeVirt's default memory overcommit (100 %) is assumed.
func LauncherMemoryRequest(spec *kubevirtv1.VirtualMachineInstanceSpec) resource.Quantity {
	domain := &spec.Domain
	request := resource.Quantity{}
	switch {
	case !domain.Resources.Requests.Memory().IsZero():
		request = domain.Resources.Requests.Memory().DeepCopy()
	case !domain.Resources.Limits.Memory().IsZero():
		request = domain.Resources.Limits.Memory().DeepCopy()
	case domain.Memory != nil && domain.Memory.Guest != nil:
		request = domain.Memory.Guest.DeepCopy()
	}
	if !domain.Resources.OvercommitGuestOverhead {
		request.Add(LauncherMemoryOverhead(spec))
	}
	return request
}

// Support containers of a launcher pod beside the compute container, with the resources
// KubeVirt gives them when its configuration does not change them: one container per
// containerDisk volume (and an init container of the same size that pulls its image
// early), and the init container that copies KubeVirt's container-disk binary.
var (
	// ContainerDiskRequests and ContainerDiskLimits are those of each containerDisk
	// container and its init container.
	ContainerDiskRequests = corev1.ResourceList{
		corev1.ResourceCPU:              resource.MustParse("1m"),
		corev1.ResourceMemory:           resource.MustParse("1M"),
		corev1.ResourceEphemeralStorage: resource.MustParse("50M"),
	}
	ContainerDiskLimits = corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("10m"),
		corev1.ResourceMemory: resource.MustParse("40M"),
	}
	// ContainerDiskBinaryRequests and ContainerDiskBinaryLimits are those of the init
	// container that copies the container-disk binary.
	ContainerDiskBinaryRequests = corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("10m"),
		corev1.ResourceMemory: resource.MustParse("1M"),
	}
	ContainerDiskBinaryLimits = corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("100m"),
		corev1.ResourceMemory: resource.MustParse("40M"),
	}
	// LauncherEphemeralStorageOverhead is what KubeVirt adds to the compute container's
	// ephemeral-storage request.
	LauncherEphemeralStorageOverhead = resource.MustParse("50M")
)
