package simulator

import (
	"crypto/sha1" //nolint:gosec // KubeVirt's label value derivation, not a security use
	"encoding/hex"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/labforge/labforge/internal/render"
)

// The virt-launcher pod of a VMI, rendered the way KubeVirt v1.8's virt-controller renders
// it (kubevirt/kubevirt pkg/virt-controller/services: template.go renderLaunchManifest,
// renderresources.go, rendercontainer.go, and pkg/container-disk's containers; read, not
// copied). Only what the API server, its admission plugins and labforge can see is
// reproduced faithfully: metadata, owner, containers with their resources and security
// contexts, and the pod's security context. Commands, environment and mounts are reduced
// to what makes the pod valid.

const (
	// launcherImage stands for the virt-launcher image of the KubeVirt release.
	launcherImage = "quay.io/kubevirt/virt-launcher:v1.8.4"
	// launcherUID is KubeVirt's non-root launcher user (util.NonRootUID), the default
	// since the Root feature gate went away.
	launcherUID int64 = 107
	// computeContainer is the name of the container that runs QEMU.
	computeContainer = "compute"
	// DefaultCPUAllocationRatio is KubeVirt's default developerConfiguration
	// cpuAllocationRatio: a vCPU asks the scheduler for a tenth of a CPU.
	DefaultCPUAllocationRatio = 10
	// gracePeriodPadding is what KubeVirt adds, twice, to a VMI's termination grace period
	// for its launcher pod.
	gracePeriodPadding int64 = 15
)

// Extended resources KubeVirt's device plugins serve, which every launcher pod asks for
// (as limits; the API server copies them into requests).
const (
	resourceKVM      corev1.ResourceName = "devices.kubevirt.io/kvm"
	resourceTun      corev1.ResourceName = "devices.kubevirt.io/tun"
	resourceVhostNet corev1.ResourceName = "devices.kubevirt.io/vhost-net"
)

// Launcher pod labels and annotations KubeVirt sets.
const (
	labelKubeVirtApp           = kubevirtv1.AppLabel // value "virt-launcher"
	launcherAppValue           = "virt-launcher"
	annotationDefaultContainer = "kubectl.kubernetes.io/default-container"
	annotationEvictOnly        = "descheduler.alpha.kubernetes.io/request-evict-only"
)

// launcherConfig is what of KubeVirt's configuration shapes a launcher pod.
type launcherConfig struct {
	// cpuAllocationRatio divides a VM's vCPUs into its CPU request.
	cpuAllocationRatio int
	// autoCPULimit and autoMemoryLimit are set when a ResourceQuota of the namespace has
	// limits.cpu or limits.memory: KubeVirt then sets those limits itself, so that quota
	// admission does not refuse the pod for lacking them.
	autoCPULimit, autoMemoryLimit bool
}

// renderLauncherPod returns the launcher pod of vmi, whose spec is spec (the manager's
// cache keeps no VMI specs; the VM's template is what the VMI was created from).
func renderLauncherPod(vmi *kubevirtv1.VirtualMachineInstance, spec *kubevirtv1.VirtualMachineInstanceSpec, cfg launcherConfig) *corev1.Pod {
	hostname := vmi.Name
	if spec.Hostname != "" {
		hostname = spec.Hostname
	}
	grace := gracePeriodPadding*2 + kubevirtv1.DefaultGracePeriodSeconds
	if spec.TerminationGracePeriodSeconds != nil {
		grace = *spec.TerminationGracePeriodSeconds + 2*gracePeriodPadding
	}
	containers, initContainers, volumes := launcherContainers(spec, cfg)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    "virt-launcher-" + vmi.Name + "-",
			Namespace:       vmi.Namespace,
			Labels:          launcherLabels(vmi, hostname),
			Annotations:     launcherAnnotations(vmi),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(vmi, kubevirtv1.VirtualMachineInstanceGroupVersionKind)},
		},
		Spec: corev1.PodSpec{
			Hostname:  hostname,
			Subdomain: spec.Subdomain,
			SecurityContext: &corev1.PodSecurityContext{
				FSGroup:      ptr.To(launcherUID),
				RunAsUser:    ptr.To(launcherUID),
				RunAsGroup:   ptr.To(launcherUID),
				RunAsNonRoot: ptr.To(true),
			},
			TerminationGracePeriodSeconds: ptr.To(grace),
			RestartPolicy:                 corev1.RestartPolicyNever,
			Containers:                    containers,
			InitContainers:                initContainers,
			NodeSelector:                  launcherNodeSelector(spec),
			Volumes:                       volumes,
			DNSConfig:                     spec.DNSConfig.DeepCopy(),
			DNSPolicy:                     spec.DNSPolicy,
			ReadinessGates:                []corev1.PodReadinessGate{{ConditionType: kubevirtv1.VirtualMachineUnpaused}},
			EnableServiceLinks:            ptr.To(false),
			AutomountServiceAccountToken:  ptr.To(false),
			SchedulerName:                 spec.SchedulerName,
			Tolerations:                   spec.Tolerations,
			PriorityClassName:             spec.PriorityClassName,
			Affinity:                      spec.Affinity.DeepCopy(),
		},
	}
}

