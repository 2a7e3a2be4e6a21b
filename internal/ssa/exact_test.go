package ssa

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// TestExact: a guard is what labforge renders, nothing more. Each widening edit the
// security review found (issue 17) is a difference, while Covers called it covered.
func TestExact(t *testing.T) {
	owner := []metav1.OwnerReference{{APIVersion: "labforge.dev/v1alpha1", Kind: "LabEnvironment", Name: "e", UID: "u", Controller: ptr.To(true)}}
	policy := func() *networkingv1.NetworkPolicy {
		return &networkingv1.NetworkPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "lab-e", Name: "p", Labels: map[string]string{"app.kubernetes.io/managed-by": "labforge"}, OwnerReferences: owner},
			Spec: networkingv1.NetworkPolicySpec{
				PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
				Ingress: []networkingv1.NetworkPolicyIngressRule{{
					From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(22))}},
				}},
			},
		}
	}
	tests := map[string]struct {
		edit    func(*networkingv1.NetworkPolicy)
		want    bool
		covered bool // what Covers said before
	}{
		"untouched, as the cache holds it (no kind, resourceVersion)": {
			edit: func(p *networkingv1.NetworkPolicy) {
				p.TypeMeta = metav1.TypeMeta{}
				p.ResourceVersion = "7"
				p.UID = "x"
			},
			want: true, covered: true,
		},
		"a label someone added": {
			edit: func(p *networkingv1.NetworkPolicy) {
				p.Labels = map[string]string{"app.kubernetes.io/managed-by": "labforge", "team": "x"}
			},
			want: true, covered: true,
		},
		"an annotation someone added": {
			edit: func(p *networkingv1.NetworkPolicy) { p.Annotations = map[string]string{"note": "x"} },
			want: true, covered: true,
		},
		"pod selector narrowed": {
			edit: func(p *networkingv1.NetworkPolicy) {
				p.Spec.PodSelector = metav1.LabelSelector{MatchLabels: map[string]string{"none": "x"}}
			},
			covered: true,
		},
		"namespaceSelector {} added to a peer": {
			edit: func(p *networkingv1.NetworkPolicy) {
				p.Spec.Ingress[0].From[0].NamespaceSelector = &metav1.LabelSelector{}
			},
			covered: true,
		},
		"port 22 widened to 22-65535": {
			edit:    func(p *networkingv1.NetworkPolicy) { p.Spec.Ingress[0].Ports[0].EndPort = ptr.To[int32](65535) },
			covered: true,
		},
		"egress type added": {
			edit: func(p *networkingv1.NetworkPolicy) {
				p.Spec.PolicyTypes = append(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
			},
		},
		"a rule added": {
			edit: func(p *networkingv1.NetworkPolicy) {
				p.Spec.Ingress = append(p.Spec.Ingress, networkingv1.NetworkPolicyIngressRule{})
			},
		},
		"our label taken away": {
			edit: func(p *networkingv1.NetworkPolicy) { p.Labels = nil },
		},
		"a second owner": {
			edit: func(p *networkingv1.NetworkPolicy) {
				p.OwnerReferences = append(p.OwnerReferences, metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: "c", UID: "c"})
			},
		},
	}
	body, err := json.Marshal(policy())
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			observed := policy()
			tc.edit(observed)
			got, err := exact(body, observed)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("exact = %v, want %v", got, tc.want)
			}
			if covered, err := covers(body, observed); err != nil || covered != tc.covered {
				t.Errorf("covers = %v, %v; this test expects %v", covered, err, tc.covered)
			}
		})
	}
}

// TestExactQuantities: quantities compare by value, as the API server writes them back
// in canonical form.
func TestExactQuantities(t *testing.T) {
	quota := func(cpu string) *corev1.ResourceQuota {
		return &corev1.ResourceQuota{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ResourceQuota"},
			ObjectMeta: metav1.ObjectMeta{Name: "q"},
			Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceRequestsCPU: resource.MustParse(cpu)}},
		}
	}
	body, _ := json.Marshal(quota("1000m"))
	for cpu, want := range map[string]bool{"1": true, "1000m": true, "1001m": false, "2": false} {
		if got, err := exact(body, quota(cpu)); err != nil || got != want {
			t.Errorf("exact(1000m, %s) = %v, %v; want %v", cpu, got, err, want)
		}
	}
	widened := quota("1")
	widened.Spec.Scopes = []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeBestEffort}
	if got, _ := exact(body, widened); got {
		t.Error("a quota narrowed to BestEffort pods counts as exact")
	}
}
