// Package preflight is `labforge preflight`: a checklist a new admin runs against a host
// cluster before installing labforge. It reads what the host shows through its API (the
// KubeVirt object, Nodes, ServiceCIDRs, the NodePort range, the CNI's DaemonSets and
// ConfigMaps), then runs small pure checks over what it read. Each check says OK, WARN or
// FAIL, what it found, and what to do.
//
// docs/host-prerequisites.md explains every check to the admin.
package preflight

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	kubevirtv1 "kubevirt.io/api/core/v1"
)

// Status is a check's verdict.
type Status string

// The verdicts, from best to worst.
const (
	// OK means the host is fine for labs on this point.
	OK Status = "OK"
	// Warn means labs may work, but something is unknown or degraded; read the advice.
	Warn Status = "WARN"
	// Fail means labs will not work on this host until the advice is followed.
	Fail Status = "FAIL"
)

// Result is one line of the checklist.
type Result struct {
	// Status is the verdict.
	Status Status
	// Check names what was checked, such as "KubeVirt" or "Bridge binding".
	Check string
	// Found says what was found on the host.
	Found string
	// Do says what the admin should do; empty when there is nothing to do.
	Do string
}

// String renders the result as one checklist line: the verdict, the check, what was
// found and, after "Do:", what to do.
func (r Result) String() string {
	line := fmt.Sprintf("%-4s %s: %s", r.Status, r.Check, r.Found)
	if r.Do != "" {
		line += " Do: " + r.Do
	}
	return line
}

// Report is the whole checklist, in the order the checks ran.
type Report []Result

// Failed reports whether any check failed.
func (r Report) Failed() bool {
	for _, res := range r {
		if res.Status == Fail {
			return true
		}
	}
	return false
}

// Write prints one line per result, then a summary line.
func (r Report) Write(w io.Writer) error {
	counts := map[Status]int{}
	for _, res := range r {
		counts[res.Status]++
		if _, err := fmt.Fprintln(w, res.String()); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "%d OK, %d WARN, %d FAIL\n", counts[OK], counts[Warn], counts[Fail])
	return err
}

// Facts is everything preflight read from the host. The checks are pure functions of it.
type Facts struct {
	// KubeVirt is what the host says about KubeVirt.
	KubeVirt KubeVirtFacts
	// Host holds the host's pod and service ranges and its nodes.
	Host HostRanges
	// NodePorts is the host's NodePort range, or why it is unknown.
	NodePorts NodePortFacts
	// CNI is what is visible of the host's CNI.
	CNI CNIFacts
	// DNS is what is visible of the host's cluster DNS.
	DNS DNSFacts
	// Lab is the lab network the checks compare with the host's.
	Lab LabNetwork
}

// KubeVirtFacts is what the host's API says about KubeVirt.
type KubeVirtFacts struct {
	// CRD reports whether kubevirt.io/v1 serves the kubevirts resource.
	CRD bool
	// Objects are the KubeVirt objects of every namespace.
	Objects []kubevirtv1.KubeVirt
	// Err is set when reading failed (other than the CRD being absent).
	Err error
}

// HostRanges is what the host's API says about its address ranges and nodes.
type HostRanges struct {
	// Nodes are the host's nodes, sorted by name.
	Nodes []Node
	// NodesErr is set when the Nodes could not be listed.
	NodesErr error
	// ServiceCIDRs are the ranges of the networking.k8s.io/v1 ServiceCIDR objects.
	ServiceCIDRs []netip.Prefix
	// ServiceCIDRNames are the names of the ServiceCIDR objects, for the report.
	ServiceCIDRNames []string
	// ServiceCIDRsErr is set when ServiceCIDRs could not be listed (the API is absent
	// before Kubernetes 1.33, or the caller may not list them).
	ServiceCIDRsErr error
	// KubernetesServiceIP is the ClusterIP of default/kubernetes, the first address of the
	// primary service range: a hint when there are no ServiceCIDR objects.
	KubernetesServiceIP netip.Addr
}