// launcherLabels are the launcher pod's labels: the VMI's, and KubeVirt's own.
func launcherLabels(vmi *kubevirtv1.VirtualMachineInstance, hostname string) map[string]string {
	labels := maps.Clone(vmi.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[labelKubeVirtApp] = launcherAppValue
	labels[kubevirtv1.CreatedByLabel] = string(vmi.UID)
	labels[kubevirtv1.DeprecatedVirtualMachineNameLabel] = hostname
	labels[kubevirtv1.VirtualMachineInstanceIDLabel] = vmiID(vmi.Name)
	return labels
}

// launcherAnnotations are the launcher pod's annotations: the VMI's, and KubeVirt's own.
func launcherAnnotations(vmi *kubevirtv1.VirtualMachineInstance) map[string]string {
	annotations := map[string]string{kubevirtv1.DomainAnnotation: vmi.Name}
	for k, v := range vmi.Annotations {
		// KubeVirt drops kubectl's and its own bookkeeping annotations; everything else,
		// the bandwidth annotations included, reaches the pod.
		if strings.HasPrefix(k, "kubectl.kubernetes.io") ||
			strings.HasPrefix(k, "kubevirt.io/storage-observed-api-version") ||
			strings.HasPrefix(k, "kubevirt.io/latest-observed-api-version") {
			continue
		}
		annotations[k] = v
	}
	annotations[annotationDefaultContainer] = computeContainer
	annotations[kubevirtv1.MigrationTransportUnixAnnotation] = "true"
	annotations[annotationEvictOnly] = ""
	return annotations
}

// launcherContainers are the launcher pod's containers, init containers and volumes:
// virt-launcher's compute container, and a container (with an init container pulling its
// image) for each containerDisk.
func launcherContainers(spec *kubevirtv1.VirtualMachineInstanceSpec, cfg launcherConfig) (containers, initContainers []corev1.Container, volumes []corev1.Volume) {
	containers = []corev1.Container{computeContainerFor(spec, cfg)}
	if hasContainerDisk(spec) {
		initContainers = append(initContainers, containerDiskBinary())
	}
	volumes = []corev1.Volume{
		emptyDir("private"), emptyDir("public"), emptyDir("sockets"), emptyDir("virt-bin-share-dir"),
		emptyDir("libvirt-runtime"), emptyDir("ephemeral-disks"), emptyDir("container-disks"),
		emptyDir("hotplug-disks"),
	}
	for _, v := range spec.Volumes {
		if v.ContainerDisk == nil {
			continue
		}
		// One container serves each containerDisk, and an init container of the same
		// shape pulls its image before virt-launcher starts.
		c := containerDiskContainer(v)
		containers = append(containers, c)
		c = containerDiskContainer(v)
		c.Name += "-init"
		c.Args = []string{"--no-op"}
		c.VolumeMounts = c.VolumeMounts[:1]
		initContainers = append(initContainers, c)
		volumes = append(volumes, emptyDir("pidfile-"+v.Name))
	}
	return containers, initContainers, volumes
}

// containerDiskBinary is the init container that copies the container-disk binary for
// the containerDisk containers.
func containerDiskBinary() corev1.Container {
	return corev1.Container{
		Name:            "container-disk-binary",
		Image:           launcherImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"/usr/bin/cp"},
		Args:            []string{"--preserve=all", "/usr/bin/container-disk", "/init/usr/bin/container-disk"},
		VolumeMounts:    []corev1.VolumeMount{{Name: "virt-bin-share-dir", MountPath: "/init/usr/bin"}},
		Resources: corev1.ResourceRequirements{
			Requests: render.ContainerDiskBinaryRequests.DeepCopy(),
			Limits:   render.ContainerDiskBinaryLimits.DeepCopy(),
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(launcherUID),
			RunAsGroup:               ptr.To(launcherUID),
			RunAsNonRoot:             ptr.To(true),
			Privileged:               ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// computeContainerFor is the container that runs virt-launcher and QEMU: requests of
// the guest memory plus KubeVirt's overhead, of the vCPUs divided by the CPU allocation
// ratio, and of ephemeral storage for KubeVirt's own files; limits only of KubeVirt's
// devices, the VM's own limits, and those a limits.* quota makes KubeVirt set.
func computeContainerFor(spec *kubevirtv1.VirtualMachineInstanceSpec, cfg launcherConfig) corev1.Container {
	return corev1.Container{
		Name:            computeContainer,
		Image:           launcherImage,
		ImagePullPolicy: corev1.PullIfNotPresent,
		Command:         []string{"/usr/bin/virt-launcher-monitor"},
		Resources:       computeResources(spec, cfg),
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(launcherUID),
			RunAsGroup:               ptr.To(launcherUID),
			RunAsNonRoot:             ptr.To(true),
			Privileged:               ptr.To(false),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities: &corev1.Capabilities{
				Add:  []corev1.Capability{"NET_BIND_SERVICE"},
				Drop: []corev1.Capability{"ALL"},
			},
		},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "private", MountPath: "/var/run/kubevirt-private"},
			{Name: "public", MountPath: "/var/run/kubevirt"},
			{Name: "ephemeral-disks", MountPath: "/var/run/kubevirt-ephemeral-disks"},
			{Name: "container-disks", MountPath: "/var/run/kubevirt/container-disks"},
			{Name: "hotplug-disks", MountPath: "/var/run/kubevirt/hotplug-disks"},
			{Name: "libvirt-runtime", MountPath: "/var/run/libvirt"},
			{Name: "sockets", MountPath: "/var/run/kubevirt/sockets"},
		},
		Env: []corev1.EnvVar{{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
			FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"},
		}}},
	}
}

