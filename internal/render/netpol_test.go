package render

import (
	"encoding/json"
	"net/netip"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// Literal parts of the expected policies: written out here, not taken from the renderer,
// so that a change of the renderer shows as a difference.
var (
	tcp, udp = corev1.ProtocolTCP, corev1.ProtocolUDP

	wantPodsOfLab = []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}
	wantKubeDNS   = networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
	}
	wantControlPlane = metav1.LabelSelector{MatchLabels: map[string]string{
		"labforge.dev/environment": "pool-a-x7k2p", "labforge.dev/node": "control-plane"}}
	wantOperator = networkingv1.NetworkPolicyIngressRule{
		From:  []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "labforge-system"}}}},
		Ports: []networkingv1.NetworkPolicyPort{port(tcp, 6443)},
	}
)

func port(p corev1.Protocol, n int) networkingv1.NetworkPolicyPort {
	v := intstr.FromInt(n)
	return networkingv1.NetworkPolicyPort{Protocol: &p, Port: &v}
}

func v4Except(except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: except}}
}

func v6Except(except ...string) networkingv1.NetworkPolicyPeer {
	return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "::/0", Except: except}}
}

func wantDNS(peers ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: append([]networkingv1.NetworkPolicyPeer{wantKubeDNS}, peers...),
		Ports: []networkingv1.NetworkPolicyPort{port(udp, 53), port(tcp, 53)}}
}

func wantStudent(from ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: from, Ports: []networkingv1.NetworkPolicyPort{port(tcp, 22), port(tcp, 6443)}}
}

// wantIsolation is lab-isolation's spec: the lab's pods both ways, then DNS, then the
// internet rule when there is one.
func wantIsolation(dns networkingv1.NetworkPolicyEgressRule, internet ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicySpec {
	egress := []networkingv1.NetworkPolicyEgressRule{{To: wantPodsOfLab}, dns}
	if len(internet) > 0 {
		egress = append(egress, networkingv1.NetworkPolicyEgressRule{To: internet})
	}
	return networkingv1.NetworkPolicySpec{
		PodSelector: metav1.LabelSelector{},
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: wantPodsOfLab}},
		Egress:      egress,
	}
}

// wantAccess is control-plane-access's spec: the student rule when there is one, then
// the operator's.
func wantAccess(student ...networkingv1.NetworkPolicyPeer) networkingv1.NetworkPolicySpec {
	ingress := []networkingv1.NetworkPolicyIngressRule{wantOperator}
	if len(student) > 0 {
		ingress = []networkingv1.NetworkPolicyIngressRule{wantStudent(student...), wantOperator}
	}
	return networkingv1.NetworkPolicySpec{
		PodSelector: wantControlPlane,
		PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		Ingress:     ingress,
	}
}

