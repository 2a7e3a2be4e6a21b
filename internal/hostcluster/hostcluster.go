// Package hostcluster holds what the operator knows of the cluster it runs on: its pod
// and service ranges (labs must not overlap them, and lab egress must not reach them), its
// nodes' addresses (labs must not reach them; students reach their lab's NodePorts on
// one), its DNS, and where students connect. Most of it is discovered from the host's
// API (Discover, Host); the admin's flags (Config) add to it and fill what the API cannot
// say. The operator refuses to start when neither says enough (Config.Network).
package hostcluster

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/labforge/labforge/internal/lab"
)

// DefaultClusterDomain is the DNS domain of a kubeadm-built host cluster (its kubelets'
// --cluster-domain).
const DefaultClusterDomain = lab.DefaultClusterDomain

// DefaultNodeAddressType is the type of Node address students reach NodePorts on when no
// public address is set.
const DefaultNodeAddressType = corev1.NodeInternalIP

// Config is what the admin says about the host (the operator's flags). Everything in it
// adds to what discovery finds; none of it has a default that could be silently wrong.
type Config struct {
	// PodCIDRs are pod ranges besides the Nodes' spec.podCIDRs (--host-pod-cidrs).
	PodCIDRs []netip.Prefix
	// ServiceCIDRs are service ranges besides the ServiceCIDR objects'
	// (--host-service-cidrs); required where the API server serves no ServiceCIDR.
	ServiceCIDRs []netip.Prefix
	// NodeCIDRs are ranges of node addresses labs may not reach, besides every Node's own
	// addresses (--host-node-cidrs).
	NodeCIDRs []netip.Prefix
	// PublicAddress, when set, is the one address (IP or DNS name) students reach every
	// lab's NodePorts on: an entry point the admin runs (--host-public-address). Empty
	// means the address of the node running the lab's control plane.
	PublicAddress string
	// NodeAddressType is the type of Node address students connect to when PublicAddress
	// is empty (--node-address-type); DefaultNodeAddressType if empty.
	NodeAddressType corev1.NodeAddressType
	// ClusterDomain is the host cluster's DNS domain (--cluster-domain);
	// DefaultClusterDomain if empty.
	ClusterDomain string
	// DNSAddresses are host DNS servers outside the kube-dns pods that labs may query on
	// port 53, such as NodeLocal DNSCache's 169.254.20.10 (--host-dns-addresses).
	DNSAddresses []netip.Addr
}

// Network is what the operator acts on: the host's facts and the admin's flags together.
// The renderers and controllers read it; Host keeps it current.
type Network struct {
	// PodCIDRs are the host cluster's pod ranges.
	PodCIDRs []netip.Prefix
	// ServiceCIDRs are the host cluster's service ranges.
	ServiceCIDRs []netip.Prefix
	// NodeCIDRs are the ranges of the host's node addresses: every Node's addresses (as
	// single-address prefixes) and the admin's --host-node-cidrs, collapsed. Labs may not
	// reach them, which keeps them off the kubelets and the host API server.
	NodeCIDRs []netip.Prefix
	// PublicAddress is where students reach every lab's NodePorts; empty means the node
	// running the lab's control plane (NodeAddresses).
	PublicAddress string
	// NodeAddressType is the type of Node address in NodeAddresses.
	NodeAddressType corev1.NodeAddressType
	// NodeAddresses maps each Node's name to its address of NodeAddressType; a Node
	// without one is absent.
	NodeAddresses map[string]string
	// ClusterDomain is the host cluster's DNS domain.
	ClusterDomain string
	// DNSAddresses are the host DNS servers labs may query besides the kube-dns pods.
	DNSAddresses []netip.Addr
}

// Ranges returns the pod and service ranges together.
func (n Network) Ranges() []netip.Prefix {
	out := make([]netip.Prefix, 0, len(n.PodCIDRs)+len(n.ServiceCIDRs))
	out = append(out, n.PodCIDRs...)
	return append(out, n.ServiceCIDRs...)
}

// Overlapping returns the host ranges that overlap p.
func (n Network) Overlapping(p netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, r := range n.Ranges() {
		if r.Overlaps(p) {
			out = append(out, r)
		}
	}
	return out
}

// StudentAddress returns where a student reaches the NodePorts of a lab whose control
// plane runs on the Node named node: the public address when one is set, else that
// node's address of NodeAddressType. It is false when neither is known.
func (n Network) StudentAddress(node string) (string, bool) {
	if n.PublicAddress != "" {
		return n.PublicAddress, true
	}
	a, ok := n.NodeAddresses[node]
	return a, ok
}

// SamePolicies says whether labs' NetworkPolicies rendered from n and o are the same:
// they depend on the ranges and the DNS addresses only.
func (n Network) SamePolicies(o Network) bool {
	return slices.Equal(n.PodCIDRs, o.PodCIDRs) && slices.Equal(n.ServiceCIDRs, o.ServiceCIDRs) &&
		slices.Equal(n.NodeCIDRs, o.NodeCIDRs) && slices.Equal(n.DNSAddresses, o.DNSAddresses)
}

// SameAddresses says whether every lab's student address is the same under n and o.
func (n Network) SameAddresses(o Network) bool {
	return n.PublicAddress == o.PublicAddress && maps.Equal(n.NodeAddresses, o.NodeAddresses)
}

