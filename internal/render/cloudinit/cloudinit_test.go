package cloudinit_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/render/cloudinit"
)

const (
	testEnv    = "demo-7f3k2"
	testToken  = "abcdef.0123456789abcdef"
	testDomain = "cluster.local"
)

// hostileScenario tries every way out of its file: quotes, command substitution, here-doc
// terminators of the kinds a renderer might use, YAML and cloud-config markers, tabs,
// CRLF and non-ASCII. It must arrive byte for byte.
const hostileScenario = "#!/bin/bash\n" +
	"echo '$(rm -rf /)' \"$(rm -rf /)\" `rm -rf /` '\n" +
	"EOF\nCONF\nSCRIPT\nEOT\n'EOF'\n" +
	"---\n#cloud-config\nwrite_files: [{path: /etc/shadow}]\n... \n" +
	"\tkubectl get nodes \\\r\n  && echo dönë ✓ ${HOME} $((1+1)) ; exit 0\n" +
	"'\"\\\n"

// scenarioSentinels are pieces of the test scenarios that appear nowhere else: finding
// one in the user-data means a scenario leaked out of its base64 file.
var scenarioSentinels = []string{"rm -rf", "/etc/shadow", "dönë", "delete deployment coredns", "cordon worker-2"}

var privateKeyPEM = regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----`)

func quantity(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}

// template returns a LabTemplateSpec as the API server defaults it.
func template(workers int32) labforgev1alpha1.LabTemplateSpec {
	return labforgev1alpha1.LabTemplateSpec{
		KubernetesVersion: "v1.36.3",
		Image:             labforgev1alpha1.LabImage{ContainerDisk: "quay.io/containerdisks/ubuntu:22.04"},
		ControlPlane:      labforgev1alpha1.ControlPlaneSize{Cores: 2, Threads: 1, Memory: resource.MustParse("2Gi"), Disk: resource.MustParse("20Gi")},
		Workers: labforgev1alpha1.WorkerSpec{Count: workers,
			NodeSize: labforgev1alpha1.NodeSize{Cores: 1, Threads: 1, Memory: resource.MustParse("1Gi"), Disk: resource.MustParse("20Gi")}},
		SSHUser:     "ubuntu",
		Lifetime:    labforgev1alpha1.Lifetime{Default: metav1.Duration{Duration: 2 * time.Hour}, Maximum: metav1.Duration{Duration: 8 * time.Hour}},
		BootTimeout: metav1.Duration{Duration: 15 * time.Minute},
		Network:     labforgev1alpha1.LabNetwork{PodCIDR: "10.200.0.0/16", ServiceCIDR: "10.201.0.0/16", TunnelPort: 8475},
	}
}

type fixture struct {
	caCertPEM, caKeyPEM []byte
	hash                string
	studentKey          string
}

// newFixture makes a lab CA (reproducibly, from a seeded generator) and a student key
// that must never appear in any user-data.
func newFixture(t *testing.T) fixture {
	t.Helper()
	r := rand.NewChaCha8([32]byte{'l', 'a', 'b'})
	ca, err := pki.NewCA("labforge-"+testEnv, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), 10*365*24*time.Hour, r)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	student, _, err := pki.NewSSHKeyPair(r, "student@example.com")
	if err != nil {
		t.Fatal(err)
	}
	return fixture{caCertPEM: ca.CertPEM(), caKeyPEM: key, hash: pki.DiscoveryHash(ca.Cert), studentKey: student}
}

// inputs returns one Input per node of a lab of tmpl, the way the environment controller
// builds them: every node gets the CA certificate, only the control plane its key.
func (f fixture) inputs(tmpl labforgev1alpha1.LabTemplateSpec) []cloudinit.Input {
	nodes := []cloudinit.Node{{Name: lab.ControlPlaneVM, Role: lab.RoleControlPlane}}
	for i := 1; i <= int(tmpl.Workers.Count); i++ {
		nodes = append(nodes, cloudinit.Node{Name: lab.WorkerVM(i), Role: lab.RoleWorker})
	}
	var ins []cloudinit.Input
	for _, n := range nodes {
		in := cloudinit.Input{
			Environment:    testEnv,
			Template:       *tmpl.DeepCopy(),
			Node:           n,
			CACertPEM:      f.caCertPEM,
			BootstrapToken: testToken,
			TokenTTL:       tmpl.BootTimeout.Duration + 10*time.Minute,
			DiscoveryHash:  f.hash,
			ClusterDomain:  testDomain,
		}
		if n.Role == lab.RoleControlPlane {
			in.CAKeyPEM = f.caKeyPEM
		}
		ins = append(ins, in)
	}
	return ins
}

// userData is the parsed cloud-config, strictly: an unexpected key fails the parse.
type userData struct {
	DisableRoot bool `json:"disable_root"`
	DiskSetup   map[string]struct {
		TableType string `json:"table_type"`
		Layout    bool   `json:"layout"`
		Overwrite bool   `json:"overwrite"`
	} `json:"disk_setup"`
	FSSetup []struct {
		Label      string `json:"label"`
		Filesystem string `json:"filesystem"`
		Device     string `json:"device"`
		Partition  string `json:"partition"`
		Overwrite  bool   `json:"overwrite"`
	} `json:"fs_setup"`
	Mounts           [][]string `json:"mounts"`
	Hostname         string     `json:"hostname"`
	ManageEtcHosts   bool       `json:"manage_etc_hosts"`
	PreserveHostname bool       `json:"preserve_hostname"`
	RunCmd           [][]string `json:"runcmd"`
	SSHPwauth        bool       `json:"ssh_pwauth"`
	Users            []struct {
		Name       string `json:"name"`
		Gecos      string `json:"gecos"`
		Shell      string `json:"shell"`
		Sudo       string `json:"sudo"`
		LockPasswd bool   `json:"lock_passwd"`
	} `json:"users"`
	WriteFiles []struct {
		Path        string `json:"path"`
		Owner       string `json:"owner"`
		Permissions string `json:"permissions"`
		Encoding    string `json:"encoding"`
		Content     string `json:"content"`
	} `json:"write_files"`
}

type file struct{ perm, content string }

func parseUserData(t *testing.T, data []byte) (userData, map[string]file) {
	t.Helper()
	if !bytes.HasPrefix(data, []byte("#cloud-config\n")) {
		t.Fatalf("user-data does not start with #cloud-config:\n%.200s", data)
	}
	var ud userData
	if err := yaml.UnmarshalStrict(data, &ud); err != nil {
		t.Fatalf("parsing user-data: %v", err)
	}
	files := map[string]file{}
	for _, f := range ud.WriteFiles {
		if _, dup := files[f.Path]; dup {
			t.Errorf("write_files has %s twice", f.Path)
		}
		if f.Owner != "root:root" {
			t.Errorf("%s: owner %q, want root:root", f.Path, f.Owner)
		}
		content := f.Content
		switch f.Encoding {
		case "":
		case "b64":
			b, err := base64.StdEncoding.DecodeString(f.Content)
			if err != nil {
				t.Fatalf("%s: %v", f.Path, err)
			}
			content = string(b)
		default:
			t.Errorf("%s: unexpected encoding %q", f.Path, f.Encoding)
		}
		files[f.Path] = file{perm: f.Permissions, content: content}
	}
	return ud, files
}

func TestUserData(t *testing.T) {
	f := newFixture(t)

	withBandwidth := func(tmpl labforgev1alpha1.LabTemplateSpec) labforgev1alpha1.LabTemplateSpec {
		tmpl.Network.Bandwidth = &labforgev1alpha1.Bandwidth{Ingress: quantity("100M"), Egress: quantity("50M")}
		tmpl.Network.EgressExceptCIDRs = []string{"192.0.2.0/24"}
		return tmpl
	}
	cases := []struct {
		name          string
		tmpl          labforgev1alpha1.LabTemplateSpec
		nodeMaskBits  int
		clusterDomain string
	}{{
		name:         "single node, stock image",
		tmpl:         template(0),
		nodeMaskBits: 24,
	}, {
		name: "one worker, prebaked image, bandwidth limits",
		tmpl: func() labforgev1alpha1.LabTemplateSpec {
			t := withBandwidth(template(1))
			t.Image.Prebaked = true
			t.SSHUser = "student"
			return t
		}(),
		nodeMaskBits: 24,
	}, {
		name: "three workers, stock image, scenario, bandwidth limits",
		tmpl: func() labforgev1alpha1.LabTemplateSpec {
			t := withBandwidth(template(3))
			t.Scenario = &labforgev1alpha1.Scenario{Script: "#!/bin/bash\nset -e\nkubectl -n kube-system delete deployment coredns\n"}
			return t
		}(),
		nodeMaskBits: 24,
	}, {
		name: "three workers, prebaked image, hostile scenario",
		tmpl: func() labforgev1alpha1.LabTemplateSpec {
			t := template(3)
			t.Image.Prebaked = true
			t.Scenario = &labforgev1alpha1.Scenario{Script: hostileScenario}
			return t
		}(),
		nodeMaskBits: 24,
	}, {
		name: "narrow pod range, scenario without #!, older minor, DNS public address",
		tmpl: func() labforgev1alpha1.LabTemplateSpec {
			t := template(3)
			t.KubernetesVersion = "v1.35.2"
			t.SSHUser = "k8s_admin-1"
			t.Network = labforgev1alpha1.LabNetwork{PodCIDR: "172.30.7.0/24", ServiceCIDR: "172.31.0.0/20", TunnelPort: 51234}
			t.BootTimeout = metav1.Duration{Duration: 7 * time.Minute}
			t.Scenario = &labforgev1alpha1.Scenario{Script: "kubectl cordon worker-2\n"}
			return t
		}(),
		nodeMaskBits:  26, // 4 nodes in a /24
		clusterDomain: "labs.internal",
	}, {
		name: "smallest and largest disks",
		tmpl: func() labforgev1alpha1.LabTemplateSpec {
			t := template(2)
			t.ControlPlane.Disk = resource.MustParse("5Gi")
			t.Workers.Disk = resource.MustParse("200Gi")
			return t
		}(),
		nodeMaskBits: 24,
	}}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ins := f.inputs(tc.tmpl)
			if want := 1 + int(tc.tmpl.Workers.Count); len(ins) != want {
				t.Fatalf("%d inputs, want %d", len(ins), want)
			}
			for _, in := range ins {
				if tc.clusterDomain != "" {
					in.ClusterDomain = tc.clusterDomain
				}
				t.Run(in.Node.Name, func(t *testing.T) {
					checkNode(t, f, in, tc.nodeMaskBits)
				})
			}
		})
	}
}

func checkNode(t *testing.T, f fixture, in cloudinit.Input, nodeMaskBits int) {
	controlPlane := in.Node.Role == lab.RoleControlPlane
	data, err := cloudinit.UserData(in)
	if err != nil {
		t.Fatal(err)
	}
	kubeadmConfig, err := cloudinit.KubeadmConfig(in)
	if err != nil {
		t.Fatal(err)
	}
	script, err := cloudinit.BootstrapScript(in)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("user-data of %s: %d bytes", in.Node.Name, len(data))

	// The real tools.
	checkCloudConfig(t, data)
	checkKubeadmConfig(t, kubeadmConfig)
	checkScript(t, script)

	// Determinism: the same input renders the same bytes, also from a deep copy.
	again := in
	again.Template = *in.Template.DeepCopy()
	again.CACertPEM = bytes.Clone(in.CACertPEM)
	if data2, err := cloudinit.UserData(again); err != nil || !bytes.Equal(data, data2) {
		t.Errorf("rendering twice gave different user-data (err %v)", err)
	}

	ud, files := parseUserData(t, data)
	s := string(data)

	// Accounts and SSH.
	if len(ud.Users) != 1 {
		t.Fatalf("users: %+v, want exactly the lab user", ud.Users)
	}
	u := ud.Users[0]
	if u.Name != in.Template.SSHUser || u.Sudo != "ALL=(ALL) NOPASSWD:ALL" || u.Shell != "/bin/bash" || !u.LockPasswd {
		t.Errorf("user: %+v", u)
	}
	if ud.SSHPwauth || !ud.DisableRoot {
		t.Errorf("ssh_pwauth %v, disable_root %v: want false, true", ud.SSHPwauth, ud.DisableRoot)
	}
	sshd := files[cloudinit.SSHDConfigPath]
	for _, line := range []string{"PermitRootLogin no", "PasswordAuthentication no"} {
		if !strings.Contains(sshd.content, "\n"+line+"\n") {
			t.Errorf("sshd drop-in lacks %q:\n%s", line, sshd.content)
		}
	}
	if ud.Hostname != in.Node.Name || ud.PreserveHostname {
		t.Errorf("hostname %q (preserve %v), want %q", ud.Hostname, ud.PreserveHostname, in.Node.Name)
	}

	// Student keys arrive at claim time through the guest agent, never here.
	for _, forbidden := range []string{f.studentKey, strings.Fields(f.studentKey)[1], "ssh_authorized_keys", "ssh-ed25519", "ssh-rsa", "ecdsa-sha2", "\n  passwd:", "hashed_passwd", "plain_text_passwd", "chpasswd"} {
		if strings.Contains(s, forbidden) {
			t.Errorf("user-data contains %q", forbidden)
		}
	}
	if !strings.Contains(string(script), "qemu-guest-agent") {
		t.Error("the bootstrap does not set up qemu-guest-agent")
	}

	// The files, their modes, and that the embedded copies are what the renderers return.
	wantFiles := map[string]string{
		cloudinit.SSHDConfigPath:       "0644",
		cloudinit.KubeadmConfigPath:    "0600",
		cloudinit.BootstrapScriptPath:  "0700",
		cloudinit.CrictlConfigPath:     "0644",
		cloudinit.ContainerdDiskDropIn: "0644",
		cloudinit.KubeletDiskDropIn:    "0644",
	}
	if controlPlane {
		wantFiles[cloudinit.CACertPath] = "0644"
		wantFiles[cloudinit.CAKeyPath] = "0600"
		wantFiles[cloudinit.CNIManifestPath] = "0644"
		wantFiles[cloudinit.OperatorRBACPath] = "0644"
		if in.Template.Scenario != nil {
			wantFiles[cloudinit.ScenarioPath] = "0700"
		}
	}
	if len(files) != len(wantFiles) {
		t.Errorf("write_files has %d files, want %d: %v", len(files), len(wantFiles), keys(files))
	}
	for path, perm := range wantFiles {
		if got, ok := files[path]; !ok {
			t.Errorf("write_files lacks %s", path)
		} else if got.perm != perm {
			t.Errorf("%s: permissions %s, want %s", path, got.perm, perm)
		}
	}
	if files[cloudinit.KubeadmConfigPath].content != string(kubeadmConfig) {
		t.Error("the user-data's kubeadm configuration differs from KubeadmConfig")
	}
	if files[cloudinit.BootstrapScriptPath].content != string(script) {
		t.Error("the user-data's bootstrap script differs from BootstrapScript")
	}
	if len(ud.RunCmd) != 1 || !strings.Contains(strings.Join(ud.RunCmd[0], " "), cloudinit.BootstrapScriptPath+" >>"+cloudinit.BootstrapLogPath+" 2>&1") {
		t.Errorf("runcmd %q does not run the bootstrap into its log", ud.RunCmd)
	}

	// Secrets: the CA key only on the control plane, the token only in kubeadm.yaml.
	if controlPlane {
		if files[cloudinit.CAKeyPath].content != string(f.caKeyPEM) || files[cloudinit.CACertPath].content != string(f.caCertPEM) {
			t.Error("the control plane's CA files differ from the lab CA")
		}
	}
	if got, want := len(privateKeyPEM.FindAllString(s, -1)), map[bool]int{true: 1, false: 0}[controlPlane]; got != want {
		t.Errorf("user-data holds %d private keys, want %d", got, want)
	}
	if !controlPlane && strings.Contains(s, "BEGIN CERTIFICATE") {
		t.Error("a worker's user-data holds the CA certificate; it pins the CA by hash instead")
	}
	if n := strings.Count(s, testToken); n != 1 {
		t.Errorf("the bootstrap token appears %d times in the user-data, want once (kubeadm.yaml)", n)
	}
	if strings.Contains(string(script), testToken) || strings.Contains(string(script), in.DiscoveryHash) {
		t.Error("the bootstrap script carries a credential")
	}
	if strings.Contains(strings.ToLower(s), "unsafeskipcaverification") {
		t.Error("user-data mentions unsafeSkipCAVerification")
	}

	checkKubeadmSemantics(t, in, kubeadmConfig, nodeMaskBits)
	checkScriptValues(t, in, script)
	checkDataDisk(t, in, ud, files, script)
	checkCrictl(t, files, script)
	if controlPlane {
		checkFlannel(t, in, []byte(files[cloudinit.CNIManifestPath].content))
		checkOperatorRBAC(t, []byte(files[cloudinit.OperatorRBACPath].content))
	}

	// The scenario travels verbatim, base64-encoded, and only to the control plane.
	if controlPlane && in.Template.Scenario != nil {
		if got := files[cloudinit.ScenarioPath].content; got != in.Template.Scenario.Script {
			t.Errorf("scenario arrives as %q, want %q", got, in.Template.Scenario.Script)
		}
	}
	if in.Template.Scenario != nil {
		for _, sentinel := range scenarioSentinels {
			if strings.Contains(in.Template.Scenario.Script, sentinel) && strings.Contains(s, sentinel) {
				t.Errorf("scenario text %q appears in the user-data outside its base64 file", sentinel)
			}
		}
	}
}

func keys(m map[string]file) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// yamlDocs splits a multi-document YAML into generic objects keyed by kind.
func yamlDocs(t *testing.T, data []byte) map[string]map[string]any {
	t.Helper()
	docs := map[string]map[string]any{}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("parsing %q: %v", doc, err)
		}
		if obj == nil {
			continue
		}
		kind, _ := obj["kind"].(string)
		name, _ := get(obj, "metadata", "name").(string)
		docs[kind+"/"+name] = obj
	}
	return docs
}

// get walks nested maps (and list indexes given as ints).
func get(obj any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := obj.(map[string]any)
			if !ok {
				return nil
			}
			obj = m[k]
		case int:
			l, ok := obj.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			obj = l[k]
		}
	}
	return obj
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("%s = %s, want %s", what, gj, wj)
	}
}

func checkKubeadmSemantics(t *testing.T, in cloudinit.Input, data []byte, nodeMaskBits int) {
	t.Helper()
	docs := yamlDocs(t, data)
	endpoint := "lab-api.lab-" + in.Environment + ".svc." + in.ClusterDomain + ":6443"
	if in.Node.Role == lab.RoleWorker {
		if len(docs) != 1 {
			t.Fatalf("worker kubeadm configuration has %d documents, want a JoinConfiguration", len(docs))
		}
		jc := docs["JoinConfiguration/"]
		eq(t, "apiVersion", jc["apiVersion"], "kubeadm.k8s.io/v1beta4")
		eq(t, "discovery.bootstrapToken", get(jc, "discovery", "bootstrapToken"), map[string]any{
			"apiServerEndpoint": endpoint,
			"token":             testToken,
			"caCertHashes":      []string{in.DiscoveryHash},
		})
		eq(t, "nodeRegistration", jc["nodeRegistration"], map[string]any{"name": in.Node.Name, "criSocket": cloudinit.CRISocket})
		eq(t, "timeouts.discovery", get(jc, "timeouts", "discovery"), in.Template.BootTimeout.Duration.String())
		return
	}
	if len(docs) != 2 {
		t.Fatalf("control-plane kubeadm configuration has %d documents, want Init and Cluster", len(docs))
	}
	ic, cc := docs["InitConfiguration/"], docs["ClusterConfiguration/"]
	eq(t, "bootstrapTokens", ic["bootstrapTokens"], []map[string]any{{
		"token":       testToken,
		"description": "labforge: lets the lab's workers join",
		"ttl":         in.TokenTTL.String(),
		"usages":      []string{"signing", "authentication"},
		"groups":      []string{"system:bootstrappers:kubeadm:default-node-token"},
	}})
	wantReg := map[string]any{"name": in.Node.Name, "criSocket": cloudinit.CRISocket}
	if in.Template.Workers.Count == 0 {
		wantReg["taints"] = []any{} // a single-node lab runs workloads on its control plane
	}
	eq(t, "nodeRegistration", ic["nodeRegistration"], wantReg)
	eq(t, "kubernetesVersion", cc["kubernetesVersion"], in.Template.KubernetesVersion)
	eq(t, "controlPlaneEndpoint", cc["controlPlaneEndpoint"], endpoint)
	eq(t, "encryptionAlgorithm", cc["encryptionAlgorithm"], "ECDSA-P256")
	eq(t, "networking", cc["networking"], map[string]any{"podSubnet": in.Template.Network.PodCIDR, "serviceSubnet": in.Template.Network.ServiceCIDR})
	// The certificate names the Service, fully qualified, and loopback: never an address
	// students connect to (their kubeconfig carries tls-server-name).
	host := "lab-api.lab-" + in.Environment + ".svc." + in.ClusterDomain
	eq(t, "apiServer.certSANs", get(cc, "apiServer", "certSANs"), []string{host, "127.0.0.1"})
	eq(t, "controllerManager.extraArgs", get(cc, "controllerManager", "extraArgs"), []map[string]any{{"name": "node-cidr-mask-size", "value": strconv.Itoa(nodeMaskBits)}})
}

// checkScriptValues runs the script's assignments (everything before its fixed code) in
// bash and compares what bash makes of them with the input.
func checkScriptValues(t *testing.T, in cloudinit.Input, script []byte) {
	t.Helper()
	header, _, ok := strings.Cut(string(script), "\n# ----")
	if !ok {
		t.Fatal("the bootstrap script has no separator between its values and its code")
	}
	names := []string{"ROLE", "NODE_NAME", "KUBERNETES_VERSION", "K8S_APT_URL", "PREBAKED", "EXPECTED_NODES", "BOOT_TIMEOUT_SECONDS", "HAS_SCENARIO", "API_HOST", "DATA_DISK", "DATA_MOUNT", "MARKER_MAX_MESSAGE"}
	var printer strings.Builder
	printer.WriteString(header + "\n")
	for _, n := range names {
		printer.WriteString(`printf '%s\0' "$` + n + `"` + "\n")
	}
	out := run(t, nil, requireTool(t, "bash"), "-c", printer.String())
	got := strings.Split(strings.TrimSuffix(out, "\x00"), "\x00")
	minor := strings.Split(in.Template.KubernetesVersion, ".")[1]
	hasScenario := in.Node.Role == lab.RoleControlPlane && in.Template.Scenario != nil
	want := []string{
		in.Node.Role, in.Node.Name, in.Template.KubernetesVersion,
		"https://pkgs.k8s.io/core:/stable:/v1." + minor + "/deb/",
		strconv.FormatBool(in.Template.Image.Prebaked),
		strconv.Itoa(1 + int(in.Template.Workers.Count)),
		strconv.Itoa(int(in.Template.BootTimeout.Seconds())),
		strconv.FormatBool(hasScenario),
		"lab-api.lab-" + in.Environment + ".svc." + in.ClusterDomain,
		"/dev/disk/by-id/virtio-labforge-data",
		"/var/lib/labforge-data",
		strconv.Itoa(lab.MarkerMaxMessageLength),
	}
	eq(t, "script values", got, want)

	for _, want := range []string{
		"kubeadm init --config \"${KUBEADM_CONFIG}\" --skip-token-print",
		"kubeadm join --config \"${KUBEADM_CONFIG}\"",
		"apt-mark hold kubelet kubeadm kubectl",
		"trap 'fail $?' ERR",
		"set -Eeuo pipefail",
	} {
		if !strings.Contains(string(script), want) {
			t.Errorf("the bootstrap script lacks %q", want)
		}
	}
}

func checkFlannel(t *testing.T, in cloudinit.Input, manifest []byte) {
	t.Helper()
	docs := yamlDocs(t, manifest)
	cm := docs["ConfigMap/kube-flannel-cfg"]
	netConf, _ := get(cm, "data", "net-conf.json").(string)
	var nc struct {
		Network string
		Backend struct {
			Type string
			Port int32
		}
	}
	if err := json.Unmarshal([]byte(netConf), &nc); err != nil {
		t.Fatalf("flannel net-conf.json %q: %v", netConf, err)
	}
	if nc.Network != in.Template.Network.PodCIDR || nc.Backend.Type != "vxlan" || nc.Backend.Port != in.Template.Network.TunnelPort {
		t.Errorf("flannel net-conf.json = %+v, want network %s, vxlan on port %d", nc, in.Template.Network.PodCIDR, in.Template.Network.TunnelPort)
	}
	ds := docs["DaemonSet/kube-flannel-ds"]
	if ds == nil {
		t.Fatalf("no flannel DaemonSet among %d documents", len(docs))
	}
	var images []string
	for _, list := range []string{"initContainers", "containers"} {
		l, _ := get(ds, "spec", "template", "spec", list).([]any)
		for i := range l {
			img, _ := get(l[i], "image").(string)
			images = append(images, img)
		}
	}
	if len(images) != 3 {
		t.Fatalf("flannel images %v, want 3", images)
	}
	for _, img := range images {
		_, tag, ok := strings.Cut(img, ":")
		if !ok || tag == "latest" || !strings.HasPrefix(img, "ghcr.io/flannel-io/") {
			t.Errorf("flannel image %q is not pinned to a release tag", img)
		}
		if strings.HasPrefix(img, "ghcr.io/flannel-io/flannel:") && tag != cloudinit.FlannelVersion {
			t.Errorf("flannel image %q, want tag %s", img, cloudinit.FlannelVersion)
		}
	}
}

func checkOperatorRBAC(t *testing.T, manifest []byte) {
	t.Helper()
	docs := yamlDocs(t, manifest)
	name := "labforge-bootstrap-marker-reader"
	role, binding := docs["Role/"+name], docs["RoleBinding/"+name]
	eq(t, "Role namespace", get(role, "metadata", "namespace"), lab.MarkerNamespace)
	eq(t, "Role rules", role["rules"], []map[string]any{{
		"apiGroups": []string{""}, "resources": []string{"configmaps"},
		"resourceNames": []string{lab.MarkerConfigMap}, "verbs": []string{"get"},
	}})
	eq(t, "RoleBinding namespace", get(binding, "metadata", "namespace"), lab.MarkerNamespace)
	eq(t, "RoleBinding roleRef", binding["roleRef"], map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name})
	eq(t, "RoleBinding subjects", binding["subjects"], []map[string]any{{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": lab.OperatorUser}})
	// Exposing the student's Services: list and watch Services, set a LoadBalancer's
	// address, nothing more.
	watcher := "labforge-service-exposer"
	cr, crb := docs["ClusterRole/"+watcher], docs["ClusterRoleBinding/"+watcher]
	eq(t, "ClusterRole rules", cr["rules"], []map[string]any{
		{"apiGroups": []string{""}, "resources": []string{"services"}, "verbs": []string{"list", "watch"}},
		{"apiGroups": []string{""}, "resources": []string{"services/status"}, "verbs": []string{"update"}},
	})
	eq(t, "ClusterRoleBinding roleRef", crb["roleRef"], map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": watcher})
	eq(t, "ClusterRoleBinding subjects", crb["subjects"], []map[string]any{{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": lab.OperatorUser}})
	if len(docs) != 4 {
		t.Errorf("operator RBAC has %d objects, want a Role, a ClusterRole and their bindings", len(docs))
	}
}
