package render

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// TestInternetEgress: what allow-internet-egress allows in each setting of internetEgress
// and egressExceptCIDRs. A /0 among the exceptions takes its family away (it was skipped,
// and the lab kept the whole internet); an offline lab keeps the policy with no rule, and
// no policy ever has a rule with no peers (which would admit every address).
func TestInternetEgress(t *testing.T) {
	hostV4 := []string{"10.244.0.0/16", "10.96.0.0/12", "169.254.0.0/16"}
	v4 := func(extra ...string) networkingv1.NetworkPolicyPeer {
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "0.0.0.0/0", Except: append(append([]string{}, hostV4...), extra...)}}
	}
	v6 := func(except ...string) networkingv1.NetworkPolicyPeer {
		return networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: "::/0", Except: except}}
	}
	rule := func(to ...networkingv1.NetworkPolicyPeer) []networkingv1.NetworkPolicyEgressRule {
		return []networkingv1.NetworkPolicyEgressRule{{To: to}}
	}
	cases := map[string]struct {
		mode   labforgev1alpha1.InternetEgress
		except []string
		want   []networkingv1.NetworkPolicyEgressRule
	}{
		"unset (a snapshot from before the field) allows the internet": {
			want: rule(v4(), v6("fe80::/10")),
		},
		"Allow, with exceptions": {
			mode: labforgev1alpha1.InternetEgressAllow, except: []string{"198.51.100.7/24", "2001:db8::/32"},
			want: rule(v4("198.51.100.0/24"), v6("2001:db8::/32", "fe80::/10")),
		},
		"Allow, 0.0.0.0/0 excepted: IPv6 only": {
			mode: labforgev1alpha1.InternetEgressAllow, except: []string{"0.0.0.0/0", "192.0.2.0/24"},
			want: rule(v6("fe80::/10")),
		},
		"Allow, ::/0 excepted: IPv4 only": {
			mode: labforgev1alpha1.InternetEgressAllow, except: []string{"::/0"},
			want: rule(v4()),
		},
		"Allow, an unmasked /0 counts as 0.0.0.0/0": {
			mode: labforgev1alpha1.InternetEgressAllow, except: []string{"203.0.113.9/0"},
			want: rule(v6("fe80::/10")),
		},
		"Allow, both families excepted: no rule": {
			mode: labforgev1alpha1.InternetEgressAllow, except: []string{"::/0", "0.0.0.0/0"},
		},
		"Deny: no rule": {
			mode: labforgev1alpha1.InternetEgressDeny,
		},
		"Deny wins over exceptions": {
			mode: labforgev1alpha1.InternetEgressDeny, except: []string{"192.0.2.0/24"},
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			l := testLab(1, func(l *Lab) {
				l.Template.Network.InternetEgress = tc.mode
				l.Template.Network.EgressExceptCIDRs = tc.except
			})
			policies := NetworkPolicies(l)
			var names []string
			for _, p := range policies {
				names = append(names, p.Name)
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
			wantNames := []string{PolicyDefaultDeny, PolicyLabInternal, PolicyStudentAccess, PolicyOperatorAccess, PolicyDNS, PolicyInternetEgress}
			if diff := cmp.Diff(wantNames, names); diff != "" {
				t.Fatalf("policy names (-want +got):\n%s", diff)
			}
			want := networkingv1.NetworkPolicySpec{
				PodSelector: metav1.LabelSelector{},
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeEgress},
				Egress:      tc.want,
			}
			if diff := cmp.Diff(want, policies[len(policies)-1].Spec); diff != "" {
				t.Errorf("allow-internet-egress (-want +got):\n%s", diff)
			}
		})
	}
}

// TestStudentAccessNeverOpen: a host whose ranges cover a whole family leaves that family
// out of the student's way in, and a host covering both leaves no rule, never one that
// admits every address.
func TestStudentAccessNeverOpen(t *testing.T) {
	l := testLab(0, func(l *Lab) {
		l.Host.PodCIDRs = append(l.Host.PodCIDRs, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
	})
	for _, p := range NetworkPolicies(l) {
		if p.Name != PolicyStudentAccess {
			continue
		}
		if p.Spec.Ingress != nil {
			t.Errorf("student access with every address blocked: %+v, want no rule", p.Spec.Ingress)
		}
		if diff := cmp.Diff([]networkingv1.PolicyType{networkingv1.PolicyTypeIngress}, p.Spec.PolicyTypes); diff != "" {
			t.Errorf("policy types (-want +got):\n%s", diff)
		}
		return
	}
	t.Fatal("no student access policy")
}
