package hostcluster

import (
	"flag"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Flags binds a Config to a flag set; call Build after parsing. No flag has a default
// that describes a particular host: what the API cannot say, the admin must.
type Flags struct {
	podCIDRs, serviceCIDRs, nodeCIDRs, publicAddress, nodeAddressType, clusterDomain, dnsAddresses string
}

// Bind registers the flags on fs.
func (f *Flags) Bind(fs *flag.FlagSet) {
	fs.StringVar(&f.podCIDRs, strings.TrimPrefix(FlagPodCIDRs, "--"), "", "Comma-separated pod ranges of the host cluster, besides the Nodes' spec.podCIDRs; labs may neither use nor reach them. Required where the CNI allocates pod addresses itself (Calico, Cilium cluster-pool).")
	fs.StringVar(&f.serviceCIDRs, strings.TrimPrefix(FlagServiceCIDRs, "--"), "", "Comma-separated service ranges of the host cluster, besides its ServiceCIDR objects; labs may neither use nor reach them. Required where the API server serves no networking.k8s.io/v1 ServiceCIDR.")
	fs.StringVar(&f.nodeCIDRs, strings.TrimPrefix(FlagNodeCIDRs, "--"), "", "Comma-separated ranges of node addresses labs may not reach, besides every Node's own addresses.")
	fs.StringVar(&f.publicAddress, strings.TrimPrefix(FlagPublicAddress, "--"), "", "One address (IP or DNS name) students reach every lab's NodePorts on, where the admin runs a single entry point. Empty: the address of the node running the lab's control plane.")
	fs.StringVar(&f.nodeAddressType, strings.TrimPrefix(FlagNodeAddressType, "--"), string(DefaultNodeAddressType), "Type of Node address students connect to when --host-public-address is empty: InternalIP, ExternalIP, InternalDNS, ExternalDNS or Hostname.")
	fs.StringVar(&f.clusterDomain, strings.TrimPrefix(FlagClusterDomain, "--"), DefaultClusterDomain, "DNS domain of the host cluster (its kubelets' --cluster-domain); lab API names are fully qualified with it.")
	fs.StringVar(&f.dnsAddresses, strings.TrimPrefix(FlagDNSAddresses, "--"), "", "Comma-separated host DNS servers labs may query besides the kube-dns pods, such as NodeLocal DNSCache's 169.254.20.10.")
}

// Build returns the Config the parsed flags describe.
func (f *Flags) Build() (Config, error) {
	var c Config
	var err error
	if c.PodCIDRs, err = parsePrefixes(f.podCIDRs); err != nil {
		return Config{}, fmt.Errorf("%s: %w", FlagPodCIDRs, err)
	}
	if c.ServiceCIDRs, err = parsePrefixes(f.serviceCIDRs); err != nil {
		return Config{}, fmt.Errorf("%s: %w", FlagServiceCIDRs, err)
	}
	if c.NodeCIDRs, err = parsePrefixes(f.nodeCIDRs); err != nil {
		return Config{}, fmt.Errorf("%s: %w", FlagNodeCIDRs, err)
	}
	if c.DNSAddresses, err = parseAddrs(f.dnsAddresses); err != nil {
		return Config{}, fmt.Errorf("%s: %w", FlagDNSAddresses, err)
	}
	c.PublicAddress = strings.TrimSpace(f.publicAddress)
	c.NodeAddressType = corev1.NodeAddressType(strings.TrimSpace(f.nodeAddressType))
	c.ClusterDomain = strings.TrimSuffix(strings.TrimSpace(f.clusterDomain), ".")
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
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
	return out, nil
}

func parseAddrs(list string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}