// PodCIDRs returns the pod ranges of every node, without duplicates, in node order.
func (h HostRanges) PodCIDRs() []netip.Prefix {
	var out []netip.Prefix
	seen := map[netip.Prefix]bool{}
	for _, n := range h.Nodes {
		for _, p := range n.PodCIDRs {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// Node is what preflight needs of one host node.
type Node struct {
	// Name is the Node's name.
	Name string
	// PodCIDRs are its spec.podCIDRs.
	PodCIDRs []netip.Prefix
	// InternalIPs and ExternalIPs are its status addresses of those types.
	InternalIPs, ExternalIPs []netip.Addr
	// KVM reports whether the node offers devices.kubevirt.io/kvm, the resource
	// virt-handler's device plugin advertises where /dev/kvm exists and every launcher
	// pod requests unless KubeVirt emulates.
	KVM bool
}

// NodePortFacts is the host's NodePort range.
type NodePortFacts struct {
	// First and Last bound the range; both zero when unknown.
	First, Last int
	// Source says where the range came from.
	Source string
	// Err is why the range is unknown.
	Err error
}

// CNIFacts is what is visible of the host's CNI in kube-system (and kube-flannel).
type CNIFacts struct {
	// Name is "Cilium", "Calico", "Flannel" or empty when none was recognised.
	Name string
	// Evidence names the object the CNI was recognised by.
	Evidence string
	// Config is the CNI's configuration ConfigMap's data (cilium-config, calico-config,
	// kube-flannel-cfg); nil when there is none.
	Config map[string]string
	// ConfigName names that ConfigMap.
	ConfigName string
}

// DNSFacts is what is visible of the host's cluster DNS.
type DNSFacts struct {
	// KubeDNS is the ClusterIP of Service kube-system/kube-dns; invalid when there is none.
	KubeDNS netip.Addr
	// NodeLocal reports whether DaemonSet kube-system/node-local-dns (NodeLocal DNSCache)
	// exists.
	NodeLocal bool
	// KubeletConfig reports whether kubeadm's kube-system/kubelet-config was read; the
	// two fields below come from it.
	KubeletConfig bool
	// ClusterDomain is the kubelets' clusterDomain.
	ClusterDomain string
	// ClusterDNS is the kubelets' clusterDNS: the resolvers pods, and so lab VMs, are given.
	ClusterDNS []netip.Addr
}

// LabNetwork is a lab's own ranges and tunnel port, from a template or the defaults.
type LabNetwork struct {
	// Source says where the values came from ("the defaults" or a template).
	Source string
	// PodCIDR and ServiceCIDR are the lab cluster's ranges.
	PodCIDR, ServiceCIDR netip.Prefix
	// TunnelPort is the UDP port of the lab CNI's VXLAN tunnel.
	TunnelPort int
	// Bandwidth reports whether the lab sets bandwidth annotations (unknown without a
	// template: then the CNI check speaks of labs that set them).
	Bandwidth *bool
}

// The lab network's defaults, as the LabTemplate CRD sets them (api/v1alpha1
// labtemplate_types.go, decision 4).
const (
	DefaultLabPodCIDR     = "10.200.0.0/16"
	DefaultLabServiceCIDR = "10.201.0.0/16"
	DefaultLabTunnelPort  = 8475
)

// DefaultLabNetwork is the network of a template that sets none.
func DefaultLabNetwork() LabNetwork {
	return LabNetwork{
		Source:      "the template defaults",
		PodCIDR:     netip.MustParsePrefix(DefaultLabPodCIDR),
		ServiceCIDR: netip.MustParsePrefix(DefaultLabServiceCIDR),
		TunnelPort:  DefaultLabTunnelPort,
	}
}

// Check runs every check over facts, in checklist order.
func Check(f Facts) Report {
	var r Report
	r = append(r, checkKubeVirt(f.KubeVirt)...)
	r = append(r, checkVirtualization(f.KubeVirt, f.Host))
	r = append(r, checkPodRanges(f.Host, f.CNI))
	r = append(r, checkServiceRanges(f.Host))
	r = append(r, checkNodeAddresses(f.Host))
	r = append(r, checkNodePorts(f.NodePorts))
	r = append(r, checkLabRanges(f.Lab, f.Host, f.CNI)...)
	r = append(r, checkDNS(f.DNS))
	r = append(r, checkCNI(f.CNI, f.Lab)...)
	return r
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}
