// Package cloudinit renders what boots one node of a lab: the cloud-init user-data of its
// VM, the kubeadm configuration and the bootstrap script the user-data carries. The
// renderers are pure (inputs in, bytes out) and byte-deterministic, so an unchanged lab
// never rewrites its cloud-init Secrets.
//
// The user-data is secret (it holds the bootstrap token and, on the control plane, the lab
// CA's key), so it belongs in a Secret referenced by userDataSecretRef, never in a VM spec.
// Inside the VM the secrets land only in root-only files: the kubeadm configuration and
// /etc/kubernetes/pki/ca.key.
//
// Every value derived from the LabTemplate reaches the VM as data: YAML is written by a
// YAML marshaller, values the bootstrap script needs are single-quoted shell assignments at
// its top (the rest of the script is fixed code), and the scenario script is its own
// base64-encoded file, never interpolated into shell.
package cloudinit

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/templatecheck"
)

// Paths inside the VM. The bootstrap script, the kubeadm configuration and the lab's own
// files all live where an admin debugging a lab would look for them.
const (
	// KubeadmConfigPath is the kubeadm configuration (root only: it holds the token).
	KubeadmConfigPath = "/etc/labforge/kubeadm.yaml"
	// BootstrapScriptPath is the bootstrap script; re-running it is safe.
	BootstrapScriptPath = "/usr/local/sbin/labforge-bootstrap"
	// BootstrapLogPath is where the bootstrap script logs.
	BootstrapLogPath = "/var/log/labforge-bootstrap.log"
	// CNIManifestPath is the CNI (flannel) manifest the control plane applies.
	CNIManifestPath = "/etc/labforge/cni.yaml"
	// OperatorRBACPath is the Role and RoleBinding letting the operator read the marker,
	// and the ClusterRole and ClusterRoleBinding letting it read what the template's
	// solution checks name (OperatorRBAC).
	OperatorRBACPath = "/etc/labforge/operator-rbac.yaml"
	// ScenarioPath is the template's scenario script, verbatim.
	ScenarioPath = "/etc/labforge/scenario"
	// SSHDConfigPath is the sshd drop-in: keys only, no root login.
	SSHDConfigPath = "/etc/ssh/sshd_config.d/10-labforge.conf"
	// CACertPath and CAKeyPath are the lab CA, where kubeadm init finds and uses it.
	CACertPath = "/etc/kubernetes/pki/ca.crt"
	CAKeyPath  = "/etc/kubernetes/pki/ca.key"
	// StateDir holds the bootstrap's stamps (which steps finished), so a re-run resumes.
	StateDir = "/var/lib/labforge"
	// AdminKubeconfigPath is the lab's cluster-admin kubeconfig kubeadm writes.
	AdminKubeconfigPath = "/etc/kubernetes/admin.conf"
	// CRISocket is containerd's CRI endpoint.
	CRISocket = "unix:///var/run/containerd/containerd.sock"
	// CrictlConfigPath points crictl (cri-tools) at containerd, so that a student
	// debugging a node runs crictl without flags.
	CrictlConfigPath = "/etc/crictl.yaml"
	// DataDiskDevice is the node's data disk (render.VirtualMachines), found by its
	// virtio serial whatever its /dev/vdX position.
	DataDiskDevice = "/dev/disk/by-id/virtio-" + lab.DataDiskSerial
	// DataDiskLabel is the label of the data disk's ext4 filesystem (at most 16 bytes).
	DataDiskLabel = lab.DataDiskSerial
	// DataDiskMountPath is where cloud-init mounts the data disk. The bootstrap bind-mounts
	// DataDiskMountPath/containerd and DataDiskMountPath/kubelet onto /var/lib/containerd
	// and /var/lib/kubelet before containerd or the kubelet first start.
	DataDiskMountPath = "/var/lib/labforge-data"
	// ContainerdDiskDropIn and KubeletDiskDropIn make containerd and the kubelet wait for
	// their state directories' mounts at every boot (20-: kubeadm's kubelet drop-in is
	// 10-kubeadm.conf, which a drop-in of the same name in /etc would replace).
	ContainerdDiskDropIn = "/etc/systemd/system/containerd.service.d/20-labforge-data-disk.conf"
	KubeletDiskDropIn    = "/etc/systemd/system/kubelet.service.d/20-labforge-data-disk.conf"
)

// Node is one VM of a lab.
type Node struct {
	// Name is the VM's name, also its hostname and Kubernetes node name.
	Name string
	// Role is lab.RoleControlPlane or lab.RoleWorker.
	Role string
}

