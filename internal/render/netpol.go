package render

import (
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
)

// LinkLocal is always blocked: it holds cloud metadata services (169.254.169.254).
var LinkLocal = []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16"), netip.MustParsePrefix("fe80::/10")}

// Names of the lab's NetworkPolicies (decision 93).
const (
	// PolicyIsolation selects every pod of the lab: it denies all ingress and egress but
	// its rules, the lab's pods to and from each other, DNS, and the internet outside the
	// host's ranges.
	PolicyIsolation = "lab-isolation"
	// PolicyControlPlaneAccess selects the lab's control plane: SSH and the API from
	// outside the host's ranges (the student), and the API from the operator's namespace.
	PolicyControlPlaneAccess = "control-plane-access"
)

// NetworkPolicies returns the lab namespace's two policies. NetworkPolicies add up: a pod
// selected by any policy of a type is isolated for it, and what any rule of any of them
// allows is allowed ("The two sorts of pod isolation" in
// https://kubernetes.io/docs/concepts/services-networking/network-policies/). So
// PolicyIsolation isolates every pod of the lab for ingress and egress and allows what
// every pod may do, and PolicyControlPlaneAccess adds what only the control plane is
// reached by; together they allow exactly what the six policies before them did
// (decision 93). Every lab has both: an offline lab (internetEgress Deny, or every
// family taken away by a /0 exception) has no internet rule, and no rule is ever
// rendered with an empty peer list, which would allow every address (decision 59).
// docs/isolation-runbook.md maps each check to the rule that makes it pass.
func NetworkPolicies(l Lab) []*networkingv1.NetworkPolicy {
	return []*networkingv1.NetworkPolicy{
		l.policy(PolicyIsolation, networkingv1.NetworkPolicySpec{
			// Every pod of the lab is isolated both ways: what no rule below allows is
			// denied (lab B's side of other-lab-vm; every "blocked" check's egress side).
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{labInternalIngress()},
			Egress:      append([]networkingv1.NetworkPolicyEgressRule{labInternalEgress(), dnsEgress(l)}, internetEgress(l)...),
		}),
		l.policy(PolicyControlPlaneAccess, networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: controlPlaneSelector(l)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     append(studentIngress(l), operatorIngress(l)),
		}),
	}
}

// labInternalIngress admits the lab's own pods, and no other namespace's (a peer with a
// pod selector alone means this namespace): the lab-internal check (kubeadm join,
// flannel's VXLAN, kubelets), and lab B's refusal of lab A in other-lab-vm.
func labInternalIngress() networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}
}

// labInternalEgress lets the lab reach its own pods: the lab-internal check.
func labInternalEgress() networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}
}

// dnsEgress lets the lab query DNS on UDP and TCP 53, at dnsPeers only: the dns-tcp and
// dns-lookup checks.
func dnsEgress(l Lab) networkingv1.NetworkPolicyEgressRule {
	return networkingv1.NetworkPolicyEgressRule{
		To:    dnsPeers(l.Host.DNSAddresses),
		Ports: []networkingv1.NetworkPolicyPort{policyPort(corev1.ProtocolUDP, 53), policyPort(corev1.ProtocolTCP, 53)},
	}
}

// operatorIngress admits the operator's namespace to the lab API only, for the readiness
// probe; nothing else inside the host cluster reaches it (the other-lab-api check, lab B's
// side).
func operatorIngress(l Lab) networkingv1.NetworkPolicyIngressRule {
	return networkingv1.NetworkPolicyIngressRule{
		From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{corev1.LabelMetadataName: l.OperatorNamespace},
		}}},
		Ports: []networkingv1.NetworkPolicyPort{policyPort(corev1.ProtocolTCP, lab.APIPort)},
	}
}

func policyPort(p corev1.Protocol, n int) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr.To(p), Port: ptr.To(intstr.FromInt(n))}
}

