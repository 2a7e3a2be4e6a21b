package scripts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// stubTools writes commands that only log their arguments (curl also writes the file
// it is asked for, sha256sum reads its input) into a directory for PATH.
func stubTools(t *testing.T, log string, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range names {
		body := "#!/bin/bash\necho \"" + name + " $*\" >>" + log + "\n"
		switch name {
		case "curl":
			body += `while (($#)); do if [[ $1 == -o ]]; then echo "0000 *jammy-server-cloudimg-amd64.img" >"$2"; fi; shift; done` + "\n"
		case "sha256sum":
			body += "cat >/dev/null\n"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBuildContainerDisk runs hack/build-containerdisk.sh with every tool it calls
// stubbed (it cannot run for real here: no container engine, no network): it refuses bad
// arguments, checks the download, grows the disk before customizing it, installs the
// template's version with cri-tools from its minor's repository through a script that
// passes shellcheck, and builds KubeVirt's containerDisk layout.
func TestBuildContainerDisk(t *testing.T) {
	script := filepath.Join(repoRoot(), "hack", "build-containerdisk.sh")
	log := filepath.Join(t.TempDir(), "calls")
	stubs := stubTools(t, log, "curl", "sha256sum", "qemu-img", "virt-resize", "virt-customize", "virt-sparsify", "podman")
	run := func(args ...string) (string, error) {
		cmd := exec.Command("bash", append([]string{script}, args...)...)
		cmd.Env = append(os.Environ(), "PATH="+stubs+":/usr/bin:/bin")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--image", "r/x:1"}, "--kubernetes-version must look like v1.36.3, got ''"},
		{[]string{"--kubernetes-version", "v1.36.3;id", "--image", "r/x:1"}, "--kubernetes-version must look like v1.36.3"},
		{[]string{"--kubernetes-version", "v1.36.3"}, "--image is required"},
		{[]string{"--kubernetes-version", "v1.36.3", "--image", "r/x:1", "--size", "2G"}, "--size must be 4G to 64G, got '2G'"},
		{[]string{"--bogus"}, "unknown argument --bogus"},
	} {
		out, err := run(tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%v: err %v, output %q, want a failure saying %q", tc.args, err, out, tc.want)
		}
	}
	if _, err := os.Stat(log); err == nil {
		t.Fatal("a refused invocation called a tool")
	}

	work := t.TempDir()
	if out, err := run("--kubernetes-version", "v1.35.2", "--image", "registry.example.com/labs/ubuntu-k8s:v1.35.2", "--size", "12G", "--workdir", work, "--push"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	calls, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"curl -fsSL --retry 5 -o SHA256SUMS https://cloud-images.ubuntu.com/jammy/current/SHA256SUMS",
		"curl -fSL --retry 5 -o jammy-server-cloudimg-amd64.img https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img",
		"sha256sum -c",
		"qemu-img create -f qcow2 resized.qcow2 12G",
		"virt-resize --expand /dev/sda1 jammy-server-cloudimg-amd64.img resized.qcow2",
		"virt-customize -a resized.qcow2 --network --run install.sh",
		"virt-sparsify --compress resized.qcow2 disk.qcow2",
		"podman build -f Containerfile -t registry.example.com/labs/ubuntu-k8s:v1.35.2 .",
		"podman push registry.example.com/labs/ubuntu-k8s:v1.35.2",
	}
	if got := strings.Split(strings.TrimSpace(string(calls)), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	install := filepath.Join(work, "install.sh")
	body, err := os.ReadFile(install)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"https://pkgs.k8s.io/core:/stable:/v1.35/deb/",
		`awk -v want='1.35.2-'`,
		`"kubelet=${version}" "kubeadm=${version}" "kubectl=${version}" cri-tools`,
		"apt-mark hold kubelet kubeadm kubectl",
		`s/^([[:space:]]*SystemdCgroup[[:space:]]*=[[:space:]]*)false/\1true/`,
		`\\1\"${pause}\"|"`,
		"truncate -s 0 /etc/machine-id",
	} {
		if !strings.Contains(string(body), s) {
			t.Errorf("install.sh lacks %q:\n%s", s, body)
		}
	}
	if out, err := exec.Command("shellcheck", "--shell=bash", install).CombinedOutput(); err != nil {
		t.Errorf("shellcheck install.sh: %v\n%s", err, out)
	}
	containerfile, err := os.ReadFile(filepath.Join(work, "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(containerfile); got != "FROM scratch\nADD --chown=107:107 disk.qcow2 /disk/\n" {
		t.Errorf("Containerfile:\n%s", got)
	}
}
