package cloudinit

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/labforge/labforge/internal/lab"
)

func bash(t *testing.T, script string, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is not installed: run hack/install-deps.sh: %v", err)
	}
	out, err := exec.Command(path, append([]string{"-c", script, "bash"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	return string(out)
}

// TestShellQuote proves with bash itself that a quoted value is one word standing for
// exactly the value, whatever it holds.
func TestShellQuote(t *testing.T) {
	values := []string{
		"", "plain", "it's", "'", "''", `'\''`, "$(rm -rf /)", "`id`", "${HOME}", "a b\tc\nd",
		"\"double\"", `back\slash`, "EOF\n'EOF'\n", "; exit 1", "!event", "*?[a]", "-n", "dönë ✓",
	}
	var script strings.Builder
	for _, v := range values {
		script.WriteString("printf '%s\\0' " + shellQuote(v) + "\n")
	}
	got := strings.Split(strings.TrimSuffix(bash(t, script.String()), "\x00"), "\x00")
	if len(got) != len(values) {
		t.Fatalf("bash printed %d values, want %d: %q", len(got), len(values), got)
	}
	for i, v := range values {
		if got[i] != v {
			t.Errorf("shellQuote(%q) reads back as %q", v, got[i])
		}
	}
}

// TestFailureMessage runs the script's own failure_message: "<step>: <last output>",
// printable ASCII only, never longer than the operator accepts, keeping the end.
func TestFailureMessage(t *testing.T) {
	fn := regexp.MustCompile(`(?ms)^failure_message\(\) \{\n.*?^\}\n`).FindString(bootstrapBody)
	if fn == "" {
		t.Fatal("failure_message not found in the bootstrap script")
	}
	prelude := "set -Eeuo pipefail\nMARKER_MAX_MESSAGE=" + strconv.Itoa(lab.MarkerMaxMessageLength) + "\nCURRENT_STEP=kubeadm-init\n" + fn

	short := bash(t, prelude+`failure_message "$1"`, "line 1\nline 2: boom")
	if short != "kubeadm-init: line 1\nline 2: boom" {
		t.Errorf("short message %q", short)
	}

	long := strings.Repeat("0123456789 dönë\x1b[31m\r\n", 400) + "the real error"
	msg := bash(t, prelude+`failure_message "$1"`, long)
	if len(msg) > lab.MarkerMaxMessageLength {
		t.Errorf("message is %d bytes, more than %d", len(msg), lab.MarkerMaxMessageLength)
	}
	if !strings.HasPrefix(msg, "kubeadm-init: ") || !strings.HasSuffix(msg, "the real error") {
		t.Errorf("message does not name the step and keep the end: %q", msg)
	}
	for _, r := range msg {
		if r != '\n' && r != '\t' && (r < 0x20 || r > 0x7e) {
			t.Fatalf("message holds %q", r)
		}
	}
}

// TestWriteMarker runs the script's write_marker with the real kubectl rendering the
// ConfigMap and a stand-in for the server-side apply, and checks what would be applied.
func TestWriteMarker(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is not installed (hack/install-deps.sh requires it): %v", err)
	}
	fn := regexp.MustCompile(`(?ms)^write_marker\(\) \{\n.*?^\}\n`).FindString(bootstrapBody)
	if fn == "" {
		t.Fatal("write_marker not found in the bootstrap script")
	}
	var vars strings.Builder
	for _, v := range [][2]string{
		{"MARKER_CONFIGMAP", lab.MarkerConfigMap}, {"MARKER_NAMESPACE", lab.MarkerNamespace},
		{"MARKER_PHASE_KEY", lab.MarkerPhase}, {"MARKER_MESSAGE_KEY", lab.MarkerMessage},
		{"KUBECTL", kubectl},
	} {
		vars.WriteString(v[0] + "=" + shellQuote(v[1]) + "\n")
	}
	// kubectl_admin: the real kubectl for the client-side dry run, cat for the apply.
	stub := `kubectl_admin() { if [[ "$1" == apply ]]; then cat; else "$KUBECTL" --kubeconfig=/dev/null "$@"; fi; }` + "\n"
	prelude := "set -Eeuo pipefail\n" + vars.String() + stub + fn

	type configMap struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	for _, tc := range []struct{ phase, message string }{
		{lab.MarkerPhaseComplete, ""},
		{lab.MarkerPhaseFailed, "scenario: it's \"broken\"\n$(id) `id` --from-literal=x=y\nline: 3"},
	} {
		out := bash(t, prelude+`write_marker "$1" "$2"`, tc.phase, tc.message)
		var cm configMap
		if err := yaml.Unmarshal([]byte(out), &cm); err != nil {
			t.Fatalf("parsing %q: %v", out, err)
		}
		want := map[string]string{lab.MarkerPhase: tc.phase}
		if tc.message != "" {
			want[lab.MarkerMessage] = tc.message
		}
		if cm.Kind != "ConfigMap" || cm.Metadata.Name != lab.MarkerConfigMap || cm.Metadata.Namespace != lab.MarkerNamespace {
			t.Errorf("applied %s %s/%s", cm.Kind, cm.Metadata.Namespace, cm.Metadata.Name)
		}
		if len(cm.Data) != len(want) || cm.Data[lab.MarkerPhase] != want[lab.MarkerPhase] || cm.Data[lab.MarkerMessage] != want[lab.MarkerMessage] {
			t.Errorf("marker data %q, want %q", cm.Data, want)
		}
	}
}

// TestBindToDataDisk runs the script's bind_to_data_disk with mount, mountpoint,
// systemctl and df stood in for (a test cannot mount): what the directory held is copied
// onto the disk once, with its mode; /etc/fstab gets one bind entry that waits for the
// disk's mount, and a second run adds nothing.
func TestBindToDataDisk(t *testing.T) {
	fn := regexp.MustCompile(`(?ms)^bind_to_data_disk\(\) \{\n.*?^\}\n`).FindString(bootstrapBody)
	if fn == "" {
		t.Fatal("bind_to_data_disk not found in the bootstrap script")
	}
	root := t.TempDir()
	fstab := root + "/fstab"
	fn = strings.ReplaceAll(fn, "/etc/fstab", fstab)
	if strings.Contains(fn, "/etc/") {
		t.Fatal("bind_to_data_disk touches /etc beyond /etc/fstab: extend the test")
	}
	// The mount stand-in records each call; mountpoint says yes once mount was called.
	stubs := `log() { echo "log: $*"; }
mountpoint() { grep -qxF "mount $2" "$ROOT/calls" 2>/dev/null; }
mount() { echo "mount $*" >>"$ROOT/calls"; }
systemctl() { echo "systemctl $*" >>"$ROOT/calls"; }
df() { printf 'Size\n20G\n'; }
`
	prelude := "set -Eeuo pipefail\nROOT=" + shellQuote(root) + "\nDATA_MOUNT=\"$ROOT/data\"\n" + stubs + fn
	setup := `mkdir -p "$ROOT/data" "$ROOT/var/containerd/io.containerd.content.v1.content"
chmod 0711 "$ROOT/var/containerd"
echo image >"$ROOT/var/containerd/io.containerd.content.v1.content/blob"
printf 'LABEL=cloudimg-rootfs / ext4 discard,errors=remount-ro 0 1\n' >` + shellQuote(fstab) + "\n"
	out := bash(t, prelude+setup+`bind_to_data_disk "$ROOT/var/containerd"
bind_to_data_disk "$ROOT/var/kubelet"
bind_to_data_disk "$ROOT/var/containerd"
bind_to_data_disk "$ROOT/var/kubelet"
stat -c '%a' "$ROOT/data/containerd" "$ROOT/data/kubelet"
cat "$ROOT/data/containerd/io.containerd.content.v1.content/blob"
cat "$ROOT/calls"`)
	want := strings.Join([]string{
		"log: " + root + "/var/containerd is on the data disk (20G)",
		"log: " + root + "/var/kubelet is on the data disk (20G)",
		"log: " + root + "/var/containerd is mounted already",
		"log: " + root + "/var/kubelet is mounted already",
		"711", "711", "image",
		"systemctl daemon-reload", "mount " + root + "/var/containerd",
		"systemctl daemon-reload", "mount " + root + "/var/kubelet",
	}, "\n") + "\n"
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	gotFstab := bash(t, "cat "+shellQuote(fstab))
	wantFstab := "LABEL=cloudimg-rootfs / ext4 discard,errors=remount-ro 0 1\n" +
		"# labforge: " + root + "/var/containerd on the data disk\n" +
		root + "/data/containerd " + root + "/var/containerd none bind,nofail,x-systemd.requires-mounts-for=" + root + "/data 0 0\n" +
		"# labforge: " + root + "/var/kubelet on the data disk\n" +
		root + "/data/kubelet " + root + "/var/kubelet none bind,nofail,x-systemd.requires-mounts-for=" + root + "/data 0 0\n"
	if gotFstab != wantFstab {
		t.Errorf("fstab:\n%s\nwant:\n%s", gotFstab, wantFstab)
	}
}
