package labtemplate

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/hostcluster"
)

// The Kubernetes minor versions labforge builds labs of. The bottom is the first release
// whose kubeadm reads the v1beta4 configuration labforge renders; the top is the newest
// release labforge's configuration was checked against.
const (
	MinKubernetesMinor = 31
	MaxKubernetesMinor = 37
)

// Condition reasons of a LabTemplate.
const (
	ReasonAccepted        = "Accepted"
	ReasonInvalidTemplate = "InvalidTemplate"
)

// Check returns what is wrong with a template that the CRD's own validation cannot see:
// versions labforge cannot build, and lab ranges that clash with the host cluster's. An
// empty result means labs can be built from it.
func Check(spec *labforgev1alpha1.LabTemplateSpec, host hostcluster.Network) []string {
	var problems []string
	if minor, ok := parseMinor(spec.KubernetesVersion); !ok || minor < MinKubernetesMinor || minor > MaxKubernetesMinor {
		problems = append(problems, fmt.Sprintf("kubernetesVersion %s is not supported: labforge builds labs of v1.%d to v1.%d",
			spec.KubernetesVersion, MinKubernetesMinor, MaxKubernetesMinor))
	}
	for _, r := range []struct{ field, value string }{
		{"network.podCIDR", spec.Network.PodCIDR},
		{"network.serviceCIDR", spec.Network.ServiceCIDR},
	} {
		p, err := netip.ParsePrefix(r.value)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %q is not a CIDR", r.field, r.value))
			continue
		}
		for _, h := range host.Overlapping(p.Masked()) {
			problems = append(problems, fmt.Sprintf("%s %s overlaps the host cluster's range %s", r.field, r.value, h))
		}
	}
	return problems
}

// parseMinor returns the minor version of "v1.MINOR.PATCH".
func parseMinor(version string) (int, bool) {
	parts := strings.Split(strings.TrimPrefix(version, "v"), ".")
	if len(parts) != 3 || parts[0] != "1" {
		return 0, false
	}
	minor, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, false
	}
	if _, err := strconv.Atoi(parts[2]); err != nil {
		return 0, false
	}
	return minor, true
}

// setStatus sets the template's Ready and Stalled conditions and observedGeneration from
// the result of Check. An invalid template cannot get better by retrying, so it is Stalled
// as well as not Ready.
func setStatus(t *labforgev1alpha1.LabTemplate, problems []string) {
	gen := t.Generation
	if len(problems) == 0 {
		meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{
			Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: gen,
			Reason: ReasonAccepted, Message: "Labs can be built from this template",
		})
		meta.RemoveStatusCondition(&t.Status.Conditions, labforgev1alpha1.ConditionStalled)
	} else {
		msg := strings.Join(problems, "; ")
		meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{
			Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionFalse, ObservedGeneration: gen,
			Reason: ReasonInvalidTemplate, Message: msg,
		})
		meta.SetStatusCondition(&t.Status.Conditions, metav1.Condition{
			Type: labforgev1alpha1.ConditionStalled, Status: metav1.ConditionTrue, ObservedGeneration: gen,
			Reason: ReasonInvalidTemplate, Message: "Fix the template: " + msg,
		})
	}
	t.Status.ObservedGeneration = gen
}
