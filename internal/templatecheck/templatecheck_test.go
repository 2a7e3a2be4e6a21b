package templatecheck_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/templatecheck"
)

func validSpec() labforgev1alpha1.LabTemplateSpec {
	return labforgev1alpha1.LabTemplateSpec{
		KubernetesVersion: "v1.36.3",
		SSHUser:           "student",
		BootTimeout:       metav1.Duration{Duration: 20 * time.Minute},
		Network:           labforgev1alpha1.LabNetwork{PodCIDR: "10.200.0.0/16", ServiceCIDR: "10.201.0.0/16", TunnelPort: 8475},
		Workers:           labforgev1alpha1.WorkerSpec{Count: 1, NodeSize: labforgev1alpha1.NodeSize{Disk: resource.MustParse("20Gi")}},
		ControlPlane:      labforgev1alpha1.ControlPlaneSize{Disk: resource.MustParse("20Gi")},
	}
}

func TestCheck(t *testing.T) {
	tests := map[string]struct {
		mutate func(*labforgev1alpha1.LabTemplateSpec)
		want   []string
	}{
		"valid":            {mutate: func(*labforgev1alpha1.LabTemplateSpec) {}},
		"oldest supported": {mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.KubernetesVersion = "v1.31.0" }},
		"newest supported": {mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.KubernetesVersion = "v1.37.12" }},
		"too old": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.KubernetesVersion = "v1.30.9" },
			want:   []string{"kubernetesVersion v1.30.9 is not supported: labforge builds labs of v1.31 to v1.37"},
		},
		"too new": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.KubernetesVersion = "v1.99.0" },
			want:   []string{"kubernetesVersion v1.99.0 is not supported: labforge builds labs of v1.31 to v1.37"},
		},
		"garbage version": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.KubernetesVersion = "latest" },
			want:   []string{"kubernetesVersion latest is not supported: labforge builds labs of v1.31 to v1.37"},
		},
		"pod range clashes with host pods": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.Network.PodCIDR = "10.244.0.0/16" },
			want:   []string{"network.podCIDR 10.244.0.0/16 overlaps the host cluster's range 10.244.0.0/16"},
		},
		"service range inside host services and bad pod range": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) {
				s.Network.ServiceCIDR = "10.100.0.0/16"
				s.Network.PodCIDR = "nonsense"
			},
			want: []string{
				`network.podCIDR "nonsense" is not a CIDR`,
				"network.serviceCIDR 10.100.0.0/16 overlaps the host cluster's range 10.96.0.0/12",
			},
		},
		"hostile sshUser": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.SSHUser = "x'$(id)" },
			want:   []string{`sshUser "x'$(id)" must be a lowercase POSIX user name other than root, at most 32 characters`},
		},
		"root": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.SSHUser = "root" },
			want:   []string{`sshUser "root" must be a lowercase POSIX user name other than root, at most 32 characters`},
		},
		"IPv6 pod range and a service range too large": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) {
				s.Network.PodCIDR = "fd00::/64"
				s.Network.ServiceCIDR = "10.0.0.0/8"
			},
			want: []string{
				"network.podCIDR fd00::/64 must be an IPv4 CIDR with a prefix length between 8 and 24",
				"network.serviceCIDR 10.0.0.0/8 must be an IPv4 CIDR with a prefix length between 12 and 24",
			},
		},
		"lab ranges overlap each other": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.Network.ServiceCIDR = "10.200.128.0/20" },
			want:   []string{"network.podCIDR 10.200.0.0/16 and network.serviceCIDR 10.200.128.0/20 overlap"},
		},
		"host VXLAN port": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.Network.TunnelPort = 8472 },
			want:   []string{"network.tunnelPort 8472 must be 1024-65535 and neither 4789 nor 8472"},
		},
		"boot timeout and workers out of range": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) {
				s.BootTimeout.Duration = 0
				s.Workers.Count = labforgev1alpha1.MaxWorkers + 1
			},
			want: []string{"bootTimeout 0s must be between 1m and 2h", "workers.count 11 must be between 0 and 10"},
		},
		"disks out of range": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) {
				s.ControlPlane.Disk = resource.MustParse("4Gi")
				s.Workers.Disk = resource.MustParse("201Gi")
			},
			want: []string{"controlPlane.disk 4Gi must be between 5Gi and 200Gi", "workers.disk 201Gi must be between 5Gi and 200Gi"},
		},
		// Every node has a data disk (the CRD defaults its size): no released labforge
		// wrote a template, or a lab's snapshot of one, without it (decision 84).
		"no data disks": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) {
				s.ControlPlane.Disk, s.Workers.Disk = resource.Quantity{}, resource.Quantity{}
			},
			want: []string{"controlPlane.disk 0 must be between 5Gi and 200Gi", "workers.disk 0 must be between 5Gi and 200Gi"},
		},
		"scenarios": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.Scenario = &labforgev1alpha1.Scenario{} },
			want:   []string{"scenario.script is empty"},
		},
		"scenario too long": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) {
				s.Scenario = &labforgev1alpha1.Scenario{Script: strings.Repeat("x", templatecheck.MaxScenarioBytes+1)}
			},
			want: []string{"scenario.script is 65537 bytes, more than 65536"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := validSpec()
			tc.mutate(&spec)
			_, got := templatecheck.Check(&spec, hostcluster.Network{
				PodCIDRs:     []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
				ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
			})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Check() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
