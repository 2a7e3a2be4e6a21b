package cloudinit_test

import (
	"strings"
	"testing"

	"github.com/labforge/labforge/internal/render/cloudinit"
)

// checkDataDisk: cloud-init partitions, formats and mounts the disk it finds by its
// virtio serial, never by /dev/vdX; systemd holds containerd and the kubelet until their
// directories are mounted; and the bootstrap moves their state onto the disk before it
// installs or starts either.
func checkDataDisk(t *testing.T, in cloudinit.Input, ud userData, files map[string]file, script []byte) {
	t.Helper()
	const device = "/dev/disk/by-id/virtio-labforge-data"
	eq(t, "disk_setup", ud.DiskSetup, map[string]struct {
		TableType string `json:"table_type"`
		Layout    bool   `json:"layout"`
		Overwrite bool   `json:"overwrite"`
	}{device: {TableType: "mbr", Layout: true, Overwrite: false}})
	eq(t, "fs_setup", ud.FSSetup, []struct {
		Label      string `json:"label"`
		Filesystem string `json:"filesystem"`
		Device     string `json:"device"`
		Partition  string `json:"partition"`
		Overwrite  bool   `json:"overwrite"`
	}{{Label: "labforge-data", Filesystem: "ext4", Device: device, Partition: "auto", Overwrite: false}})
	eq(t, "mounts", ud.Mounts, [][]string{{device, "/var/lib/labforge-data", "ext4", "defaults,nofail,x-systemd.requires=cloud-init.service", "0", "2"}})
	for path, dir := range map[string]string{
		"/etc/systemd/system/containerd.service.d/20-labforge-data-disk.conf": "/var/lib/containerd",
		"/etc/systemd/system/kubelet.service.d/20-labforge-data-disk.conf":    "/var/lib/kubelet",
	} {
		if got := files[path].content; !strings.Contains(got, "\n[Unit]\nRequiresMountsFor="+dir+"\n") {
			t.Errorf("%s does not make the unit wait for %s:\n%s", path, dir, got)
		}
	}

	// Order in the script: the disk is checked and bound before any package is installed
	// or containerd started, on every path (stock or prebaked image).
	body := string(script)
	at := func(s string) int {
		t.Helper()
		i := strings.Index(body, s)
		if i < 0 {
			t.Fatalf("the bootstrap script lacks %q", s)
		}
		return i
	}
	bound := at("bind_to_data_disk /var/lib/kubelet\n")
	if at("bind_to_data_disk /var/lib/containerd\n") > bound {
		t.Error("the kubelet's directory is bound before containerd's")
	}
	for _, later := range []string{"\n  step packages\n", "\n  step verify-prebaked\n", "\n  step containerd-config\n", "\nstep containerd\n", "systemctl enable --now containerd", "systemctl restart containerd", "kubeadm init --config", "kubeadm join --config"} {
		if at(later) < bound {
			t.Errorf("%q comes before the data disk is bound", later)
		}
	}
	if at("step data-disk\n") > at("bind_to_data_disk /var/lib/containerd\n") {
		t.Error("the data disk is used before its step checks it is mounted")
	}
}

// checkCrictl: crictl is installed with kubeadm (from the same repository) and talks to
// containerd's socket, the one kubeadm is given.
func checkCrictl(t *testing.T, files map[string]file, script []byte) {
	t.Helper()
	eq(t, "/etc/crictl.yaml", files["/etc/crictl.yaml"].content,
		"# Written by labforge: crictl talks to containerd.\n"+
			"runtime-endpoint: unix:///var/run/containerd/containerd.sock\n"+
			"image-endpoint: unix:///var/run/containerd/containerd.sock\n"+
			"timeout: 10\n")
	if !strings.Contains(string(script), `"kubectl=${pkg_version}" cri-tools`+"\n") {
		t.Error("the bootstrap does not install cri-tools with kubelet, kubeadm and kubectl")
	}
}
