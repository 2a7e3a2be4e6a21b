package render

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
)

// TestVirtualMachineDisks: every VM boots its container disk with its cloud-init disk
// and, when the template sizes one, an emptyDisk of exactly that size whose serial names
// it to the guest (cloud-init finds it as /dev/disk/by-id/virtio-labforge-data).
func TestVirtualMachineDisks(t *testing.T) {
	virtio := kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: kubevirtv1.DiskBusVirtio}}
	rootAndCloudInit := func(vm string) ([]kubevirtv1.Disk, []kubevirtv1.Volume) {
		return []kubevirtv1.Disk{{Name: "rootdisk", DiskDevice: virtio}, {Name: "cloudinit", DiskDevice: virtio}},
			[]kubevirtv1.Volume{
				{Name: "rootdisk", VolumeSource: kubevirtv1.VolumeSource{ContainerDisk: &kubevirtv1.ContainerDiskSource{Image: "quay.io/containerdisks/ubuntu:22.04"}}},
				{Name: "cloudinit", VolumeSource: kubevirtv1.VolumeSource{CloudInitNoCloud: &kubevirtv1.CloudInitNoCloudSource{
					UserDataSecretRef: &corev1.LocalObjectReference{Name: "cloud-init-" + vm}}}},
			}
	}
	withData := func(vm, size string) ([]kubevirtv1.Disk, []kubevirtv1.Volume) {
		d, v := rootAndCloudInit(vm)
		d = append(d, kubevirtv1.Disk{Name: "datadisk", Serial: "labforge-data", DiskDevice: virtio})
		v = append(v, kubevirtv1.Volume{Name: "datadisk", VolumeSource: kubevirtv1.VolumeSource{
			EmptyDisk: &kubevirtv1.EmptyDiskSource{Capacity: resource.MustParse(size)}}})
		return d, v
	}
	type want struct {
		disks   []kubevirtv1.Disk
		volumes []kubevirtv1.Volume
	}
	w := func(d []kubevirtv1.Disk, v []kubevirtv1.Volume) want { return want{d, v} }
	tests := map[string]struct {
		lab  Lab
		want map[string]want
	}{
		"default sizes": {
			lab: testLab(1, func(l *Lab) {
				l.Template.ControlPlane.Disk = resource.MustParse("20Gi")
				l.Template.Workers.Disk = resource.MustParse("20Gi")
			}),
			want: map[string]want{"control-plane": w(withData("control-plane", "20Gi")), "worker-1": w(withData("worker-1", "20Gi"))},
		},
		"control plane and workers sized apart": {
			lab: testLab(2, func(l *Lab) {
				l.Template.ControlPlane.Disk = resource.MustParse("8Gi")
				l.Template.Workers.Disk = resource.MustParse("200Gi")
			}),
			want: map[string]want{
				"control-plane": w(withData("control-plane", "8Gi")),
				"worker-1":      w(withData("worker-1", "200Gi")), "worker-2": w(withData("worker-2", "200Gi")),
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := map[string]want{}
			for _, vm := range VirtualMachines(tc.lab) {
				spec := vm.Spec.Template.Spec
				got[vm.Name] = want{spec.Domain.Devices.Disks, spec.Volumes}
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(want{})); diff != "" {
				t.Errorf("disks and volumes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestVirtualMachineDataDiskNotShared: a VM's emptyDisk capacity is its own copy, not the
// template's quantity.
func TestVirtualMachineDataDiskNotShared(t *testing.T) {
	l := testLab(1, func(l *Lab) { l.Template.Workers.Disk = resource.MustParse("20Gi") })
	vms := VirtualMachines(l)
	worker := vms[1].Spec.Template.Spec.Volumes[2].EmptyDisk
	worker.Capacity.Add(resource.MustParse("1Gi"))
	if got := l.Template.Workers.Disk.String(); got != "20Gi" {
		t.Errorf("changing a VM's emptyDisk changed the template's disk to %s", got)
	}
}

// TestVirtualMachineEvictionStrategy: every VM says None itself, whatever the cluster's
// default: a bridged VM cannot live-migrate, and LiveMigrate would block node drains.
func TestVirtualMachineEvictionStrategy(t *testing.T) {
	for _, workers := range []int32{0, 3} {
		for _, vm := range VirtualMachines(testLab(workers)) {
			if diff := cmp.Diff(ptr.To(kubevirtv1.EvictionStrategyNone), vm.Spec.Template.Spec.EvictionStrategy); diff != "" {
				t.Errorf("%s: evictionStrategy (-want +got):\n%s", vm.Name, diff)
			}
		}
	}
}