// Flag names, for the messages that tell the admin which one to set.
const (
	FlagPodCIDRs        = "--host-pod-cidrs"
	FlagServiceCIDRs    = "--host-service-cidrs"
	FlagNodeCIDRs       = "--host-node-cidrs"
	FlagPublicAddress   = "--host-public-address"
	FlagNodeAddressType = "--node-address-type"
	FlagClusterDomain   = "--cluster-domain"
	FlagDNSAddresses    = "--host-dns-addresses"
)

// Network returns the network the facts and c describe together, or an error naming
// the flag to set when they do not say enough: no pod range, no service range (or a
// --host-service-cidrs that does not hold the kubernetes Service's address), or no way to
// give students an address (neither a public address nor any Node with an address of the
// chosen type).
func (c Config) Network(f Facts) (Network, error) {
	n := Network{
		PodCIDRs:        Collapse(append(slices.Clone(c.PodCIDRs), f.PodCIDRs...)),
		ServiceCIDRs:    Collapse(append(slices.Clone(c.ServiceCIDRs), f.ServiceCIDRs...)),
		PublicAddress:   c.PublicAddress,
		NodeAddressType: c.NodeAddressType,
		ClusterDomain:   c.ClusterDomain,
		DNSAddresses:    slices.Clone(c.DNSAddresses),
		NodeAddresses:   map[string]string{},
	}
	if n.NodeAddressType == "" {
		n.NodeAddressType = DefaultNodeAddressType
	}
	if n.ClusterDomain == "" {
		n.ClusterDomain = DefaultClusterDomain
	}
	nodeCIDRs := slices.Clone(c.NodeCIDRs)
	for _, node := range f.Nodes {
		for _, a := range node.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				ip = ip.Unmap()
				nodeCIDRs = append(nodeCIDRs, netip.PrefixFrom(ip, ip.BitLen()))
			}
		}
		if a, ok := node.Address(n.NodeAddressType); ok {
			n.NodeAddresses[node.Name] = a
		}
	}
	n.NodeCIDRs = Collapse(nodeCIDRs)

	var errs []error
	if len(n.PodCIDRs) == 0 {
		errs = append(errs, fmt.Errorf("the host's pod ranges are unknown: no Node has spec.podCIDRs (a CNI with its own IPAM, such as Calico or Cilium's cluster-pool, does not use them); set %s", FlagPodCIDRs))
	}
	switch {
	case !f.ServiceCIDRAPI && len(c.ServiceCIDRs) == 0:
		errs = append(errs, fmt.Errorf("the host's service ranges are unknown: the API server does not serve networking.k8s.io/v1 ServiceCIDR (Kubernetes before v1.33, or the API turned off)%s; set %s to kube-apiserver's --service-cluster-ip-range", kubernetesServiceHint(f), FlagServiceCIDRs))
	case len(n.ServiceCIDRs) == 0:
		errs = append(errs, fmt.Errorf("the host's service ranges are unknown: no ServiceCIDR object exists; set %s", FlagServiceCIDRs))
	}
	for _, ip := range f.KubernetesServiceIPs {
		if !containsAddr(n.ServiceCIDRs, ip) && len(n.ServiceCIDRs) > 0 {
			errs = append(errs, fmt.Errorf("%s %s does not hold %s, the address of Service %s: it is not the host's service range", FlagServiceCIDRs, prefixList(c.ServiceCIDRs), ip, KubernetesService))
		}
	}
	if n.PublicAddress == "" && len(n.NodeAddresses) == 0 {
		errs = append(errs, fmt.Errorf("students could not be given an address: %s is not set and no Node has an address of type %s (%s)", FlagPublicAddress, n.NodeAddressType, FlagNodeAddressType))
	}
	if err := errors.Join(errs...); err != nil {
		return Network{}, err
	}
	return n, nil
}

func kubernetesServiceHint(f Facts) string {
	if len(f.KubernetesServiceIPs) == 0 {
		return ""
	}
	return fmt.Sprintf(" and Service %s's address %s does not say how wide the range is", KubernetesService, f.KubernetesServiceIPs[0])
}

func containsAddr(ranges []netip.Prefix, ip netip.Addr) bool {
	for _, r := range ranges {
		if r.Contains(ip.Unmap()) {
			return true
		}
	}
	return false
}

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// ValidNodeAddressTypes are the Node address types --node-address-type accepts.
var ValidNodeAddressTypes = []corev1.NodeAddressType{
	corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeInternalDNS, corev1.NodeExternalDNS, corev1.NodeHostName,
}

// Validate checks what can be checked of c without the host's facts.
func (c Config) Validate() error {
	var errs []error
	if c.PublicAddress != "" {
		if _, err := netip.ParseAddr(c.PublicAddress); err != nil {
			if msgs := validation.IsDNS1123Subdomain(c.PublicAddress); len(msgs) > 0 {
				errs = append(errs, fmt.Errorf("%s %q is neither an IP address nor a DNS name: %s", FlagPublicAddress, c.PublicAddress, strings.Join(msgs, "; ")))
			}
		}
	}
	if c.NodeAddressType != "" && !slices.Contains(ValidNodeAddressTypes, c.NodeAddressType) {
		errs = append(errs, fmt.Errorf("%s %q is not one of %v", FlagNodeAddressType, c.NodeAddressType, ValidNodeAddressTypes))
	}
	if c.ClusterDomain != "" {
		if msgs := validation.IsDNS1123Subdomain(c.ClusterDomain); len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("%s %q is not a DNS name: %s", FlagClusterDomain, c.ClusterDomain, strings.Join(msgs, "; ")))
		}
	}
	return errors.Join(errs...)
}
