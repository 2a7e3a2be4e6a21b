// Package hostcluster holds what the operator must know about the cluster it runs on and
// cannot read from the API: its pod and service ranges (labs must not overlap them, and
// lab egress must not reach them) and the public address students connect to.
package hostcluster

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"
)

// Defaults match a kubeadm-built host cluster with Calico/Flannel-style pod ranges.
const (
	DefaultPodCIDRs      = "10.244.0.0/16"
	DefaultServiceCIDRs  = "10.96.0.0/12"
	DefaultPublicAddress = "127.0.0.1"
)

// Network describes the host cluster's address ranges and public address.
type Network struct {
	// PodCIDRs are the host cluster's pod ranges.
	PodCIDRs []netip.Prefix
	// ServiceCIDRs are the host cluster's service ranges.
	ServiceCIDRs []netip.Prefix
	// PublicAddress is the address (IP or DNS name) students reach NodePorts on.
	PublicAddress string
	// NodeCIDRs are the ranges of the host cluster's node addresses (optional): labs may
	// not reach them, which keeps them off the kubelets and the host API server.
	NodeCIDRs []netip.Prefix
}

// Default returns the Network the flags default to.
func Default() Network {
	n, err := Parse(DefaultPodCIDRs, DefaultServiceCIDRs, DefaultPublicAddress)
	if err != nil {
		panic(err) // the defaults are constants
	}
	return n
}

// Parse builds a Network from comma-separated CIDR lists and an address.
func Parse(podCIDRs, serviceCIDRs, publicAddress string) (Network, error) {
	pods, err := parsePrefixes(podCIDRs)
	if err != nil {
		return Network{}, fmt.Errorf("host pod CIDRs: %w", err)
	}
	services, err := parsePrefixes(serviceCIDRs)
	if err != nil {
		return Network{}, fmt.Errorf("host service CIDRs: %w", err)
	}
	if strings.TrimSpace(publicAddress) == "" {
		return Network{}, fmt.Errorf("host public address must not be empty")
	}
	return Network{PodCIDRs: pods, ServiceCIDRs: services, PublicAddress: strings.TrimSpace(publicAddress)}, nil
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

// Flags binds the Network's settings to a flag set; call Build after parsing.
type Flags struct {
	podCIDRs, serviceCIDRs, nodeCIDRs, publicAddress string
}

// Bind registers the flags on fs.
func (f *Flags) Bind(fs *flag.FlagSet) {
	fs.StringVar(&f.podCIDRs, "host-pod-cidrs", DefaultPodCIDRs, "Comma-separated pod ranges of the host cluster; labs may neither use nor reach them.")
	fs.StringVar(&f.serviceCIDRs, "host-service-cidrs", DefaultServiceCIDRs, "Comma-separated service ranges of the host cluster; labs may neither use nor reach them.")
	fs.StringVar(&f.nodeCIDRs, "host-node-cidrs", "", "Comma-separated ranges of the host cluster's node addresses; labs may not reach them. Set it in production.")
	fs.StringVar(&f.publicAddress, "host-public-address", DefaultPublicAddress, "Address students reach the host cluster's NodePorts on (IP or DNS name).")
}

// Build returns the Network the parsed flags describe.
func (f *Flags) Build() (Network, error) {
	n, err := Parse(f.podCIDRs, f.serviceCIDRs, f.publicAddress)
	if err != nil || strings.TrimSpace(f.nodeCIDRs) == "" {
		return n, err
	}
	if n.NodeCIDRs, err = parsePrefixes(f.nodeCIDRs); err != nil {
		return Network{}, fmt.Errorf("host node CIDRs: %w", err)
	}
	return n, nil
}

func parsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("at least one CIDR is required")
	}
	return out, nil
}