// computeResources are the compute container's requests and limits: the VMI's, with
// virt-launcher's overhead, the CPU and memory KubeVirt derives, and its device plugins'
// devices.
func computeResources(spec *kubevirtv1.VirtualMachineInstanceSpec, cfg launcherConfig) corev1.ResourceRequirements {
	requests := corev1.ResourceList{}
	limits := corev1.ResourceList{}
	maps.Copy(requests, spec.Domain.Resources.Requests.DeepCopy())
	maps.Copy(limits, spec.Domain.Resources.Limits.DeepCopy())

	eph := requests[corev1.ResourceEphemeralStorage]
	eph.Add(render.LauncherEphemeralStorageOverhead)
	requests[corev1.ResourceEphemeralStorage] = eph
	if l, ok := limits[corev1.ResourceEphemeralStorage]; ok {
		l.Add(render.LauncherEphemeralStorageOverhead)
		limits[corev1.ResourceEphemeralStorage] = l
	}

	vcpus := render.VCPUs(spec.Domain.CPU)
	if _, set := requests[corev1.ResourceCPU]; !set && cfg.cpuAllocationRatio > 0 {
		requests[corev1.ResourceCPU] = cpuRequest(vcpus, cfg.cpuAllocationRatio)
	}
	if _, set := limits[corev1.ResourceCPU]; !set && cfg.autoCPULimit {
		limits[corev1.ResourceCPU] = *resource.NewQuantity(vcpus, resource.DecimalSI)
	}

	overhead := render.LauncherMemoryOverhead(spec)
	requests[corev1.ResourceMemory] = render.LauncherMemoryRequest(spec)
	if l, ok := limits[corev1.ResourceMemory]; ok {
		l.Add(overhead)
		limits[corev1.ResourceMemory] = l
	} else if cfg.autoMemoryLimit {
		// KubeVirt's default limit ratio: twice the request.
		r := requests[corev1.ResourceMemory]
		limits[corev1.ResourceMemory] = *resource.NewQuantity(2*r.Value(), r.Format)
	}

	// Devices of KubeVirt's device plugins: KVM (no emulation), a tap device and
	// vhost-net for an interface on the pod network.
	one := resource.MustParse("1")
	limits[resourceKVM] = one
	if len(spec.Networks) > 0 || len(spec.Domain.Devices.Interfaces) > 0 {
		limits[resourceTun] = one
		limits[resourceVhostNet] = one
	}
	return corev1.ResourceRequirements{Requests: requests, Limits: limits}
}

