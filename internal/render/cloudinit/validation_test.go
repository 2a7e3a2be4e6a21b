package cloudinit_test

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/render/cloudinit"
)

// TestInvalidInput: the CRD refuses these templates, and the renderers refuse them again
// rather than let a bug elsewhere put them into a VM.
func TestInvalidInput(t *testing.T) {
	f := newFixture(t)
	other, err := pki.NewCA("another", time.Now(), time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := other.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	controlPlane := func() cloudinit.Input { return f.inputs(template(1))[0] }
	worker := func() cloudinit.Input { return f.inputs(template(1))[1] }
	cases := []struct {
		name   string
		in     cloudinit.Input
		mutate func(*cloudinit.Input)
		want   string
	}{
		{"version without v", controlPlane(), func(in *cloudinit.Input) { in.Template.KubernetesVersion = "1.36.3" }, "kubernetesVersion"},
		{"version with shell", controlPlane(), func(in *cloudinit.Input) { in.Template.KubernetesVersion = "v1.36.3;id" }, "kubernetesVersion"},
		{"version before v1beta4", worker(), func(in *cloudinit.Input) { in.Template.KubernetesVersion = "v1.30.9" }, "kubernetesVersion v1.30.9 is not supported"},
		{"root user", controlPlane(), func(in *cloudinit.Input) { in.Template.SSHUser = "root" }, "sshUser"},
		{"hostile user", worker(), func(in *cloudinit.Input) { in.Template.SSHUser = "x'$(id)" }, "sshUser"},
		{"undefaulted user", worker(), func(in *cloudinit.Input) { in.Template.SSHUser = "" }, "sshUser"},
		{"IPv6 pod range", controlPlane(), func(in *cloudinit.Input) { in.Template.Network.PodCIDR = "fd00::/64" }, "podCIDR"},
		{"undefaulted pod range", controlPlane(), func(in *cloudinit.Input) { in.Template.Network.PodCIDR = "" }, "podCIDR"},
		{"overlapping ranges", controlPlane(), func(in *cloudinit.Input) { in.Template.Network.ServiceCIDR = "10.200.128.0/20" }, "overlap"},
		{"host VXLAN port", controlPlane(), func(in *cloudinit.Input) { in.Template.Network.TunnelPort = 8472 }, "tunnelPort"},
		{"undefaulted boot timeout", worker(), func(in *cloudinit.Input) { in.Template.BootTimeout.Duration = 0 }, "bootTimeout"},
		{"too many workers", controlPlane(), func(in *cloudinit.Input) { in.Template.Workers.Count = labforgev1alpha1.MaxWorkers + 1 }, "workers.count"},
		{"empty scenario", controlPlane(), func(in *cloudinit.Input) { in.Template.Scenario = &labforgev1alpha1.Scenario{} }, "scenario"},
		{"bad token", worker(), func(in *cloudinit.Input) { in.BootstrapToken = "abcdef.0123456789ABCDEF" }, "bootstrap token"},
		{"token that never expires", controlPlane(), func(in *cloudinit.Input) { in.TokenTTL = 0 }, "tokenTTL"},
		{"bad hash", worker(), func(in *cloudinit.Input) { in.DiscoveryHash = "sha256:abc" }, "discoveryHash"},
		{"hash of another CA (worker)", worker(), func(in *cloudinit.Input) { in.DiscoveryHash = pki.DiscoveryHash(other.Cert) }, "does not match"},
		{"hash of another CA (control plane)", controlPlane(), func(in *cloudinit.Input) { in.DiscoveryHash = pki.DiscoveryHash(other.Cert) }, "does not match"},
		{"control plane without CA key", controlPlane(), func(in *cloudinit.Input) { in.CAKeyPEM = nil }, "CA"},
		{"CA key of another CA", controlPlane(), func(in *cloudinit.Input) { in.CAKeyPEM = otherKey }, "does not match"},
		{"unknown role", controlPlane(), func(in *cloudinit.Input) { in.Node.Role = "master" }, "role"},
		{"bad node name", worker(), func(in *cloudinit.Input) { in.Node.Name = "worker_1" }, "node name"},
		{"bad environment", worker(), func(in *cloudinit.Input) { in.Environment = "Demo;id" }, "environment"},
		{"bad cluster domain", controlPlane(), func(in *cloudinit.Input) { in.ClusterDomain = "cluster local" }, "clusterDomain"},
		{"no cluster domain", controlPlane(), func(in *cloudinit.Input) { in.ClusterDomain = "" }, "clusterDomain"},
		{"data disk too small", controlPlane(), func(in *cloudinit.Input) { in.Template.ControlPlane.Disk = resource.MustParse("4Gi") }, "controlPlane.disk 4Gi must be between 5Gi and 200Gi"},
		{"data disk too large", worker(), func(in *cloudinit.Input) { in.Template.Workers.Disk = resource.MustParse("201Gi") }, "workers.disk 201Gi must be between 5Gi and 200Gi"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			tc.mutate(&in)
			for name, render := range map[string]func(cloudinit.Input) ([]byte, error){
				"UserData": cloudinit.UserData, "KubeadmConfig": cloudinit.KubeadmConfig, "BootstrapScript": cloudinit.BootstrapScript,
			} {
				out, err := render(in)
				if err == nil {
					t.Fatalf("%s accepted the input:\n%.300s", name, out)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: error %q does not mention %q", name, err, tc.want)
				}
				if strings.Contains(err.Error(), strings.Split(testToken, ".")[1]) {
					t.Errorf("%s: error leaks the token secret: %v", name, err)
				}
			}
		})
	}
}

// TestWorkerIgnoresCAKey: a caller that hands the CA key to a worker still gets user-data
// without it.
func TestWorkerIgnoresCAKey(t *testing.T) {
	f := newFixture(t)
	in := f.inputs(template(1))[1]
	in.CAKeyPEM = f.caKeyPEM
	data, err := cloudinit.UserData(in)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "PRIVATE KEY") {
		t.Error("a worker's user-data holds the CA key")
	}
	if in.Node.Role != lab.RoleWorker {
		t.Fatal("fixture changed: input 1 is not a worker")
	}
}
