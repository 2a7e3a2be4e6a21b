package cloudinit_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The generated files are checked by the real tools. A missing tool fails the test (it
// never skips): `make test` installs them first through hack/install-deps.sh.

// requireTool returns the path of the command name, or fails the test.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed: run hack/install-deps.sh (it installs the Debian package that provides it): %v", name, err)
	}
	return path
}

// requireKubeadm returns the kubeadm built by hack/build-controlplane.sh: from
// $LABFORGE_BIN_DIR, else the repository's bin/ (../../../bin from this package).
func requireKubeadm(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("LABFORGE_BIN_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "..", "bin")
	}
	path, err := filepath.Abs(filepath.Join(dir, "kubeadm"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		t.Fatalf("kubeadm not found at %s: run `make controlplane` (hack/build-controlplane.sh) or set LABFORGE_BIN_DIR; run hack/install-deps.sh for the other tools", path)
	}
	return path
}

// run runs a tool and returns its combined output; it fails the test on a non-zero exit.
func run(t *testing.T, stdin []byte, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	// No inherited locale or home quirks: the tools' output is compared below.
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// writeTemp writes data to a new file named name in a fresh temporary directory.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkCloudConfig runs `cloud-init schema -c` on userData.
func checkCloudConfig(t *testing.T, userData []byte) {
	t.Helper()
	out := run(t, nil, requireTool(t, "cloud-init"), "schema", "-c", writeTemp(t, "user-data", userData))
	if !strings.Contains(out, "Valid cloud-config") {
		t.Fatalf("cloud-init schema did not report a valid cloud-config:\n%s", out)
	}
	if strings.Contains(strings.ToLower(out), "deprecat") {
		t.Fatalf("cloud-init schema reports deprecated keys:\n%s", out)
	}
}

// checkKubeadmConfig runs `kubeadm config validate --config` on config.
func checkKubeadmConfig(t *testing.T, config []byte) {
	t.Helper()
	out := run(t, nil, requireKubeadm(t), "config", "validate", "--config", writeTemp(t, "kubeadm.yaml", config))
	if strings.TrimSpace(out) != "ok" {
		t.Fatalf("kubeadm config validate reported more than ok:\n%s", out)
	}
}

// checkScript runs `bash -n` and shellcheck (default severity: every finding fails).
func checkScript(t *testing.T, script []byte) {
	t.Helper()
	path := writeTemp(t, "labforge-bootstrap", script)
	run(t, nil, requireTool(t, "bash"), "-n", path)
	if out := run(t, nil, requireTool(t, "shellcheck"), "--shell=bash", path); out != "" {
		t.Fatalf("shellcheck:\n%s", out)
	}
}
