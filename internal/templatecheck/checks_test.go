package templatecheck_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/templatecheck"
)

func deploymentCheck(name, expr string) labforgev1alpha1.SolutionCheck {
	return labforgev1alpha1.SolutionCheck{
		Name:       name,
		Resource:   labforgev1alpha1.CheckResource{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "default", Name: "web"},
		Expression: expr,
	}
}

func podsCheck(name, expr string) labforgev1alpha1.SolutionCheck {
	return labforgev1alpha1.SolutionCheck{
		Name:       name,
		Resource:   labforgev1alpha1.CheckResource{Version: "v1", Resource: "pods", Namespace: "default"},
		Expression: expr,
	}
}

// TestChecks: every expression is compiled by the template's validation, and a bad one
// is refused with the compiler's own words.
func TestChecks(t *testing.T) {
	tests := map[string]struct {
		checks []labforgev1alpha1.SolutionCheck
		want   []string
	}{
		"one object": {checks: []labforgev1alpha1.SolutionCheck{
			deploymentCheck("replicas", "object != null && object.status.readyReplicas == 3"),
		}},
		"a list, with the Kubernetes libraries": {checks: []labforgev1alpha1.SolutionCheck{
			podsCheck("running", "objects.all(p, p.status.phase == 'Running') && objects.exists(p, quantity(p.spec.containers[0].resources.limits.memory).isLessThan(quantity('1Gi')))"),
		}},
		"syntax error": {
			checks: []labforgev1alpha1.SolutionCheck{deploymentCheck("broken", "object.status.readyReplicas ==")},
			want: []string{"check broken: the expression does not compile: ERROR: <input>:1:31: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}\n" +
				" | object.status.readyReplicas ==\n" +
				" | ..............................^"},
		},
		"undeclared variable": {
			checks: []labforgev1alpha1.SolutionCheck{deploymentCheck("typo", "obj.status.readyReplicas == 3")},
			want: []string{"check typo: the expression does not compile: ERROR: <input>:1:1: undeclared reference to 'obj' (in container '')\n" +
				" | obj.status.readyReplicas == 3\n" +
				" | ^"},
		},
		"not a bool": {
			checks: []labforgev1alpha1.SolutionCheck{deploymentCheck("count", "size(object.metadata.name)")},
			want:   []string{"check count: the expression must evaluate to a bool, not int"},
		},
		"a list read as one object": {
			checks: []labforgev1alpha1.SolutionCheck{podsCheck("wrong-var", "object.status.phase == 'Running'")},
			want:   []string{"check wrong-var: the expression reads object, but the check selects a list (no resource.name): read objects"},
		},
		"too costly": {
			checks: []labforgev1alpha1.SolutionCheck{podsCheck("cubic",
				"objects.all(a, objects.all(b, objects.all(c, a.metadata.name != b.metadata.name || c.metadata.name != '')))")},
			want: []string{"check cubic: the expression's estimated cost 13626252502 exceeds the limit 10000000 (a list of 500 objects, values of 1024 characters): iterate less, e.g. select fewer objects by name or label"},
		},
		"duplicate names, two selectors and no kind": {
			checks: []labforgev1alpha1.SolutionCheck{
				deploymentCheck("same", "true"),
				{Name: "same", Resource: labforgev1alpha1.CheckResource{Version: "v1", Name: "x", LabelSelector: &metav1.LabelSelector{}}, Expression: "true"},
			},
			want: []string{
				`checks[1].name "same" is not unique`,
				"check same: exactly one of resource.kind and resource.resource must be set",
				"check same: resource.name and resource.labelSelector are exclusive",
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec := validSpec()
			spec.Checks = tc.checks
			_, got := templatecheck.Check(&spec, hostcluster.Network{})
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
		})
	}
}

func TestResourceOf(t *testing.T) {
	for _, tc := range []struct {
		in   labforgev1alpha1.CheckResource
		want schema.GroupVersionResource
	}{
		{labforgev1alpha1.CheckResource{Group: "apps", Version: "v1", Kind: "Deployment"}, schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}},
		{labforgev1alpha1.CheckResource{Group: "networking.k8s.io", Version: "v1", Kind: "NetworkPolicy"}, schema.GroupVersionResource{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}},
		{labforgev1alpha1.CheckResource{Version: "v1", Resource: "endpoints"}, schema.GroupVersionResource{Version: "v1", Resource: "endpoints"}},
	} {
		if got := templatecheck.ResourceOf(tc.in); got != tc.want {
			t.Errorf("ResourceOf(%+v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