// Input is everything the user-data of one node depends on.
type Input struct {
	// Environment is the LabEnvironment's name; the lab lives in lab.Namespace(Environment).
	Environment string
	// Template is the lab's design, already defaulted by the API server.
	Template labforgev1alpha1.LabTemplateSpec
	// Node is the VM being rendered.
	Node Node
	// CACertPEM and CAKeyPEM are the lab CA. Only the control plane's user-data carries
	// them (the key is required there and ignored for workers, which pin the CA through
	// DiscoveryHash); when CACertPEM is given, DiscoveryHash must match it.
	CACertPEM, CAKeyPEM []byte
	// BootstrapToken is the kubeadm bootstrap token, "abcdef.0123456789abcdef".
	BootstrapToken string
	// TokenTTL is the bootstrap token's lifetime, counted from kubeadm init.
	TokenTTL time.Duration
	// DiscoveryHash pins the lab CA for joining workers: "sha256:<hex>".
	DiscoveryHash string
	// ClusterDomain is the host cluster's DNS domain: every node reaches the lab API by
	// the Service's fully qualified name in it, which the lab API certificate names. The
	// certificate names no address students connect to: their kubeconfig says which
	// name to expect (tls-server-name), so no host address is ever baked into a lab.
	ClusterDomain string
}

// config is a validated Input with the values the renderers derive from it.
type config struct {
	Input
	controlPlane  bool
	version       string // "v1.36.3"
	minor         int    // 36
	sshUser       string
	podCIDR       netip.Prefix
	serviceCIDR   netip.Prefix
	tunnelPort    int
	bootTimeout   time.Duration
	expectedNodes int
	scenario      []byte // nil without a scenario
	apiHost       string // lab-api.lab-<env>.svc.<cluster domain>
}

var discoveryHashPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// newConfig validates in. The CRD already refuses bad templates; checking again here keeps
// a bug elsewhere (or a template that predates a rule) from ever reaching a shell.
func newConfig(in Input) (*config, error) {
	c := &config{Input: in, controlPlane: in.Node.Role == lab.RoleControlPlane}
	var errs problems
	checkNode(in, &errs)
	c.setTemplate(&errs)
	checkJoin(in, &errs)
	checkCA(in, c.controlPlane, &errs)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cloudinit: %w", err)
	}
	c.apiHost = lab.APIServiceHost(in.Environment, in.ClusterDomain)
	return c, nil
}

// problems collects what is wrong with an Input, to report it all at once.
type problems []error

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

// checkNode checks the names that reach the node's hostname and its role.
func checkNode(in Input, errs *problems) {
	if msgs := validation.IsDNS1123Label(in.Environment); len(msgs) > 0 {
		errs.add("environment %q: %s", in.Environment, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(in.Node.Name); len(msgs) > 0 {
		errs.add("node name %q: %s", in.Node.Name, strings.Join(msgs, "; "))
	}
	if in.Node.Role != lab.RoleControlPlane && in.Node.Role != lab.RoleWorker {
		errs.add("node %q: role %q is neither %q nor %q", in.Node.Name, in.Node.Role, lab.RoleControlPlane, lab.RoleWorker)
	}
}

// setTemplate takes what the node needs from the template. What the template may be is
// decided in one place, templatecheck; this renderer only asks again, so that no template
// a check would refuse reaches a shell.
func (c *config) setTemplate(errs *problems) {
	t := c.Template
	valid, found := templatecheck.Check(&t, hostcluster.Network{})
	for _, p := range found {
		errs.add("%s", p)
	}
	c.version, c.minor = t.KubernetesVersion, valid.Minor
	c.sshUser = t.SSHUser
	c.podCIDR, c.serviceCIDR = valid.PodCIDR, valid.ServiceCIDR
	c.tunnelPort = int(t.Network.TunnelPort)
	c.bootTimeout = t.BootTimeout.Duration
	c.expectedNodes = 1 + int(t.Workers.Count)
	if t.Scenario != nil {
		c.scenario = []byte(t.Scenario.Script)
	}
}

// checkJoin checks what a node joins the lab's cluster with: the bootstrap token, its
// TTL, the discovery hash and the cluster domain.
func checkJoin(in Input, errs *problems) {
	if err := pki.ValidateBootstrapToken(in.BootstrapToken); err != nil {
		*errs = append(*errs, err)
	}
	if in.TokenTTL < time.Minute {
		// A zero TTL would make kubeadm create a token that never expires.
		errs.add("tokenTTL %s must be at least 1m", in.TokenTTL)
	}
	if !discoveryHashPattern.MatchString(in.DiscoveryHash) {
		errs.add("discoveryHash %q is not \"sha256:\" and 64 lowercase hex digits", in.DiscoveryHash)
	}
	if msgs := validation.IsDNS1123Subdomain(in.ClusterDomain); len(msgs) > 0 {
		errs.add("clusterDomain %q is not a DNS name: %s", in.ClusterDomain, strings.Join(msgs, "; "))
	}
}

// checkCA checks the lab CA: the control plane needs its certificate and key, a worker
// at most its certificate, and the discovery hash must be the CA's.
func checkCA(in Input, controlPlane bool, errs *problems) {
	if controlPlane {
		if len(in.CACertPEM) == 0 || len(in.CAKeyPEM) == 0 {
			errs.add("the control plane needs the lab CA's certificate and key")
		} else if ca, err := pki.ParseKeyPair(in.CACertPEM, in.CAKeyPEM); err != nil {
			errs.add("lab CA: %w", err)
		} else if !ca.Cert.IsCA {
			errs.add("lab CA: certificate %q is not a CA", ca.Cert.Subject.CommonName)
		} else if got := pki.DiscoveryHash(ca.Cert); in.DiscoveryHash != "" && got != in.DiscoveryHash {
			errs.add("discoveryHash does not match the lab CA (%s)", got)
		}
	} else if len(in.CACertPEM) > 0 {
		if ca, err := parseCertificatePEM(in.CACertPEM); err != nil {
			errs.add("lab CA: %w", err)
		} else if got := pki.DiscoveryHash(ca); in.DiscoveryHash != "" && got != in.DiscoveryHash {
			errs.add("discoveryHash does not match the lab CA (%s)", got)
		}
	}
}

// parseCertificatePEM reads the first CERTIFICATE block of data.
func parseCertificatePEM(data []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no CERTIFICATE block in the certificate PEM")
		}
		if block.Type == "CERTIFICATE" {
			return x509.ParseCertificate(block.Bytes)
		}
	}
}

