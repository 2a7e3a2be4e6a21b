package hostcluster

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Facts is what the host cluster's API says about its network.
type Facts struct {
	// PodCIDRs are the Nodes' spec.podCIDRs, collapsed (a range inside another is dropped).
	// A CNI that allocates pod addresses itself (Calico's IPAM, Cilium's cluster-pool)
	// leaves them empty or unused: then only --host-pod-cidrs knows them.
	PodCIDRs []netip.Prefix
	// ServiceCIDRAPI says whether the API server serves networking.k8s.io/v1 ServiceCIDR
	// (Kubernetes v1.33 and later, on by default).
	ServiceCIDRAPI bool
	// ServiceCIDRs are the ranges of every ServiceCIDR object (the API server's own
	// "kubernetes" one included), collapsed. Empty when ServiceCIDRAPI is false.
	ServiceCIDRs []netip.Prefix
	// KubernetesServiceIPs are the cluster IPs of the default/kubernetes Service, read
	// only where ServiceCIDRAPI is false: they lie in the service range but do not say
	// how wide it is, so they only check the range the admin gives.
	KubernetesServiceIPs []netip.Addr
	// Nodes are the host's Nodes, by name, with their addresses.
	Nodes []Node
}

// Node is what labforge keeps of one host Node.
type Node struct {
	Name      string
	Addresses []corev1.NodeAddress
}

// Address returns the node's first address of type t.
func (n Node) Address(t corev1.NodeAddressType) (string, bool) {
	for _, a := range n.Addresses {
		if a.Type == t && a.Address != "" {
			return a.Address, true
		}
	}
	return "", false
}

// KubernetesService is the Service every API server makes for itself; its cluster IP is
// the first address of the (first) service range.
var KubernetesService = client.ObjectKey{Namespace: "default", Name: "kubernetes"}

// Discover reads the host's Nodes and ServiceCIDRs (or, where the ServiceCIDR API is not
// served, the kubernetes Service) through r and returns what they say. It needs get and
// list on nodes and servicecidrs.networking.k8s.io, and get on the default/kubernetes
// Service where ServiceCIDR is absent. It never fails for want of facts: Config.Network
// decides whether what it found, with the flags, is enough.
func Discover(ctx context.Context, r client.Reader) (Facts, error) {
	var nodes corev1.NodeList
	if err := r.List(ctx, &nodes); err != nil {
		return Facts{}, fmt.Errorf("listing the host's Nodes: %w", err)
	}
	var cidrs networkingv1.ServiceCIDRList
	err := r.List(ctx, &cidrs)
	switch {
	case err == nil:
		return FactsFrom(nodes.Items, cidrs.Items, true, nil), nil
	case !serviceCIDRAbsent(err):
		return Facts{}, fmt.Errorf("listing the host's ServiceCIDRs: %w", err)
	}
	svc := &corev1.Service{}
	if err := r.Get(ctx, KubernetesService, svc); err != nil && !apierrors.IsNotFound(err) {
		return Facts{}, fmt.Errorf("reading Service %s: %w", KubernetesService, err)
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	return FactsFrom(nodes.Items, nil, false, ips), nil
}

// serviceCIDRAbsent says whether err means the API server does not serve
// networking.k8s.io/v1 ServiceCIDR: the REST mapper finds no such kind, or the API
// server answers 404 for the resource.
func serviceCIDRAbsent(err error) bool {
	return meta.IsNoMatchError(err) || apierrors.IsNotFound(err)
}

// FactsFrom returns the facts of the given Nodes and ServiceCIDRs (serviceCIDRAPI says
// whether the API serves them) and, where it does not, the kubernetes Service's cluster
// IPs. Values that do not parse are skipped: they are the API server's, validated there.
func FactsFrom(nodes []corev1.Node, cidrs []networkingv1.ServiceCIDR, serviceCIDRAPI bool, kubernetesServiceIPs []string) Facts {
	f := Facts{ServiceCIDRAPI: serviceCIDRAPI}
	var pods, services []netip.Prefix
	for i := range nodes {
		n := &nodes[i]
		ranges := n.Spec.PodCIDRs
		if len(ranges) == 0 && n.Spec.PodCIDR != "" {
			ranges = []string{n.Spec.PodCIDR}
		}
		pods = appendPrefixes(pods, ranges)
		f.Nodes = append(f.Nodes, Node{Name: n.Name, Addresses: slices.Clone(n.Status.Addresses)})
	}
	for i := range cidrs {
		services = appendPrefixes(services, cidrs[i].Spec.CIDRs)
	}
	for _, s := range kubernetesServiceIPs {
		if a, err := netip.ParseAddr(s); err == nil {
			f.KubernetesServiceIPs = append(f.KubernetesServiceIPs, a)
		}
	}
	sort.Slice(f.Nodes, func(i, j int) bool { return f.Nodes[i].Name < f.Nodes[j].Name })
	f.PodCIDRs, f.ServiceCIDRs = Collapse(pods), Collapse(services)
	return f
}

func appendPrefixes(out []netip.Prefix, list []string) []netip.Prefix {
	for _, s := range list {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Collapse returns the prefixes sorted (IPv4 first, then by address and length), with
// duplicates and every prefix that lies inside another dropped. The result is nil when
// there are none.
func Collapse(in []netip.Prefix) []netip.Prefix {
	sorted := make([]netip.Prefix, 0, len(in))
	for _, p := range in {
		if p.IsValid() {
			sorted = append(sorted, p.Masked())
		}
	}
	// Wider first among prefixes of one address, so that a range comes before those it holds.
	sort.Slice(sorted, func(i, j int) bool {
		if c := sorted[i].Addr().Compare(sorted[j].Addr()); c != 0 {
			return c < 0
		}
		return sorted[i].Bits() < sorted[j].Bits()
	})
	var out []netip.Prefix
	for _, p := range sorted {
		if n := len(out); n > 0 && out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue
		}
		out = append(out, p)
	}
	return out
}