// blockedRanges are the host's pod, service and node ranges: no student traffic comes
// from them, and none goes to them.
func blockedRanges(l Lab) []netip.Prefix {
	return append(append([]netip.Prefix{}, l.Host.Ranges()...), l.Host.NodeCIDRs...)
}

// studentIngress lets students reach the control plane's SSH and API ports from anywhere
// but the host's ranges (the ssh-nodeport check; and, since lab A's pods are in those
// ranges, lab B's side of other-lab-nodeport); none when nothing is left.
func studentIngress(l Lab) []networkingv1.NetworkPolicyIngressRule {
	from := everywhereExcept(blockedRanges(l))
	if len(from) == 0 {
		return nil
	}
	return []networkingv1.NetworkPolicyIngressRule{{
		From:  from,
		Ports: []networkingv1.NetworkPolicyPort{policyPort(corev1.ProtocolTCP, lab.SSHPort), policyPort(corev1.ProtocolTCP, lab.APIPort)},
	}}
}

// internetEgress lets the lab reach everywhere but the host's ranges, link-local
// addresses and the template's exceptions, unless the template denies internet egress;
// none when nothing is left. It serves the internet and allow checks, its exceptions
// the forbid check and the egress side of other-lab-vm, other-lab-api, node,
// other-lab-nodeport, host-api-service, host-api-endpoint and metadata.
func internetEgress(l Lab) []networkingv1.NetworkPolicyEgressRule {
	if l.Template.Network.InternetEgress == labforgev1alpha1.InternetEgressDeny {
		return nil
	}
	blocked := append(blockedRanges(l), LinkLocal...)
	for _, c := range l.Template.Network.EgressExceptCIDRs {
		if p, err := netip.ParsePrefix(c); err == nil {
			blocked = append(blocked, p.Masked())
		}
	}
	to := everywhereExcept(blocked)
	if len(to) == 0 {
		return nil
	}
	return []networkingv1.NetworkPolicyEgressRule{{To: to}}
}

// dnsPeers are the DNS servers a lab may query: the host's kube-dns pods, and the admin's
// host DNS addresses (NodeLocal DNSCache listens on a link-local address on every node,
// outside any pod: only an ipBlock admits it, and this rule's allowance stands beside the
// internet rule's link-local exception, as the rules of NetworkPolicies add up).
func dnsPeers(addrs []netip.Addr) []networkingv1.NetworkPolicyPeer {
	peers := []networkingv1.NetworkPolicyPeer{{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "kube-system"}},
		PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}},
	}}
	for _, a := range addrs {
		a = a.Unmap()
		peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: netip.PrefixFrom(a, a.BitLen()).String()}})
	}
	return peers
}

func (l Lab) policy(name string, spec networkingv1.NetworkPolicySpec) *networkingv1.NetworkPolicy {
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: l.objectMeta(name, nil),
		Spec:       spec,
	}
}

// everywhereExcept returns one ipBlock per address family: everything of that family but
// the given ranges (an ipBlock's exceptions must lie inside its CIDR). A /0 among them
// blocks its whole family, which then has no ipBlock (an exception may not equal the
// block's CIDR); when both are blocked the result is empty, and the caller must render no
// rule at all, since a rule with no peers admits everyone.
func everywhereExcept(blocked []netip.Prefix) []networkingv1.NetworkPolicyPeer {
	var v4, v6 []string
	allV4, allV6 := false, false
	seen := map[netip.Prefix]bool{}
	for _, p := range blocked {
		p = p.Masked()
		if seen[p] {
			continue
		}
		seen[p] = true
		switch {
		case p.Bits() == 0 && p.Addr().Is4():
			allV4 = true
		case p.Bits() == 0:
			allV6 = true
		case p.Addr().Is4():
			v4 = append(v4, p.String())
		default:
			v6 = append(v6, p.String())
		}
	}
	sort.Strings(v4)
	sort.Strings(v6)
	var peers []networkingv1.NetworkPolicyPeer
	if !allV4 {
		peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: v4}})
	}
	if !allV6 {
		peers = append(peers, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "::/0", Except: v6}})
	}
	return peers
}
