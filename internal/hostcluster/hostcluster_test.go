package hostcluster

import (
	"flag"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var prefixEq = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })
var addrEq = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func node(name string, podCIDRs []string, addrs ...corev1.NodeAddress) corev1.Node {
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDRs: podCIDRs},
		Status:     corev1.NodeStatus{Addresses: addrs},
	}
}

func internal(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a}
}
func external(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: a}
}

func serviceCIDR(name string, cidrs ...string) networkingv1.ServiceCIDR {
	return networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: cidrs}}
}

func TestCollapse(t *testing.T) {
	tests := map[string]struct{ in, want []string }{
		"none":                     {},
		"duplicates and unmasked":  {in: []string{"10.244.1.7/24", "10.244.1.0/24"}, want: []string{"10.244.1.0/24"}},
		"node ranges in a cluster": {in: []string{"10.244.2.0/24", "10.244.0.0/16", "10.244.1.0/24"}, want: []string{"10.244.0.0/16"}},
		"siblings stay":            {in: []string{"10.244.1.0/24", "10.244.0.0/24"}, want: []string{"10.244.0.0/24", "10.244.1.0/24"}},
		"families apart":           {in: []string{"fd00::/64", "10.0.0.0/8", "fd00::/48", "192.168.0.1/32"}, want: []string{"10.0.0.0/8", "192.168.0.1/32", "fd00::/48"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(prefixes(tc.want...), Collapse(prefixes(tc.in...)), prefixEq); diff != "" {
				t.Errorf("Collapse (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFactsFrom(t *testing.T) {
	nodes := []corev1.Node{
		node("worker-b", []string{"10.244.2.0/24", "fd00:10:244:2::/64"}, internal("192.168.1.12"), external("203.0.113.12")),
		node("worker-a", nil, internal("192.168.1.11")),
		{ObjectMeta: metav1.ObjectMeta{Name: "legacy"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.3.0/24"}},
	}
	nodes[1].Spec.PodCIDRs = []string{"10.244.1.0/24"}
	got := FactsFrom(nodes, []networkingv1.ServiceCIDR{serviceCIDR("kubernetes", "10.96.0.0/16"), serviceCIDR("extra", "10.97.0.0/16", "fd00:10:96::/108")}, true, nil)
	want := Facts{
		PodCIDRs:       prefixes("10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24", "fd00:10:244:2::/64"),
		ServiceCIDRAPI: true,
		ServiceCIDRs:   prefixes("10.96.0.0/16", "10.97.0.0/16", "fd00:10:96::/108"),
		Nodes: []Node{
			{Name: "legacy"},
			{Name: "worker-a", Addresses: []corev1.NodeAddress{internal("192.168.1.11")}},
			{Name: "worker-b", Addresses: []corev1.NodeAddress{internal("192.168.1.12"), external("203.0.113.12")}},
		},
	}
	if diff := cmp.Diff(want, got, prefixEq, addrEq); diff != "" {
		t.Errorf("FactsFrom (-want +got):\n%s", diff)
	}
}

func TestNetwork(t *testing.T) {
	twoNodes := FactsFrom([]corev1.Node{
		node("n1", []string{"10.244.1.0/24"}, internal("192.168.1.11"), external("203.0.113.11"), corev1.NodeAddress{Type: corev1.NodeHostName, Address: "n1"}),
		node("n2", []string{"10.244.2.0/24"}, internal("192.168.1.12")),
	}, []networkingv1.ServiceCIDR{serviceCIDR("kubernetes", "10.96.0.0/16")}, true, nil)
	noServiceCIDRAPI := twoNodes
	noServiceCIDRAPI.ServiceCIDRAPI, noServiceCIDRAPI.ServiceCIDRs = false, nil
	noServiceCIDRAPI.KubernetesServiceIPs = []netip.Addr{netip.MustParseAddr("10.96.0.1")}
	calico := twoNodes // a CNI with its own IPAM: the Nodes carry no podCIDRs
	calico.PodCIDRs = nil

	tests := map[string]struct {
		config  Config
		facts   Facts
		want    Network
		wantErr []string
	}{
		"everything discovered": {
			facts: twoNodes,
			want: Network{
				PodCIDRs: prefixes("10.244.1.0/24", "10.244.2.0/24"), ServiceCIDRs: prefixes("10.96.0.0/16"),
				NodeCIDRs:       prefixes("192.168.1.11/32", "192.168.1.12/32", "203.0.113.11/32"),
				NodeAddressType: corev1.NodeInternalIP, NodeAddresses: map[string]string{"n1": "192.168.1.11", "n2": "192.168.1.12"},
				ClusterDomain: "cluster.local",
			},
		},
		"flags add and subsume": {
			config: Config{
				PodCIDRs: prefixes("10.244.0.0/16"), ServiceCIDRs: prefixes("10.100.0.0/16"), NodeCIDRs: prefixes("192.168.1.0/24"),
				NodeAddressType: corev1.NodeExternalIP, ClusterDomain: "labs.internal",
				DNSAddresses: []netip.Addr{netip.MustParseAddr("169.254.20.10")},
			},
			facts: twoNodes,
			want: Network{
				PodCIDRs: prefixes("10.244.0.0/16"), ServiceCIDRs: prefixes("10.96.0.0/16", "10.100.0.0/16"),
				NodeCIDRs:       prefixes("192.168.1.0/24", "203.0.113.11/32"),
				NodeAddressType: corev1.NodeExternalIP, NodeAddresses: map[string]string{"n1": "203.0.113.11"},
				ClusterDomain: "labs.internal", DNSAddresses: []netip.Addr{netip.MustParseAddr("169.254.20.10")},
			},
		},
		"a public address needs no node address": {
			config: Config{PublicAddress: "labs.example.com", NodeAddressType: corev1.NodeExternalDNS},
			facts:  twoNodes,
			want: Network{
				PodCIDRs: prefixes("10.244.1.0/24", "10.244.2.0/24"), ServiceCIDRs: prefixes("10.96.0.0/16"),
				NodeCIDRs:     prefixes("192.168.1.11/32", "192.168.1.12/32", "203.0.113.11/32"),
				PublicAddress: "labs.example.com", NodeAddressType: corev1.NodeExternalDNS, NodeAddresses: map[string]string{},
				ClusterDomain: "cluster.local",
			},
		},
		"no ServiceCIDR API: the flag is checked against the kubernetes Service": {
			config: Config{ServiceCIDRs: prefixes("10.96.0.0/12")},
			facts:  noServiceCIDRAPI,
			want: Network{
				PodCIDRs: prefixes("10.244.1.0/24", "10.244.2.0/24"), ServiceCIDRs: prefixes("10.96.0.0/12"),
				NodeCIDRs:       prefixes("192.168.1.11/32", "192.168.1.12/32", "203.0.113.11/32"),
				NodeAddressType: corev1.NodeInternalIP, NodeAddresses: map[string]string{"n1": "192.168.1.11", "n2": "192.168.1.12"},
				ClusterDomain: "cluster.local",
			},
		},
		"no ServiceCIDR API and no flag": {
			facts:   noServiceCIDRAPI,
			wantErr: []string{"the host's service ranges are unknown: the API server does not serve networking.k8s.io/v1 ServiceCIDR (Kubernetes before v1.33, or the API turned off) and Service default/kubernetes's address 10.96.0.1 does not say how wide the range is; set --host-service-cidrs to kube-apiserver's --service-cluster-ip-range"},
		},
		"a service flag that misses the kubernetes Service": {
			config:  Config{ServiceCIDRs: prefixes("10.100.0.0/16")},
			facts:   noServiceCIDRAPI,
			wantErr: []string{"--host-service-cidrs 10.100.0.0/16 does not hold 10.96.0.1, the address of Service default/kubernetes: it is not the host's service range"},
		},
		"nothing known": {
			facts: Facts{ServiceCIDRAPI: true},
			wantErr: []string{
				"the host's pod ranges are unknown: no Node has spec.podCIDRs (a CNI with its own IPAM, such as Calico or Cilium's cluster-pool, does not use them); set --host-pod-cidrs",
				"the host's service ranges are unknown: no ServiceCIDR object exists; set --host-service-cidrs",
				"students could not be given an address: --host-public-address is not set and no Node has an address of type InternalIP (--node-address-type)",
			},
		},
		"pods from a CNI with its own IPAM": {
			facts:   calico,
			wantErr: []string{"the host's pod ranges are unknown: no Node has spec.podCIDRs (a CNI with its own IPAM, such as Calico or Cilium's cluster-pool, does not use them); set --host-pod-cidrs"},
		},
		"no node has the address type": {
			config:  Config{NodeAddressType: corev1.NodeExternalDNS},
			facts:   twoNodes,
			wantErr: []string{"students could not be given an address: --host-public-address is not set and no Node has an address of type ExternalDNS (--node-address-type)"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := tc.config.Network(tc.facts)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("Network() = %+v, want an error", got)
				}
				if diff := cmp.Diff(tc.wantErr, strings.Split(err.Error(), "\n")); diff != "" {
					t.Errorf("error (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, prefixEq, addrEq); diff != "" {
				t.Errorf("Network() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStudentAddress(t *testing.T) {
	n := Network{NodeAddresses: map[string]string{"n1": "192.168.1.11"}}
	for _, tc := range []struct {
		network Network
		node    string
		want    string
		ok      bool
	}{
		{network: n, node: "n1", want: "192.168.1.11", ok: true},
		{network: n, node: "n2"},
		{network: n, node: ""},
		{network: Network{PublicAddress: "labs.example.com"}, node: "n2", want: "labs.example.com", ok: true},
	} {
		if got, ok := tc.network.StudentAddress(tc.node); got != tc.want || ok != tc.ok {
			t.Errorf("StudentAddress(%q) = %q, %v; want %q, %v", tc.node, got, ok, tc.want, tc.ok)
		}
	}
}

func TestFlags(t *testing.T) {
	tests := map[string]struct {
		args    []string
		want    Config
		wantErr string
	}{
		// No flag describes a particular host by default.
		"defaults": {want: Config{NodeAddressType: corev1.NodeInternalIP, ClusterDomain: "cluster.local"}},
		"lists are trimmed and masked": {
			args: []string{"--host-pod-cidrs= 10.42.1.0/16 , fd00::/48", "--host-service-cidrs=10.43.0.0/16", "--host-public-address= labs.example.com ",
				"--node-address-type=ExternalIP", "--cluster-domain=labs.internal.", "--host-dns-addresses=169.254.20.10"},
			want: Config{
				PodCIDRs: prefixes("10.42.0.0/16", "fd00::/48"), ServiceCIDRs: prefixes("10.43.0.0/16"), PublicAddress: "labs.example.com",
				NodeAddressType: corev1.NodeExternalIP, ClusterDomain: "labs.internal", DNSAddresses: []netip.Addr{netip.MustParseAddr("169.254.20.10")},
			},
		},
		"bad pod CIDR":       {args: []string{"--host-pod-cidrs=10.0.0.0/33"}, wantErr: `--host-pod-cidrs: netip.ParsePrefix("10.0.0.0/33"): prefix length out of range`},
		"bad DNS address":    {args: []string{"--host-dns-addresses=169.254.20.10/32"}, wantErr: `--host-dns-addresses: ParseAddr("169.254.20.10/32"): unexpected character (at "/32")`},
		"bad address type":   {args: []string{"--node-address-type=PublicIP"}, wantErr: `--node-address-type "PublicIP" is not one of [InternalIP ExternalIP InternalDNS ExternalDNS Hostname]`},
		"bad public address": {args: []string{"--host-public-address=lab host"}, wantErr: `--host-public-address "lab host" is neither an IP address nor a DNS name`},
		"bad cluster domain": {args: []string{"--cluster-domain=Cluster_Local"}, wantErr: `--cluster-domain "Cluster_Local" is not a DNS name`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			var f Flags
			f.Bind(fs)
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			got, err := f.Build()
			if tc.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
					t.Fatalf("Build() error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, prefixEq, addrEq); diff != "" {
				t.Errorf("Build() (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOverlapping(t *testing.T) {
	n := Network{PodCIDRs: prefixes("10.244.0.0/16"), ServiceCIDRs: prefixes("10.96.0.0/12")}
	tests := map[string]struct {
		prefix string
		want   []string
	}{
		"lab default pods":    {prefix: "10.200.0.0/16"},
		"inside host pods":    {prefix: "10.244.5.0/24", want: []string{"10.244.0.0/16"}},
		"covers host service": {prefix: "10.0.0.0/8", want: []string{"10.244.0.0/16", "10.96.0.0/12"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, p := range n.Overlapping(netip.MustParsePrefix(tc.prefix)) {
				got = append(got, p.String())
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Overlapping(%s) mismatch (-want +got):\n%s", tc.prefix, diff)
			}
		})
	}
}