// cpuRequest is vcpus/ratio CPUs, formatted as KubeVirt formats it (a float, in
// millicores below one), so that the API server rounds it as it rounds KubeVirt's.
func cpuRequest(vcpus int64, ratio int) resource.Quantity {
	val := float64(vcpus) / float64(ratio)
	s := fmt.Sprintf("%g", val)
	if val < 1 {
		s = fmt.Sprintf("%gm", val*1000)
	}
	return resource.MustParse(s)
}

// containerDiskContainer is the container that serves the image of a containerDisk
// volume to the compute container.
func containerDiskContainer(v kubevirtv1.Volume) corev1.Container {
	return corev1.Container{
		Name:            "volume" + v.Name,
		Image:           v.ContainerDisk.Image,
		ImagePullPolicy: v.ContainerDisk.ImagePullPolicy,
		Command:         []string{"/usr/bin/container-disk"},
		VolumeMounts: []corev1.VolumeMount{
			{Name: "virt-bin-share-dir", MountPath: "/usr/bin"},
			{Name: "pidfile-" + v.Name, MountPath: "/var/run/containerdisk"},
		},
		Resources: corev1.ResourceRequirements{
			Requests: render.ContainerDiskRequests.DeepCopy(),
			Limits:   render.ContainerDiskLimits.DeepCopy(),
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                ptr.To(launcherUID),
			RunAsNonRoot:             ptr.To(true),
			AllowPrivilegeEscalation: ptr.To(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
	}
}

// launcherNodeSelector is the VMI's node selector plus what KubeVirt always asks of a
// node: that virt-handler runs there and marks it schedulable.
func launcherNodeSelector(spec *kubevirtv1.VirtualMachineInstanceSpec) map[string]string {
	sel := maps.Clone(spec.NodeSelector)
	if sel == nil {
		sel = map[string]string{}
	}
	sel[kubevirtv1.NodeSchedulable] = "true"
	return sel
}

func hasContainerDisk(spec *kubevirtv1.VirtualMachineInstanceSpec) bool {
	for _, v := range spec.Volumes {
		if v.ContainerDisk != nil {
			return true
		}
	}
	return false
}

func emptyDir(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}
}

// vmiID is KubeVirt's vmi.kubevirt.io/id label value: the VMI's name, or a truncated
// name and a hash where the name is longer than a label value may be.
func vmiID(name string) string {
	const maxLen, hashLen = 63, 8
	if len(name) <= maxLen {
		return name
	}
	sum := sha1.Sum([]byte(name)) //nolint:gosec // see the import
	return name[:maxLen-hashLen-1] + "-" + hex.EncodeToString(sum[:])[:hashLen]
}
