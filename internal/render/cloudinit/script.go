package cloudinit

import (
	"bytes"
	_ "embed"
	"strconv"
	"strings"

	"github.com/labforge/labforge/internal/lab"
)

// bootstrapBody is the fixed part of the bootstrap script. It reads the lab-specific
// values from the variables BootstrapScript assigns before it, and nothing else.
//
//go:embed assets/bootstrap.sh
var bootstrapBody string

// k8sAptURL is the pkgs.k8s.io repository of one Kubernetes minor.
func k8sAptURL(minor int) string {
	return "https://pkgs.k8s.io/core:/stable:/v1." + strconv.Itoa(minor) + "/deb/"
}

// BootstrapScript renders the bash script the user-data of in.Node runs.
func BootstrapScript(in Input) ([]byte, error) {
	c, err := newConfig(in)
	if err != nil {
		return nil, err
	}
	return c.bootstrapScript(), nil
}

func (c *config) bootstrapScript() []byte {
	hasScenario := c.controlPlane && c.scenario != nil
	vars := []struct{ name, value string }{
		{"ROLE", c.Node.Role},
		{"NODE_NAME", c.Node.Name},
		{"KUBERNETES_VERSION", c.version},
		{"KUBERNETES_MINOR", strconv.Itoa(c.minor)},
		{"K8S_APT_URL", k8sAptURL(c.minor)},
		{"PREBAKED", strconv.FormatBool(c.Template.Image.Prebaked)},
		{"EXPECTED_NODES", strconv.Itoa(c.expectedNodes)},
		{"BOOT_TIMEOUT_SECONDS", strconv.Itoa(int(c.bootTimeout.Seconds()))},
		{"HAS_SCENARIO", strconv.FormatBool(hasScenario)},
		{"API_HOST", c.apiHost},
		{"DATA_DISK", DataDiskDevice},
		{"DATA_MOUNT", DataDiskMountPath},
		{"LOG", BootstrapLogPath},
		{"STATE_DIR", StateDir},
		{"KUBEADM_CONFIG", KubeadmConfigPath},
		{"ADMIN_KUBECONFIG", AdminKubeconfigPath},
		{"CA_CERT", CACertPath},
		{"CA_KEY", CAKeyPath},
		{"CNI_MANIFEST", CNIManifestPath},
		{"OPERATOR_RBAC", OperatorRBACPath},
		{"SCENARIO", ScenarioPath},
		{"MARKER_NAMESPACE", lab.MarkerNamespace},
		{"MARKER_CONFIGMAP", lab.MarkerConfigMap},
		{"MARKER_PHASE_KEY", lab.MarkerPhase},
		{"MARKER_MESSAGE_KEY", lab.MarkerMessage},
		{"MARKER_PHASE_COMPLETE", lab.MarkerPhaseComplete},
		{"MARKER_PHASE_FAILED", lab.MarkerPhaseFailed},
		{"MARKER_MAX_MESSAGE", strconv.Itoa(lab.MarkerMaxMessageLength)},
	}
	var b bytes.Buffer
	b.WriteString("#!/bin/bash\n")
	b.WriteString("# labforge bootstrap: prepares this VM and makes it a node of its lab's kubeadm cluster.\n")
	b.WriteString("# Written by labforge. The values below are the only lab-specific part.\n")
	b.WriteString("set -Eeuo pipefail\n\n")
	for _, v := range vars {
		b.WriteString("readonly " + v.name + "=" + shellQuote(v.value) + "\n")
	}
	b.WriteString(bootstrapBody)
	return b.Bytes()
}

// shellQuote makes s one shell word that stands for exactly s: s in single quotes,
// inside which nothing is special, and each single quote of s written as quote,
// backslash, quote, quote (close, escaped quote, reopen).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
