// Package templatecheck is the one place that decides whether labs can be built from a
// LabTemplate. Three callers ask it: the template controller (the template's Ready and
// Stalled conditions), the lab controller (before it builds anything from a template) and
// the cloud-init renderer (before a value reaches a shell). The CRD's schema refuses most
// of these templates already; checking again here catches what the schema cannot see
// (the host cluster's ranges, the versions labforge was checked against) and keeps a bug
// elsewhere, or a template snapshot older than a rule, from ever reaching a VM.
package templatecheck

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/hostcluster"
)

// The Kubernetes minor versions labforge builds labs of. The bottom is the first release
// whose kubeadm reads the kubeadm.k8s.io/v1beta4 configuration labforge renders; the top
// is the newest release labforge's configuration was checked against.
const (
	MinKubernetesMinor = 31
	MaxKubernetesMinor = 37
)

// Bounds of a node's data disk, as the LabTemplate CRD states them.
var (
	MinDataDisk = resource.MustParse("5Gi")
	MaxDataDisk = resource.MustParse("200Gi")
)

// MaxScenarioBytes mirrors the CRD's limit on scenario.script.
const MaxScenarioBytes = 65536

var (
	versionPattern = regexp.MustCompile(`^v1\.([0-9]{1,2})\.([0-9]{1,3})$`)
	sshUserPattern = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
)

// Template is a template that passed Check, with the values the renderers derive from it.
type Template struct {
	// Minor is the Kubernetes minor version: 36 for v1.36.3.
	Minor int
	// PodCIDR and ServiceCIDR are the lab's ranges, masked.
	PodCIDR, ServiceCIDR netip.Prefix
}

// Check returns what is wrong with spec, one sentence per problem naming the field, and
// the derived values when nothing is. host holds the host cluster's ranges the lab's may
// not overlap; its zero value checks none.
func Check(spec *labforgev1alpha1.LabTemplateSpec, host hostcluster.Network) (Template, []string) {
	var t Template
	var p problems
	t.Minor = checkVersion(spec.KubernetesVersion, &p)
	if len(spec.SSHUser) > 32 || !sshUserPattern.MatchString(spec.SSHUser) || spec.SSHUser == "root" {
		p.add("sshUser %q must be a lowercase POSIX user name other than root, at most 32 characters", spec.SSHUser)
	}
	t.PodCIDR, t.ServiceCIDR = checkNetwork(&spec.Network, host, &p)
	checkNodes(spec, &p)
	p = append(p, checkChecks(spec.Checks)...)
	return t, p
}

// problems collects what is wrong with a template, one sentence each.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

// checkVersion returns the minor version of a Kubernetes version labforge builds labs of.
func checkVersion(version string, p *problems) (minor int) {
	m := versionPattern.FindStringSubmatch(version)
	if m != nil {
		minor, _ = strconv.Atoi(m[1])
	}
	if m == nil || minor < MinKubernetesMinor || minor > MaxKubernetesMinor {
		p.add("kubernetesVersion %s is not supported: labforge builds labs of v1.%d to v1.%d", version, MinKubernetesMinor, MaxKubernetesMinor)
	}
	return minor
}

// checkNetwork returns the lab's pod and service ranges, masked, when they are IPv4 ranges
// of sensible sizes that overlap neither each other nor the host's; and checks the
// tunnel port.
func checkNetwork(n *labforgev1alpha1.LabNetwork, host hostcluster.Network, p *problems) (podCIDR, serviceCIDR netip.Prefix) {
	var err error
	if podCIDR, err = parseIPv4CIDR("network.podCIDR", n.PodCIDR, 8, 24); err != nil {
		*p = append(*p, err.Error())
	}
	if serviceCIDR, err = parseIPv4CIDR("network.serviceCIDR", n.ServiceCIDR, 12, 24); err != nil {
		*p = append(*p, err.Error())
	}
	if podCIDR.IsValid() && serviceCIDR.IsValid() && podCIDR.Overlaps(serviceCIDR) {
		p.add("network.podCIDR %s and network.serviceCIDR %s overlap", podCIDR, serviceCIDR)
	}
	for _, r := range []struct {
		field string
		value netip.Prefix
	}{{"network.podCIDR", podCIDR}, {"network.serviceCIDR", serviceCIDR}} {
		if !r.value.IsValid() {
			continue
		}
		for _, h := range host.Overlapping(r.value) {
			p.add("%s %s overlaps the host cluster's range %s", r.field, r.value, h)
		}
	}
	if port := int(n.TunnelPort); port < 1024 || port > 65535 || port == 4789 || port == 8472 {
		p.add("network.tunnelPort %d must be 1024-65535 and neither 4789 nor 8472", port)
	}
	return podCIDR, serviceCIDR
}

// checkNodes checks the lab's machines: how long they may take to boot, how many workers,
// their data disks, and the scenario run on the control plane.
func checkNodes(spec *labforgev1alpha1.LabTemplateSpec, p *problems) {
	if d := spec.BootTimeout.Duration; d < time.Minute || d > 2*time.Hour {
		p.add("bootTimeout %s must be between 1m and 2h", d)
	}
	if n := spec.Workers.Count; n < 0 || n > labforgev1alpha1.MaxWorkers {
		p.add("workers.count %d must be between 0 and %d", n, labforgev1alpha1.MaxWorkers)
	}
	for _, d := range []struct {
		field string
		size  resource.Quantity
	}{{"controlPlane.disk", spec.ControlPlane.Disk}, {"workers.disk", spec.Workers.Disk}} {
		if d.size.Cmp(MinDataDisk) < 0 || d.size.Cmp(MaxDataDisk) > 0 {
			p.add("%s %s must be between %s and %s", d.field, d.size.String(), MinDataDisk.String(), MaxDataDisk.String())
		}
	}
	if s := spec.Scenario; s != nil {
		switch {
		case s.Script == "":
			p.add("scenario.script is empty")
		case len(s.Script) > MaxScenarioBytes:
			p.add("scenario.script is %d bytes, more than %d", len(s.Script), MaxScenarioBytes)
		}
	}
}

// parseIPv4CIDR reads one of the lab's ranges: IPv4, with a prefix length the lab's
// network plugin and kubeadm accept.
func parseIPv4CIDR(field, s string, minBits, maxBits int) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s %q is not a CIDR", field, s)
	}
	if !p.Addr().Is4() || p.Bits() < minBits || p.Bits() > maxBits {
		return netip.Prefix{}, fmt.Errorf("%s %s must be an IPv4 CIDR with a prefix length between %d and %d", field, s, minBits, maxBits)
	}
	return p.Masked(), nil
}
