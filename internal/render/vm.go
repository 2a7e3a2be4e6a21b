package render

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/labforge/labforge/internal/lab"
)

// Bandwidth annotations a bandwidth-aware CNI reads from the launcher pod; KubeVirt copies
// the VM template's annotations onto it.
const (
	AnnotationIngressBandwidth = "kubernetes.io/ingress-bandwidth"
	AnnotationEgressBandwidth  = "kubernetes.io/egress-bandwidth"
)

// VirtualMachines returns the lab's VMs, control plane first. Each boots the template's
// container disk with its cloud-init user-data taken from a Secret (nothing secret sits in
// a VM spec), sits on the pod network with bridge binding so that every VM keeps its own
// routable address (masquerade would give every guest the same one and break kubeadm
// join), and receives the students' SSH keys through the guest agent.
func VirtualMachines(l Lab) []*kubevirtv1.VirtualMachine {
	var vms []*kubevirtv1.VirtualMachine
	for _, n := range l.Nodes() {
		vms = append(vms, virtualMachine(l, n))
	}
	return vms
}

func virtualMachine(l Lab, n Node) *kubevirtv1.VirtualMachine {
	podLabels := l.Labels()
	podLabels[lab.LabelRole] = n.Role
	podLabels[lab.LabelNode] = n.Name
	return &kubevirtv1.VirtualMachine{
		TypeMeta:   metav1.TypeMeta{APIVersion: kubevirtv1.SchemeGroupVersion.String(), Kind: "VirtualMachine"},
		ObjectMeta: l.objectMeta(n.Name, map[string]string{lab.LabelRole: n.Role}),
		Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy: ptr.To(kubevirtv1.RunStrategyAlways),
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: bandwidthAnnotations(l)},
				Spec: kubevirtv1.VirtualMachineInstanceSpec{
					Hostname: n.Name,
					// Labs are disposable: a deleted lab's VMs stop at once.
					TerminationGracePeriodSeconds: ptr.To[int64](0),
					// Stated, never left to the cluster's default: a VM bridged on the pod
					// network cannot live-migrate (KubeVirt reports LiveMigratable=False,
					// InterfaceNotLiveMigratable: the guest holds its pod's address), so a
					// cluster-wide LiveMigrate would make every lab VM block its node's drain
					// (KubeVirt's VMCannotBeEvicted runbook says to set None). None lets a
					// drain evict it; its lab then reports the restart (VMsRestarted).
					EvictionStrategy:  ptr.To(kubevirtv1.EvictionStrategyNone),
					Domain:            domain(n),
					Networks:          []kubevirtv1.Network{{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}}},
					AccessCredentials: accessCredentials(l),
					Volumes:           volumes(l, n),
				},
			},
		},
	}
}

// disks are the VM's disk devices: the container disk it boots from, its cloud-init
// disk and, when its size asks for one, the data disk, which carries a serial so that
// the guest finds it as /dev/disk/by-id/virtio-<serial> whatever its /dev/vdX order
// (cloud-init formats and mounts it: cloudinit.UserData).
// bandwidthAnnotations are the template's bandwidth limits as the pod annotations
// KubeVirt copies to the launcher pod; nil without limits.
func bandwidthAnnotations(l Lab) map[string]string {
	bw := l.Template.Network.Bandwidth
	if bw == nil {
		return nil
	}
	annotations := map[string]string{}
	if bw.Ingress != nil {
		annotations[AnnotationIngressBandwidth] = bw.Ingress.String()
	}
	if bw.Egress != nil {
		annotations[AnnotationEgressBandwidth] = bw.Egress.String()
	}
	return annotations
}

// domain is the node's virtual hardware: its size, disks and one interface bridged on
// the pod network.
func domain(n Node) kubevirtv1.DomainSpec {
	memory := n.Size.Memory.DeepCopy()
	return kubevirtv1.DomainSpec{
		CPU:    &kubevirtv1.CPU{Sockets: 1, Cores: uint32(n.Size.Cores), Threads: uint32(n.Size.Threads)},
		Memory: &kubevirtv1.Memory{Guest: &memory},
		Resources: kubevirtv1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceMemory: n.Size.Memory.DeepCopy()},
		},
		Devices: kubevirtv1.Devices{
			Disks: disks(n),
			Interfaces: []kubevirtv1.Interface{{
				Name:                   "default",
				InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}},
			}},
		},
	}
}

// accessCredentials hand the lab's SSH keys to the template's user through the guest
// agent.
func accessCredentials(l Lab) []kubevirtv1.AccessCredential {
	return []kubevirtv1.AccessCredential{{
		SSHPublicKey: &kubevirtv1.SSHPublicKeyAccessCredential{
			Source: kubevirtv1.SSHPublicKeyAccessCredentialSource{
				Secret: &kubevirtv1.AccessCredentialSecretSource{SecretName: lab.AccessCredentialsSecret},
			},
			PropagationMethod: kubevirtv1.SSHPublicKeyAccessCredentialPropagationMethod{
				QemuGuestAgent: &kubevirtv1.QemuGuestAgentSSHPublicKeyAccessCredentialPropagation{
					Users: []string{l.Template.SSHUser},
				},
			},
		},
	}}
}

func disks(n Node) []kubevirtv1.Disk {
	virtio := func() kubevirtv1.DiskDevice {
		return kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: kubevirtv1.DiskBusVirtio}}
	}
	return []kubevirtv1.Disk{
		{Name: "rootdisk", DiskDevice: virtio()},
		{Name: "cloudinit", DiskDevice: virtio()},
		{Name: lab.DataDiskVolume, Serial: lab.DataDiskSerial, DiskDevice: virtio()},
	}
}

// volumes back disks. The data disk is a KubeVirt emptyDisk: a sparse image in the
// launcher pod's ephemeral storage, of the template's size, that lives and dies with
// the VM's instance.
func volumes(l Lab, n Node) []kubevirtv1.Volume {
	return []kubevirtv1.Volume{
		{Name: "rootdisk", VolumeSource: kubevirtv1.VolumeSource{
			ContainerDisk: &kubevirtv1.ContainerDiskSource{Image: l.Template.Image.ContainerDisk},
		}},
		{Name: "cloudinit", VolumeSource: kubevirtv1.VolumeSource{
			CloudInitNoCloud: &kubevirtv1.CloudInitNoCloudSource{
				UserDataSecretRef: &corev1.LocalObjectReference{Name: lab.UserDataSecret(n.Name)},
			},
		}},
		{Name: lab.DataDiskVolume, VolumeSource: kubevirtv1.VolumeSource{
			EmptyDisk: &kubevirtv1.EmptyDiskSource{Capacity: n.Size.Disk.DeepCopy()},
		}},
	}
}

func intOrString(port int) intstr.IntOrString { return intstr.FromInt(port) }