// TestNetworkPolicies: a lab has exactly two policies, lab-isolation and
// control-plane-access, whatever its network settings, each rendered exactly: online,
// offline (by Deny, or by excepting both families), with a /0 exception, on a
// dual-stack host with NodeLocal DNSCache, and on a host whose ranges cover a whole
// family. No rule ever has an empty peer list (which would admit every address).
func TestNetworkPolicies(t *testing.T) {
	// testHost's ranges, sorted as rendered, with the link-local range egress adds.
	hostV4 := []string{"10.244.0.0/16", "10.96.0.0/12"}
	egressV4 := append(append([]string{}, hostV4...), "169.254.0.0/16")
	cases := map[string]struct {
		mutate               func(*Lab)
		wantIsolation        networkingv1.NetworkPolicySpec
		wantControlPlaneOnly networkingv1.NetworkPolicySpec
	}{
		"online, unset internetEgress (a snapshot from before the field)": {
			wantIsolation:        wantIsolation(wantDNS(), v4Except(egressV4...), v6Except("fe80::/10")),
			wantControlPlaneOnly: wantAccess(v4Except(hostV4...), v6Except()),
		},
		"online, with exceptions and node ranges": {
			mutate: func(l *Lab) {
				l.Template.Network.InternetEgress = labforgev1alpha1.InternetEgressAllow
				l.Template.Network.EgressExceptCIDRs = []string{"198.51.100.7/24", "2001:db8::/32"}
				l.Host.NodeCIDRs = []netip.Prefix{netip.MustParsePrefix("192.168.10.0/24")}
			},
			wantIsolation: wantIsolation(wantDNS(),
				v4Except("10.244.0.0/16", "10.96.0.0/12", "169.254.0.0/16", "192.168.10.0/24", "198.51.100.0/24"),
				v6Except("2001:db8::/32", "fe80::/10")),
			wantControlPlaneOnly: wantAccess(v4Except("10.244.0.0/16", "10.96.0.0/12", "192.168.10.0/24"), v6Except()),
		},
		"offline by Deny: no internet rule, still isolated": {
			mutate: func(l *Lab) {
				l.Template.Network.InternetEgress = labforgev1alpha1.InternetEgressDeny
				l.Template.Network.EgressExceptCIDRs = []string{"192.0.2.0/24"}
			},
			wantIsolation:        wantIsolation(wantDNS()),
			wantControlPlaneOnly: wantAccess(v4Except(hostV4...), v6Except()),
		},
		"offline by excepting both families": {
			mutate: func(l *Lab) {
				l.Template.Network.InternetEgress = labforgev1alpha1.InternetEgressAllow
				l.Template.Network.EgressExceptCIDRs = []string{"::/0", "0.0.0.0/0"}
			},
			wantIsolation:        wantIsolation(wantDNS()),
			wantControlPlaneOnly: wantAccess(v4Except(hostV4...), v6Except()),
		},
		"0.0.0.0/0 excepted: IPv6 only": {
			mutate:        func(l *Lab) { l.Template.Network.EgressExceptCIDRs = []string{"0.0.0.0/0", "192.0.2.0/24"} },
			wantIsolation: wantIsolation(wantDNS(), v6Except("fe80::/10")),
			// A template's exceptions are egress only: students still come in over both.
			wantControlPlaneOnly: wantAccess(v4Except(hostV4...), v6Except()),
		},
		"an unmasked /0 counts as 0.0.0.0/0": {
			mutate:               func(l *Lab) { l.Template.Network.EgressExceptCIDRs = []string{"203.0.113.9/0"} },
			wantIsolation:        wantIsolation(wantDNS(), v6Except("fe80::/10")),
			wantControlPlaneOnly: wantAccess(v4Except(hostV4...), v6Except()),
		},
		"::/0 excepted: IPv4 only": {
			mutate:               func(l *Lab) { l.Template.Network.EgressExceptCIDRs = []string{"::/0"} },
			wantIsolation:        wantIsolation(wantDNS(), v4Except(egressV4...)),
			wantControlPlaneOnly: wantAccess(v4Except(hostV4...), v6Except()),
		},
		"a dual-stack host with NodeLocal DNSCache and an IPv6 resolver": {
			mutate: func(l *Lab) {
				l.Host.PodCIDRs = append(l.Host.PodCIDRs, netip.MustParsePrefix("fd00:10:244::/56"))
				l.Host.ServiceCIDRs = append(l.Host.ServiceCIDRs, netip.MustParsePrefix("fd00:10:96::/112"))
				l.Host.NodeCIDRs = []netip.Prefix{netip.MustParsePrefix("192.168.1.11/32"), netip.MustParsePrefix("2001:db8:1::11/128")}
				l.Host.DNSAddresses = []netip.Addr{netip.MustParseAddr("169.254.20.10"), netip.MustParseAddr("fd00::a")}
			},
			wantIsolation: wantIsolation(
				wantDNS(networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "169.254.20.10/32"}},
					networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "fd00::a/128"}}),
				v4Except("10.244.0.0/16", "10.96.0.0/12", "169.254.0.0/16", "192.168.1.11/32"),
				v6Except("2001:db8:1::11/128", "fd00:10:244::/56", "fd00:10:96::/112", "fe80::/10")),
			wantControlPlaneOnly: wantAccess(
				v4Except("10.244.0.0/16", "10.96.0.0/12", "192.168.1.11/32"),
				v6Except("2001:db8:1::11/128", "fd00:10:244::/56", "fd00:10:96::/112")),
		},
		"a host whose ranges cover both families: no student rule, the operator's stays": {
			mutate: func(l *Lab) {
				l.Host.PodCIDRs = append(l.Host.PodCIDRs, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
			},
			// The host's ranges are blocked for egress too: nothing but the lab and DNS.
			wantIsolation:        wantIsolation(wantDNS()),
			wantControlPlaneOnly: wantAccess(),
		},
		"a host whose ranges cover IPv4: students over IPv6 only": {
			mutate:               func(l *Lab) { l.Host.PodCIDRs = append(l.Host.PodCIDRs, netip.MustParsePrefix("0.0.0.0/0")) },
			wantIsolation:        wantIsolation(wantDNS(), v6Except("fe80::/10")),
			wantControlPlaneOnly: wantAccess(v6Except()),
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			mutate := []func(*Lab){}
			if tc.mutate != nil {
				mutate = append(mutate, tc.mutate)
			}
			l := testLab(1, mutate...)
			policies := NetworkPolicies(l)
			expectNoOpenRule(t, policies)
			meta := func(name string) metav1.ObjectMeta {
				return metav1.ObjectMeta{Name: name, Namespace: "lab-pool-a-x7k2p",
					Labels: map[string]string{"app.kubernetes.io/managed-by": "labforge", "labforge.dev/environment": "pool-a-x7k2p",
						"labforge.dev/template": "broken-dns", "labforge.dev/pool": "pool-a"},
					OwnerReferences: []metav1.OwnerReference{l.OwnerReference()}}
			}
			typeMeta := metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"}
			want := []*networkingv1.NetworkPolicy{
				{TypeMeta: typeMeta, ObjectMeta: meta("lab-isolation"), Spec: tc.wantIsolation},
				{TypeMeta: typeMeta, ObjectMeta: meta("control-plane-access"), Spec: tc.wantControlPlaneOnly},
			}
			if diff := cmp.Diff(want, policies); diff != "" {
				t.Errorf("policies (-want +got):\n%s", diff)
			}
		})
	}
}

