package preflight

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

func prefixes(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// kubeadmHost is a two-node kubeadm host with Flannel-style node ranges.
func kubeadmHost() HostRanges {
	return HostRanges{
		Nodes: []Node{
			{Name: "node-a", PodCIDRs: prefixes("10.244.0.0/24"), InternalIPs: addrs("192.168.1.10"), ExternalIPs: addrs("203.0.113.10")},
			{Name: "node-b", PodCIDRs: prefixes("10.244.1.0/24"), InternalIPs: addrs("192.168.1.11")},
		},
		ServiceCIDRs:        prefixes("10.96.0.0/12"),
		ServiceCIDRNames:    []string{"kubernetes"},
		KubernetesServiceIP: netip.MustParseAddr("10.96.0.1"),
	}
}

func TestCheckPodRanges(t *testing.T) {
	noCIDRs := HostRanges{Nodes: []Node{{Name: "a"}, {Name: "b"}}}
	partial := HostRanges{Nodes: []Node{{Name: "a", PodCIDRs: prefixes("10.244.0.0/24")}, {Name: "b"}}}
	tests := map[string]struct {
		host HostRanges
		cni  CNIFacts
		want Result
	}{
		"every node has a range": {kubeadmHost(), CNIFacts{}, Result{OK, "Host pod ranges", "10.244.0.0/24, 10.244.1.0/24 from spec.podCIDRs of 2 Nodes.", ""}},
		"no node has one": {noCIDRs, CNIFacts{}, Result{Warn, "Host pod ranges",
			"no Node has spec.podCIDRs: the CNI allocates pod addresses itself (Calico IPPools, Cilium cluster-pool, ...), so the host's pod ranges cannot be read from Nodes.",
			"find the ranges in the CNI's configuration and give them to the operator with --host-pod-cidrs."}},
		"no node has one, Cilium's pool says": {noCIDRs, CNIFacts{Name: "Cilium", ConfigName: "cilium-config", Config: map[string]string{"cluster-pool-ipv4-cidr": "10.0.0.0/8"}},
			Result{Warn, "Host pod ranges", "no Node has spec.podCIDRs; Cilium allocates pod addresses from 10.0.0.0/8 (cilium-config cluster-pool-ipv4-cidr).", "give the operator --host-pod-cidrs=10.0.0.0/8."}},
		"some nodes lack one": {partial, CNIFacts{}, Result{Warn, "Host pod ranges", "10.244.0.0/24 from spec.podCIDRs, but 1 of 2 Nodes have none (b).",
			"check the CNI's own pod ranges and give all of them to the operator with --host-pod-cidrs."}},
		"no nodes":   {HostRanges{}, CNIFacts{}, Result{Fail, "Host pod ranges", "the host has no Nodes.", "join nodes to the host cluster before installing labforge."}},
		"unreadable": {HostRanges{NodesErr: errors.New("forbidden")}, CNIFacts{}, Result{Fail, "Host pod ranges", "could not list Nodes: forbidden.", "run preflight with a kubeconfig that may list nodes."}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkPodRanges(tc.host, tc.cni)); diff != "" {
				t.Errorf("checkPodRanges (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckServiceRanges(t *testing.T) {
	tests := map[string]struct {
		host HostRanges
		want Result
	}{
		"ServiceCIDR objects": {kubeadmHost(), Result{OK, "Host service ranges", "10.96.0.0/12 from ServiceCIDR kubernetes.", ""}},
		"only the kubernetes Service": {HostRanges{KubernetesServiceIP: netip.MustParseAddr("10.43.0.1")}, Result{Warn, "Host service ranges",
			"there are no networking.k8s.io/v1 ServiceCIDR objects; the kubernetes Service's ClusterIP 10.43.0.1 lies in the service range.",
			"give the operator --host-service-cidrs, kube-apiserver's --service-cluster-ip-range (kubeadm's default is 10.96.0.0/12)."}},
		"API absent, nothing known": {HostRanges{ServiceCIDRsErr: errors.New("no matches for kind")}, Result{Warn, "Host service ranges",
			"ServiceCIDR objects could not be read (no matches for kind); the kubernetes Service has no ClusterIP either.",
			"give the operator --host-service-cidrs, kube-apiserver's --service-cluster-ip-range (kubeadm's default is 10.96.0.0/12)."}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkServiceRanges(tc.host)); diff != "" {
				t.Errorf("checkServiceRanges (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckNodeAddresses(t *testing.T) {
	tests := map[string]struct {
		host HostRanges
		want Result
	}{
		"internal and external": {kubeadmHost(), Result{OK, "Node addresses", "node-a InternalIP 192.168.1.10, ExternalIP 203.0.113.10; node-b InternalIP 192.168.1.11.", ""}},
		"internal only": {HostRanges{Nodes: []Node{{Name: "a", InternalIPs: addrs("10.0.0.5", "fd00::5")}}},
			Result{OK, "Node addresses", "a InternalIP 10.0.0.5, fd00::5. Students must reach these InternalIPs on the NodePorts.", ""}},
		"a node without address": {HostRanges{Nodes: []Node{{Name: "a", InternalIPs: addrs("10.0.0.5")}, {Name: "b"}}},
			Result{Warn, "Node addresses", "a InternalIP 10.0.0.5; b no address.",
				"students reach a lab on the address of the node that runs it: give b an InternalIP or ExternalIP (the kubelet's --node-ip)."}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkNodeAddresses(tc.host)); diff != "" {
				t.Errorf("checkNodeAddresses (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNodePorts(t *testing.T) {
	tests := map[string]struct {
		flag string
		want Result
	}{
		"default range": {"30000-32767", Result{OK, "NodePort range", "30000-32767 (from --node-port-range): 2768 ports, 2 per claimed lab (SSH and API), so at most 1384 claimed labs besides the host's own NodePorts.", ""}},
		"small range":   {" 31000-31009 ", Result{OK, "NodePort range", "31000-31009 (from --node-port-range): 10 ports, 2 per claimed lab (SSH and API), so at most 5 claimed labs besides the host's own NodePorts.", ""}},
		"backwards": {"32767-30000", Result{Warn, "NodePort range", `could not learn it: --node-port-range "32767-30000" is not FIRST-LAST.`,
			"pass --node-port-range (kube-apiserver's --service-node-port-range, 30000-32767 unless set) and open it to students in the host's firewall."}},
		"not a range": {"30000", Result{Warn, "NodePort range", `could not learn it: --node-port-range "30000" is not FIRST-LAST.`,
			"pass --node-port-range (kube-apiserver's --service-node-port-range, 30000-32767 unless set) and open it to students in the host's firewall."}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkNodePorts(parseNodePortFlag(tc.flag))); diff != "" {
				t.Errorf("checkNodePorts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckLabRanges(t *testing.T) {
	clashing := kubeadmHost()
	clashing.Nodes[1].PodCIDRs = prefixes("10.200.7.0/24")
	clashing.Nodes[0].InternalIPs = addrs("10.201.0.9")
	k3s := HostRanges{Nodes: []Node{{Name: "k3s", PodCIDRs: prefixes("10.42.0.0/24")}}, KubernetesServiceIP: netip.MustParseAddr("10.201.0.1")}
	flannel := CNIFacts{Name: "Flannel", ConfigName: "kube-flannel-cfg", Config: map[string]string{"net-conf.json": `{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "Port": 8475}}`}}
	tests := map[string]struct {
		lab  LabNetwork
		host HostRanges
		cni  CNIFacts
		want []Result
	}{
		"defaults clear of a kubeadm host": {DefaultLabNetwork(), kubeadmHost(), CNIFacts{}, []Result{
			{OK, "Lab ranges", "the template defaults: lab pods 10.200.0.0/16 and services 10.201.0.0/16 overlap none of the host's known ranges and node addresses.", ""},
			{OK, "Lab tunnel port", "labs tunnel on UDP 8475, clear of the usual host VXLAN ports 4789 and 8472 (the host CNI's own port is unknown).", ""},
		}},
		"a node range and a node address inside the lab's": {DefaultLabNetwork(), clashing, CNIFacts{Name: "Calico"}, []Result{
			{Fail, "Lab ranges", "lab pod range 10.200.0.0/16 overlaps the pod range of Node node-b (10.200.7.0/24); lab service range 10.201.0.0/16 overlaps the address of Node node-a (10.201.0.9/32).",
				"give lab templates a spec.network.podCIDR and serviceCIDR clear of the host's ranges and node addresses."},
			{OK, "Lab tunnel port", "labs tunnel on UDP 8475; the host CNI's is 4789 (Calico's VXLAN default).", ""},
		}},
		"service range known only by the kubernetes Service": {DefaultLabNetwork(), k3s, CNIFacts{}, []Result{
			{Fail, "Lab ranges", "lab service range 10.201.0.0/16 overlaps the kubernetes Service's ClusterIP (10.201.0.1/32).",
				"give lab templates a spec.network.podCIDR and serviceCIDR clear of the host's ranges and node addresses."},
			{OK, "Lab tunnel port", "labs tunnel on UDP 8475, clear of the usual host VXLAN ports 4789 and 8472 (the host CNI's own port is unknown).", ""},
		}},
		"unknown host ranges only warn": {DefaultLabNetwork(), HostRanges{Nodes: []Node{{Name: "a"}}}, CNIFacts{}, []Result{
			{Warn, "Lab ranges", "the template defaults: lab pods 10.200.0.0/16 and services 10.201.0.0/16 overlap none of the host's known ranges and node addresses. Some host ranges are unknown (see above).",
				"check the lab ranges against the ranges you give the operator."},
			{OK, "Lab tunnel port", "labs tunnel on UDP 8475, clear of the usual host VXLAN ports 4789 and 8472 (the host CNI's own port is unknown).", ""},
		}},
		"host Flannel on the lab's tunnel port": {DefaultLabNetwork(), kubeadmHost(), flannel, []Result{
			{OK, "Lab ranges", "the template defaults: lab pods 10.200.0.0/16 and services 10.201.0.0/16 overlap none of the host's known ranges and node addresses.", ""},
			{Fail, "Lab tunnel port", "labs tunnel on UDP 8475, the host CNI's tunnel port (kube-flannel-cfg net-conf.json Backend.Port): lab traffic would be taken for the host's.",
				"give lab templates another spec.network.tunnelPort."},
		}},
		"Cilium's pool stands for the missing node ranges, native routing has no tunnel": {DefaultLabNetwork(),
			HostRanges{Nodes: []Node{{Name: "a"}}, ServiceCIDRs: prefixes("10.96.0.0/12"), ServiceCIDRNames: []string{"kubernetes"}},
			CNIFacts{Name: "Cilium", ConfigName: "cilium-config", Config: map[string]string{"cluster-pool-ipv4-cidr": "10.0.0.0/16", "routing-mode": "native"}}, []Result{
				{OK, "Lab ranges", "the template defaults: lab pods 10.200.0.0/16 and services 10.201.0.0/16 overlap none of the host's known ranges and node addresses.", ""},
				{OK, "Lab tunnel port", "labs tunnel on UDP 8475; the host CNI runs no VXLAN tunnel (cilium-config says native routing).", ""},
			}},
		"Flannel host-gw has no tunnel": {DefaultLabNetwork(), kubeadmHost(),
			CNIFacts{Name: "Flannel", ConfigName: "kube-flannel-cfg", Config: map[string]string{"net-conf.json": `{"Network": "10.244.0.0/16", "Backend": {"Type": "host-gw", "Port": 8475}}`}}, []Result{
				{OK, "Lab ranges", "the template defaults: lab pods 10.200.0.0/16 and services 10.201.0.0/16 overlap none of the host's known ranges and node addresses.", ""},
				{OK, "Lab tunnel port", "labs tunnel on UDP 8475; the host CNI runs no VXLAN tunnel (kube-flannel-cfg net-conf.json Backend.Type host-gw).", ""},
			}},
		"Cilium's pool overlaps a template's range": {LabNetwork{Source: "LabTemplate t", PodCIDR: netip.MustParsePrefix("10.0.0.0/16"), ServiceCIDR: netip.MustParsePrefix("172.31.0.0/16"), TunnelPort: 9000},
			kubeadmHost(), CNIFacts{Name: "Cilium", ConfigName: "cilium-config", Config: map[string]string{"cluster-pool-ipv4-cidr": "10.0.0.0/8", "tunnel-port": "9000"}}, []Result{
				{Fail, "Lab ranges", "lab pod range 10.0.0.0/16 overlaps Cilium's cluster pool (10.0.0.0/8).",
					"give lab templates a spec.network.podCIDR and serviceCIDR clear of the host's ranges and node addresses."},
				{Fail, "Lab tunnel port", "labs tunnel on UDP 9000, the host CNI's tunnel port (cilium-config tunnel-port): lab traffic would be taken for the host's.",
					"give lab templates another spec.network.tunnelPort."},
			}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkLabRanges(tc.lab, tc.host, tc.cni)); diff != "" {
				t.Errorf("checkLabRanges (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTemplateNetwork(t *testing.T) {
	bw := resource.MustParse("50M")
	tests := map[string]struct {
		spec labforgev1alpha1.LabNetwork
		want LabNetwork
	}{
		"defaults": {labforgev1alpha1.LabNetwork{}, LabNetwork{Source: "LabTemplate t", PodCIDR: netip.MustParsePrefix("10.200.0.0/16"), ServiceCIDR: netip.MustParsePrefix("10.201.0.0/16"), TunnelPort: 8475, Bandwidth: ptr.To(false)}},
		"own ranges and bandwidth": {labforgev1alpha1.LabNetwork{PodCIDR: "172.30.7.9/24", ServiceCIDR: "172.31.0.0/20", TunnelPort: 51234, Bandwidth: &labforgev1alpha1.Bandwidth{Egress: &bw}},
			LabNetwork{Source: "LabTemplate t", PodCIDR: netip.MustParsePrefix("172.30.7.0/24"), ServiceCIDR: netip.MustParsePrefix("172.31.0.0/20"), TunnelPort: 51234, Bandwidth: ptr.To(true)}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := templateNetwork(labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Name: "t"}, Spec: labforgev1alpha1.LabTemplateSpec{Network: tc.spec}})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("templateNetwork (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := templateNetwork(labforgev1alpha1.LabTemplate{Spec: labforgev1alpha1.LabTemplateSpec{Network: labforgev1alpha1.LabNetwork{PodCIDR: "nonsense"}}}); err == nil {
		t.Error("templateNetwork accepted podCIDR \"nonsense\"")
	}
}

func TestLoadTemplateNetworkReadsTheSample(t *testing.T) {
	got, err := LoadTemplateNetwork("../../config/samples/1-labtemplate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != "LabTemplate broken-dns" || got.PodCIDR.String() != "10.200.0.0/16" || got.TunnelPort != 8475 || got.Bandwidth == nil || !*got.Bandwidth {
		t.Errorf("LoadTemplateNetwork(sample) = %+v", got)
	}
}

func TestReportWriteAndFailed(t *testing.T) {
	r := Report{{OK, "A", "fine.", ""}, {Warn, "B", "hmm.", "look."}, {Fail, "C", "broken.", "fix it."}}
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		t.Fatal(err)
	}
	want := "OK   A: fine.\nWARN B: hmm. Do: look.\nFAIL C: broken. Do: fix it.\n1 OK, 1 WARN, 1 FAIL\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("Write (-want +got):\n%s", diff)
	}
	if !r.Failed() || r[:2].Failed() {
		t.Errorf("Failed() = %v for a report with a FAIL, %v without", r.Failed(), r[:2].Failed())
	}
}

func TestNodePortRangeFlag(t *testing.T) {
	tests := map[string]struct {
		args   []string
		want   string
		wantOK bool
	}{
		"with =":          {[]string{"kube-apiserver", "--secure-port=6443", "--service-node-port-range=31000-31999"}, "31000-31999", true},
		"separate value":  {[]string{"kube-apiserver", "--service-node-port-range", "20000-22767"}, "20000-22767", true},
		"unset":           {[]string{"kube-apiserver", "--service-cluster-ip-range=10.96.0.0/12"}, "", false},
		"flag last alone": {[]string{"kube-apiserver", "--service-node-port-range"}, "", false},
		"similar flag":    {[]string{"--service-node-port-range-x=1-2"}, "", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := nodePortRangeFlag(tc.args)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("nodePortRangeFlag(%q) = %q, %v; want %q, %v", tc.args, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestCheckDNS(t *testing.T) {
	kubeDNS := netip.MustParseAddr("10.96.0.10")
	tests := map[string]struct {
		dns  DNSFacts
		want Result
	}{
		"kubeadm host": {DNSFacts{KubeDNS: kubeDNS, KubeletConfig: true, ClusterDomain: "cluster.local", ClusterDNS: addrs("10.96.0.10")}, Result{OK, "DNS",
			"cluster DNS Service kube-system/kube-dns at 10.96.0.10; cluster domain cluster.local (kube-system/kubelet-config); kubelets give pods the resolvers 10.96.0.10.", ""}},
		"another domain, no kubelet-config": {DNSFacts{KubeDNS: kubeDNS}, Result{OK, "DNS",
			"cluster DNS Service kube-system/kube-dns at 10.96.0.10; cluster domain unknown (no kubeadm kubelet-config; labforge assumes cluster.local).", ""}},
		"NodeLocal DNSCache handed to pods": {DNSFacts{KubeDNS: kubeDNS, NodeLocal: true, KubeletConfig: true, ClusterDomain: "lab.example", ClusterDNS: addrs("169.254.20.10")}, Result{Warn, "DNS",
			"cluster DNS Service kube-system/kube-dns at 10.96.0.10; cluster domain lab.example (kube-system/kubelet-config); kubelets give pods the resolvers 169.254.20.10; NodeLocal DNSCache runs (DaemonSet kube-system/node-local-dns). Lab VMs are given link-local resolvers, which lab egress does not allow: labs get no DNS.",
			"run the operator with --host-dns-addresses=<those addresses> (docs/host-prerequisites.md, DNS), or point the kubelets' clusterDNS at kube-dns."}},
		"NodeLocal DNSCache, kubelets unknown": {DNSFacts{KubeDNS: kubeDNS, NodeLocal: true}, Result{Warn, "DNS",
			"cluster DNS Service kube-system/kube-dns at 10.96.0.10; cluster domain unknown (no kubeadm kubelet-config; labforge assumes cluster.local); NodeLocal DNSCache runs (DaemonSet kube-system/node-local-dns). Whether kubelets hand pods its link-local address is unknown.",
			"check the kubelets' clusterDNS: a link-local address (169.254.20.10) gives labs no DNS unless the operator gets it in --host-dns-addresses."}},
		"no cluster DNS": {DNSFacts{}, Result{Warn, "DNS",
			"no Service kube-system/kube-dns; cluster domain unknown (no kubeadm kubelet-config; labforge assumes cluster.local).",
			"make sure the host runs cluster DNS that pods on the pod network can reach; lab VMs use it."}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, checkDNS(tc.dns)); diff != "" {
				t.Errorf("checkDNS (-want +got):\n%s", diff)
			}
		})
	}
}
