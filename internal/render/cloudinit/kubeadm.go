package cloudinit

import (
	"bytes"
	"fmt"
	"math/bits"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The kubeadm configuration API labforge writes (kubeadm v1.31 and later read it).
const (
	kubeadmAPIVersion = "kubeadm.k8s.io/v1beta4"
	// encryptionAlgorithm matches the lab CA (pki.NewCA makes ECDSA P-256 keys), so every
	// certificate kubeadm issues under it uses the same kind of key.
	encryptionAlgorithm = "ECDSA-P256"
	// defaultNodeMaskBits is kube-controller-manager's default per-node pod range size.
	defaultNodeMaskBits = 24
)

// Just the kubeadm v1beta4 fields labforge sets. Types of our own rather than kubeadm's
// (which live in k8s.io/kubernetes); `kubeadm config validate` in the tests keeps them
// honest, and it rejects unknown fields.
type (
	kubeadmArg struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	nodeRegistration struct {
		Name      string `json:"name"`
		CRISocket string `json:"criSocket"`
		// Taints nil means kubeadm's default (a control plane gets its NoSchedule taint);
		// a pointer to an empty list means no taint at all.
		Taints *[]struct{} `json:"taints,omitempty"`
	}
	bootstrapToken struct {
		Token       string          `json:"token"`
		Description string          `json:"description"`
		TTL         metav1.Duration `json:"ttl"`
		Usages      []string        `json:"usages"`
		Groups      []string        `json:"groups"`
	}
	initConfiguration struct {
		APIVersion       string           `json:"apiVersion"`
		Kind             string           `json:"kind"`
		BootstrapTokens  []bootstrapToken `json:"bootstrapTokens"`
		NodeRegistration nodeRegistration `json:"nodeRegistration"`
	}
	clusterConfiguration struct {
		APIVersion           string `json:"apiVersion"`
		Kind                 string `json:"kind"`
		KubernetesVersion    string `json:"kubernetesVersion"`
		ControlPlaneEndpoint string `json:"controlPlaneEndpoint"`
		EncryptionAlgorithm  string `json:"encryptionAlgorithm"`
		Networking           struct {
			PodSubnet     string `json:"podSubnet"`
			ServiceSubnet string `json:"serviceSubnet"`
		} `json:"networking"`
		APIServer struct {
			CertSANs []string `json:"certSANs"`
		} `json:"apiServer"`
		ControllerManager struct {
			ExtraArgs []kubeadmArg `json:"extraArgs"`
		} `json:"controllerManager"`
	}
	joinConfiguration struct {
		APIVersion       string           `json:"apiVersion"`
		Kind             string           `json:"kind"`
		NodeRegistration nodeRegistration `json:"nodeRegistration"`
		Discovery        struct {
			BootstrapToken struct {
				APIServerEndpoint string   `json:"apiServerEndpoint"`
				Token             string   `json:"token"`
				CACertHashes      []string `json:"caCertHashes"`
			} `json:"bootstrapToken"`
		} `json:"discovery"`
		Timeouts struct {
			Discovery metav1.Duration `json:"discovery"`
		} `json:"timeouts"`
	}
)

// KubeadmConfig renders the kubeadm configuration the user-data of in.Node carries:
// InitConfiguration and ClusterConfiguration for the control plane, JoinConfiguration for
// a worker.
func KubeadmConfig(in Input) ([]byte, error) {
	c, err := newConfig(in)
	if err != nil {
		return nil, err
	}
	return c.kubeadmConfig()
}

// kubeadmConfig renders c's node's kubeadm documents as one multi-document YAML.
func (c *config) kubeadmConfig() ([]byte, error) {
	var docs []any
	if c.controlPlane {
		docs = append(docs, c.initConfiguration(), c.clusterConfiguration())
	} else {
		docs = append(docs, c.joinConfiguration())
	}
	var out bytes.Buffer
	for i, d := range docs {
		y, err := marshalYAML(d)
		if err != nil {
			return nil, fmt.Errorf("cloudinit: marshalling kubeadm configuration: %w", err)
		}
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(y)
	}
	return out.Bytes(), nil
}

// initConfiguration is the control plane's InitConfiguration: the bootstrap token its
// workers join with, and its node registration.
func (c *config) initConfiguration() initConfiguration {
	ic := initConfiguration{
		APIVersion: kubeadmAPIVersion,
		Kind:       "InitConfiguration",
		BootstrapTokens: []bootstrapToken{{
			Token:       c.BootstrapToken,
			Description: "labforge: lets the lab's workers join",
			TTL:         metav1.Duration{Duration: c.TokenTTL.Round(time.Second)},
			Usages:      []string{"signing", "authentication"},
			Groups:      []string{"system:bootstrappers:kubeadm:default-node-token"},
		}},
		NodeRegistration: nodeRegistration{Name: c.Node.Name, CRISocket: CRISocket},
	}
	if c.expectedNodes == 1 {
		// A single-node lab schedules its workloads on the control plane.
		ic.NodeRegistration.Taints = &[]struct{}{}
	}
	return ic
}

// clusterConfiguration is the lab's ClusterConfiguration: its version, endpoint, ranges
// and certificate names.
func (c *config) clusterConfiguration() clusterConfiguration {
	cc := clusterConfiguration{
		APIVersion:           kubeadmAPIVersion,
		Kind:                 "ClusterConfiguration",
		KubernetesVersion:    c.version,
		ControlPlaneEndpoint: c.apiEndpoint(),
		EncryptionAlgorithm:  encryptionAlgorithm,
	}
	cc.Networking.PodSubnet = c.podCIDR.String()
	cc.Networking.ServiceSubnet = c.serviceCIDR.String()
	cc.APIServer.CertSANs = c.certSANs()
	cc.ControllerManager.ExtraArgs = []kubeadmArg{
		{Name: "node-cidr-mask-size", Value: strconv.Itoa(c.nodeMaskBits())},
	}
	return cc
}

// joinConfiguration is a worker's JoinConfiguration: where and how it finds the control
// plane.
func (c *config) joinConfiguration() joinConfiguration {
	jc := joinConfiguration{
		APIVersion:       kubeadmAPIVersion,
		Kind:             "JoinConfiguration",
		NodeRegistration: nodeRegistration{Name: c.Node.Name, CRISocket: CRISocket},
	}
	jc.Discovery.BootstrapToken.APIServerEndpoint = c.apiEndpoint()
	jc.Discovery.BootstrapToken.Token = c.BootstrapToken
	jc.Discovery.BootstrapToken.CACertHashes = []string{c.DiscoveryHash}
	// Workers boot alongside the control plane and keep retrying discovery until
	// its API answers: give them as long as the whole lab has to boot.
	jc.Timeouts.Discovery = metav1.Duration{Duration: c.bootTimeout}
	return jc
}

// certSANs are the extra names of the lab API certificate: the Service's fully qualified
// name (what every node, the operator's probe and, through tls-server-name, every
// student's kubeconfig expect) and loopback. No address students connect to is in it, so
// the lab never depends on where it is reached from. kubeadm adds the node's own names
// and addresses.
func (c *config) certSANs() []string {
	return []string{c.apiHost, "127.0.0.1"}
}

// nodeMaskBits sizes each node's pod range: kube-controller-manager's /24 when the pod
// range has room for every node of the lab, smaller ranges when a narrow pod range must
// still be split among all of them (a /24 pod range and 11 nodes gives /28s).
func (c *config) nodeMaskBits() int {
	need := max(1, bits.Len(uint(c.expectedNodes-1))) // bits to number every node
	return max(defaultNodeMaskBits, c.podCIDR.Bits()+need)
}