// expectNoOpenRule fails for a rule with no peers: it would admit every address
// (decision 59).
func expectNoOpenRule(t *testing.T, policies []*networkingv1.NetworkPolicy) {
	t.Helper()
	for _, p := range policies {
		for i, r := range p.Spec.Egress {
			if len(r.To) == 0 {
				t.Errorf("%s: egress rule %d has no peers: it allows every address", p.Name, i)
			}
		}
		for i, r := range p.Spec.Ingress {
			if len(r.From) == 0 {
				t.Errorf("%s: ingress rule %d has no peers: it admits every address", p.Name, i)
			}
		}
	}
}

// TestMergedPoliciesAllowWhatTheSixDid: the two policies allow exactly what the six they
// replace allowed (decision 93), in every setting TestNetworkPolicies renders. Both sets
// are brought to what the NetworkPolicy API means by them: for each pod selector and
// direction, whether it is isolated, and the set of rules that allow traffic (a pod's
// allowed traffic is the union of the rules of every policy selecting it). The six are
// written out here as labforge rendered them before the merge.
func TestMergedPoliciesAllowWhatTheSixDid(t *testing.T) {
	settings := map[string]func(*Lab){
		"online": func(*Lab) {},
		"offline": func(l *Lab) {
			l.Template.Network.InternetEgress = labforgev1alpha1.InternetEgressDeny
		},
		"0.0.0.0/0 excepted": func(l *Lab) { l.Template.Network.EgressExceptCIDRs = []string{"0.0.0.0/0"} },
		"dual-stack with host DNS addresses": func(l *Lab) {
			l.Host.PodCIDRs = append(l.Host.PodCIDRs, netip.MustParsePrefix("fd00:10:244::/56"))
			l.Host.DNSAddresses = []netip.Addr{netip.MustParseAddr("169.254.20.10")}
		},
		"host covering both families": func(l *Lab) {
			l.Host.PodCIDRs = append(l.Host.PodCIDRs, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
		},
	}
	for name, mutate := range settings {
		t.Run(name, func(t *testing.T) {
			l := testLab(1, mutate)
			if diff := cmp.Diff(allowances(t, sixPolicies(l)), allowances(t, NetworkPolicies(l))); diff != "" {
				t.Errorf("what the policies allow (-six +two):\n%s", diff)
			}
		})
	}
}

// allowances is what a set of policies means: "isolated <selector> <direction>" for each
// selector and direction a policy isolates, and "<selector> <direction> <rule>" for each
// rule, sorted, with duplicates folded (a union).
func allowances(t *testing.T, policies []*networkingv1.NetworkPolicy) []string {
	t.Helper()
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	set := map[string]bool{}
	for _, p := range policies {
		sel := js(p.Spec.PodSelector)
		for _, pt := range p.Spec.PolicyTypes {
			set["isolated "+sel+" "+string(pt)] = true
		}
		for _, r := range p.Spec.Ingress {
			set[sel+" Ingress "+js(r)] = true
		}
		for _, r := range p.Spec.Egress {
			set[sel+" Egress "+js(r)] = true
		}
	}
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// sixPolicies are the specs of the six policies a lab had before decision 93, as
// labforge rendered them then (only their specs matter here).
func sixPolicies(l Lab) []*networkingv1.NetworkPolicy {
	all := metav1.LabelSelector{}
	cp := metav1.LabelSelector{MatchLabels: controlPlaneSelector(l)}
	both := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}
	ingress := []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
	egress := []networkingv1.PolicyType{networkingv1.PolicyTypeEgress}
	var student []networkingv1.NetworkPolicyIngressRule
	if from := everywhereExcept(blockedRanges(l)); len(from) > 0 {
		student = []networkingv1.NetworkPolicyIngressRule{wantStudent(from...)}
	}
	var dnsHosts []networkingv1.NetworkPolicyPeer
	for _, a := range l.Host.DNSAddresses {
		dnsHosts = append(dnsHosts, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: netip.PrefixFrom(a, a.BitLen()).String()}})
	}
	spec := func(sel metav1.LabelSelector, types []networkingv1.PolicyType, in []networkingv1.NetworkPolicyIngressRule, out []networkingv1.NetworkPolicyEgressRule) *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{Spec: networkingv1.NetworkPolicySpec{PodSelector: sel, PolicyTypes: types, Ingress: in, Egress: out}}
	}
	return []*networkingv1.NetworkPolicy{
		spec(all, both, nil, nil), // default-deny
		spec(all, both, []networkingv1.NetworkPolicyIngressRule{{From: wantPodsOfLab}}, []networkingv1.NetworkPolicyEgressRule{{To: wantPodsOfLab}}), // allow-lab-internal
		spec(cp, ingress, student, nil),                                                      // allow-student-access
		spec(cp, ingress, []networkingv1.NetworkPolicyIngressRule{wantOperator}, nil),        // allow-operator-probe
		spec(all, egress, nil, []networkingv1.NetworkPolicyEgressRule{wantDNS(dnsHosts...)}), // allow-dns
		spec(all, egress, nil, internetEgress(l)),                                            // allow-internet-egress
	}
}
