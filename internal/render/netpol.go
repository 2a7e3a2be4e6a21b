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

// Names of the lab's NetworkPolicies.
const (
	PolicyDefaultDeny    = "default-deny"
	PolicyLabInternal    = "allow-lab-internal"
	PolicyStudentAccess  = "allow-student-access"
	PolicyOperatorAccess = "allow-operator-probe"
	PolicyDNS            = "allow-dns"
	PolicyInternetEgress = "allow-internet-egress"
)

// NetworkPolicies returns the lab namespace's policies: deny everything, then allow
// exactly the lab's VMs to each other, SSH and API to the control plane from outside the
// host cluster's ranges (reachable only once a NodePort exists), the operator's namespace
// to the lab API, DNS, and egress to the internet minus the host cluster's ranges,
// link-local addresses and the template's exceptions (a /0 among them takes its address
// family away). Every lab has the same six policies: an offline lab's
// allow-internet-egress (internetEgress Deny, or every family taken away) has no rule and
// so allows nothing. No rule is ever rendered with an empty peer list, which would allow
// every address (decision 59).
func NetworkPolicies(l Lab) []*networkingv1.NetworkPolicy {
	tcp, udp := corev1.ProtocolTCP, corev1.ProtocolUDP
	all := metav1.LabelSelector{}
	return []*networkingv1.NetworkPolicy{
		l.policy(PolicyDefaultDeny, networkingv1.NetworkPolicySpec{
			PodSelector: all,
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
		}),
		l.policy(PolicyLabInternal, networkingv1.NetworkPolicySpec{
			PodSelector: all,
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}},
			Egress:      []networkingv1.NetworkPolicyEgressRule{{To: []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}}},
		}),
		l.policy(PolicyStudentAccess, networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: controlPlaneSelector(l)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress:     studentIngress(l),
		}),
		l.policy(PolicyOperatorAccess, networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: controlPlaneSelector(l)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				From: []networkingv1.NetworkPolicyPeer{{NamespaceSelector: &metav1.LabelSelector{
					MatchLabels: map[string]string{corev1.LabelMetadataName: l.OperatorNamespace},
				}}},
				Ports: []networkingv1.NetworkPolicyPort{policyPort(tcp, lab.APIPort)},
			}},
		}),
		l.policy(PolicyDNS, networkingv1.NetworkPolicySpec{
			PodSelector: all,
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress: []networkingv1.NetworkPolicyEgressRule{{
				To:    dnsPeers(l.Host.DNSAddresses),
				Ports: []networkingv1.NetworkPolicyPort{policyPort(udp, 53), policyPort(tcp, 53)},
			}},
		}),
		l.policy(PolicyInternetEgress, networkingv1.NetworkPolicySpec{
			PodSelector: all,
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
			Egress:      internetEgress(l),
		}),
	}
}

// dnsPeers are the DNS servers a lab may query: the host's kube-dns pods, and the
// admin's host DNS addresses (NodeLocal DNSCache listens on a link-local address on every
// node, outside any pod: only an ipBlock admits it, and this policy's allowance stands
// beside the internet rule's link-local exception, as NetworkPolicies add up).
func policyPort(p corev1.Protocol, n int) networkingv1.NetworkPolicyPort {
	return networkingv1.NetworkPolicyPort{Protocol: ptr.To(p), Port: ptr.To(intstr.FromInt(n))}
}

// blockedRanges are the host's pod, service and node ranges: no student traffic comes
// from them, and none goes to them.
func blockedRanges(l Lab) []netip.Prefix {
	return append(append([]netip.Prefix{}, l.Host.Ranges()...), l.Host.NodeCIDRs...)
}

// studentIngress lets students reach the control plane's SSH and API ports from anywhere
// but the host's ranges; none when nothing is left.
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
// none when nothing is left.
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
