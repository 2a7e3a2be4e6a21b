package labtemplate

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/hostcluster"
)

func validSpec() labforgev1alpha1.LabTemplateSpec {
	return labforgev1alpha1.LabTemplateSpec{
		KubernetesVersion: "v1.36.3",
		Network:           labforgev1alpha1.LabNetwork{PodCIDR: "10.200.0.0/16", ServiceCIDR: "10.201.0.0/16"},
	}
}

func TestCheck(t *testing.T) {
	tests := map[string]struct {
		mutate func(*labforgev1alpha1.LabTemplateSpec)
		want   []string
	}{
		"valid":            {mutate: func(*labforgev1alpha1.LabTemplateSpec) {}},
		"oldest supported": {mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.KubernetesVersion = "v1.31.0" }},
		"newest supported": {mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.KubernetesVersion = "v1.37.12" }},
		"too old": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.KubernetesVersion = "v1.30.9" },
			want:   []string{"kubernetesVersion v1.30.9 is not supported: labforge builds labs of v1.31 to v1.37"},
		},
		"too new": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.KubernetesVersion = "v1.99.0" },
			want:   []string{"kubernetesVersion v1.99.0 is not supported: labforge builds labs of v1.31 to v1.37"},
		},
		"garbage version": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.KubernetesVersion = "latest" },
			want:   []string{"kubernetesVersion latest is not supported: labforge builds labs of v1.31 to v1.37"},
		},
		"pod range clashes with host pods": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) { s.Network.PodCIDR = "10.244.0.0/16" },
			want:   []string{"network.podCIDR 10.244.0.0/16 overlaps the host cluster's range 10.244.0.0/16"},
		},
		"service range inside host services and bad pod range": {
			mutate: func(s *labforgev1alpha1.LabTemplateSpec) {
				s.Network.ServiceCIDR = "10.100.0.0/16"
				s.Network.PodCIDR = "nonsense"
			},
			want: []string{
				`network.podCIDR "nonsense" is not a CIDR`,
				"network.serviceCIDR 10.100.0.0/16 overlaps the host cluster's range 10.96.0.0/12",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := validSpec()
			tc.mutate(&spec)
			got := Check(&spec, hostcluster.Network{
				PodCIDRs:     []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
				ServiceCIDRs: []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
			})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Check() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSetStatus(t *testing.T) {
	ignoreTime := cmpopts.IgnoreFields(metav1.Condition{}, "LastTransitionTime")
	tests := map[string]struct {
		existing []metav1.Condition
		problems []string
		want     []metav1.Condition
	}{
		"valid template is Ready": {
			want: []metav1.Condition{{Type: "Ready", Status: "True", ObservedGeneration: 3, Reason: "Accepted", Message: "Labs can be built from this template"}},
		},
		"invalid template is not Ready and Stalled": {
			problems: []string{"a", "b"},
			want: []metav1.Condition{
				{Type: "Ready", Status: "False", ObservedGeneration: 3, Reason: "InvalidTemplate", Message: "a; b"},
				{Type: "Stalled", Status: "True", ObservedGeneration: 3, Reason: "InvalidTemplate", Message: "Fix the template: a; b"},
			},
		},
		"fixed template drops Stalled": {
			existing: []metav1.Condition{
				{Type: "Ready", Status: "False", ObservedGeneration: 2, Reason: "InvalidTemplate", Message: "a"},
				{Type: "Stalled", Status: "True", ObservedGeneration: 2, Reason: "InvalidTemplate", Message: "Fix the template: a"},
			},
			want: []metav1.Condition{{Type: "Ready", Status: "True", ObservedGeneration: 3, Reason: "Accepted", Message: "Labs can be built from this template"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tmpl := &labforgev1alpha1.LabTemplate{}
			tmpl.Generation = 3
			tmpl.Status.Conditions = tc.existing
			tmpl.Status.ObservedGeneration = -1
			setStatus(tmpl, tc.problems)
			if diff := cmp.Diff(tc.want, tmpl.Status.Conditions, ignoreTime); diff != "" {
				t.Errorf("conditions mismatch (-want +got):\n%s", diff)
			}
			if tmpl.Status.ObservedGeneration != 3 {
				t.Errorf("observedGeneration = %d, want 3", tmpl.Status.ObservedGeneration)
			}
		})
	}
}