// apiEndpoint is the lab API as every node reaches it: the host cluster's Service.
func (c *config) apiEndpoint() string {
	return c.apiHost + ":" + strconv.Itoa(lab.APIPort)
}

// cloudConfig is the subset of cloud-config labforge writes. Marshalled through JSON, so
// keys come out sorted and the output is byte-deterministic.
type cloudConfig struct {
	DisableRoot      bool                 `json:"disable_root"`
	DiskSetup        map[string]diskSetup `json:"disk_setup,omitempty"`
	FSSetup          []fsSetup            `json:"fs_setup,omitempty"`
	Mounts           [][]string           `json:"mounts,omitempty"`
	Hostname         string               `json:"hostname"`
	ManageEtcHosts   bool                 `json:"manage_etc_hosts"`
	PreserveHostname bool                 `json:"preserve_hostname"`
	RunCmd           [][]string           `json:"runcmd"`
	SSHPwauth        bool                 `json:"ssh_pwauth"`
	Users            []user               `json:"users"`
	WriteFiles       []writeFile          `json:"write_files"`
}

// diskSetup partitions a disk (cloud-init's cc_disk_setup). MBR: sfdisk is in every
// image (GPT would need sgdisk), and a data disk is far below MBR's 2 TiB.
type diskSetup struct {
	TableType string `json:"table_type"`
	Layout    bool   `json:"layout"`
	Overwrite bool   `json:"overwrite"`
}

// fsSetup makes a filesystem (cc_disk_setup). Partition "auto" takes the disk's first
// partition without a filesystem, or one that already has this label and type.
type fsSetup struct {
	Label      string `json:"label"`
	Filesystem string `json:"filesystem"`
	Device     string `json:"device"`
	Partition  string `json:"partition"`
	Overwrite  bool   `json:"overwrite"`
}

type user struct {
	Name       string `json:"name"`
	Gecos      string `json:"gecos"`
	Shell      string `json:"shell"`
	Sudo       string `json:"sudo"`
	LockPasswd bool   `json:"lock_passwd"`
}

type writeFile struct {
	Path        string `json:"path"`
	Owner       string `json:"owner"`
	Permissions string `json:"permissions"`
	Encoding    string `json:"encoding,omitempty"`
	Content     string `json:"content"`
}

// sshdConfig keeps sshd to keys only and root out. cloud-init writes the same through
// ssh_pwauth and disable_root; the drop-in makes it hold whatever else the image ships
// (sshd takes the first value it reads, and 10- sorts early).
const sshdConfig = `# Written by labforge: students log in with SSH keys as the lab's user and use sudo.
PermitRootLogin no
PasswordAuthentication no
`

// crictlConfig points crictl at containerd (the CRI socket kubeadm is told about too).
const crictlConfig = `# Written by labforge: crictl talks to containerd.
runtime-endpoint: ` + CRISocket + `
image-endpoint: ` + CRISocket + `
timeout: 10
`

// requiresMountsFor is a systemd drop-in making a service wait for the mount of path.
func requiresMountsFor(path string) string {
	return "# Written by labforge: this service's state lives on the node's data disk.\n[Unit]\nRequiresMountsFor=" + path + "\n"
}

// dataDiskMount is the fstab entry of the data disk, as cloud-init's mounts module takes
// it: the whole disk's by-id name, which cloud-init resolves to its first partition
// (cc_mounts.sanitize_devname; naming the "-part1" link itself is not found as a block
// device there). nofail and x-systemd.requires=cloud-init.service are cloud-init's own
// defaults: a boot never hangs on the disk, and it is formatted before it is mounted. The
// bootstrap fails, saying so, when the disk is not mounted.
func dataDiskMount() []string {
	return []string{DataDiskDevice, DataDiskMountPath, "ext4", "defaults,nofail,x-systemd.requires=cloud-init.service", "0", "2"}
}

// UserData renders the "#cloud-config" user-data of in.Node.
func UserData(in Input) ([]byte, error) {
	c, err := newConfig(in)
	if err != nil {
		return nil, err
	}
	files, err := c.writeFiles()
	if err != nil {
		return nil, err
	}
	body, err := marshalYAML(c.cloudConfig(files))
	if err != nil {
		return nil, fmt.Errorf("cloudinit: marshalling user-data: %w", err)
	}
	var out bytes.Buffer
	out.WriteString("#cloud-config\n")
	out.Write(body)
	return out.Bytes(), nil
}

// writeFiles are the files cloud-init writes on the node before the bootstrap runs.
func (c *config) writeFiles() ([]writeFile, error) {
	kubeadmConfig, err := c.kubeadmConfig()
	if err != nil {
		return nil, err
	}
	script := c.bootstrapScript()

	files := []writeFile{
		{Path: SSHDConfigPath, Owner: "root:root", Permissions: "0644", Content: sshdConfig},
		{Path: KubeadmConfigPath, Owner: "root:root", Permissions: "0600", Content: string(kubeadmConfig)},
		{Path: BootstrapScriptPath, Owner: "root:root", Permissions: "0700", Content: string(script)},
		{Path: CrictlConfigPath, Owner: "root:root", Permissions: "0644", Content: crictlConfig},
		{Path: ContainerdDiskDropIn, Owner: "root:root", Permissions: "0644", Content: requiresMountsFor("/var/lib/containerd")},
		{Path: KubeletDiskDropIn, Owner: "root:root", Permissions: "0644", Content: requiresMountsFor("/var/lib/kubelet")},
	}
	if c.controlPlane {
		cni, err := c.flannelManifest()
		if err != nil {
			return nil, err
		}
		rbac, err := operatorRBAC(c.Template.Checks)
		if err != nil {
			return nil, err
		}
		files = append(files,
			writeFile{Path: CACertPath, Owner: "root:root", Permissions: "0644", Content: string(c.CACertPEM)},
			writeFile{Path: CAKeyPath, Owner: "root:root", Permissions: "0600", Content: string(c.CAKeyPEM)},
			writeFile{Path: CNIManifestPath, Owner: "root:root", Permissions: "0644", Content: string(cni)},
			writeFile{Path: OperatorRBACPath, Owner: "root:root", Permissions: "0644", Content: string(rbac)},
		)
		if c.scenario != nil {
			// base64, so no byte of the scenario is ever read as YAML or shell.
			files = append(files, writeFile{
				Path: ScenarioPath, Owner: "root:root", Permissions: "0700",
				Encoding: "b64", Content: base64.StdEncoding.EncodeToString(c.scenario),
			})
		}
	}
	return files, nil
}

// cloudConfig is the node's cloud-config: its user, the files, the bootstrap to run and,
// with a data disk, how to format and mount it.
func (c *config) cloudConfig(files []writeFile) cloudConfig {
	return cloudConfig{
		DisableRoot:      true,
		Hostname:         c.Node.Name,
		ManageEtcHosts:   false, // the bootstrap adds the lab API to /etc/hosts; keep it across reboots
		PreserveHostname: false,
		// The script also appends its output to the log itself; this catches anything
		// that fails before it gets that far.
		RunCmd:    [][]string{{"sh", "-c", "exec " + BootstrapScriptPath + " >>" + BootstrapLogPath + " 2>&1"}},
		SSHPwauth: false,
		Users: []user{{
			Name:       c.sshUser,
			Gecos:      "labforge lab user",
			Shell:      "/bin/bash",
			Sudo:       "ALL=(ALL) NOPASSWD:ALL",
			LockPasswd: true,
		}},
		WriteFiles: files,
		// cloud-init's init stage runs disk_setup, fs_setup and mounts before the final
		// stage's runcmd starts the bootstrap, which installs and starts containerd and the
		// kubelet only once their directories are on the data disk.
		DiskSetup: map[string]diskSetup{DataDiskDevice: {TableType: "mbr", Layout: true, Overwrite: false}},
		FSSetup:   []fsSetup{{Label: DataDiskLabel, Filesystem: "ext4", Device: DataDiskDevice, Partition: "auto", Overwrite: false}},
		Mounts:    [][]string{dataDiskMount()},
	}
}
