package cloudinit_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/render/cloudinit"
)

// TestOperatorRBACForChecks: the lab grants the operator get, list and watch on exactly
// the resources its template's checks name (only the named objects where every check of
// a resource names one), and a template without checks grants what it always did.
func TestOperatorRBACForChecks(t *testing.T) {
	checks := []labforgev1alpha1.SolutionCheck{
		{Name: "web", Resource: labforgev1alpha1.CheckResource{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "shop", Name: "web"}, Expression: "true"},
		{Name: "api", Resource: labforgev1alpha1.CheckResource{Group: "apps", Version: "v1", Resource: "deployments", Namespace: "shop", Name: "api"}, Expression: "true"},
		{Name: "pods", Resource: labforgev1alpha1.CheckResource{Version: "v1", Kind: "Pod", LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}, Expression: "true"},
		{Name: "pods-again", Resource: labforgev1alpha1.CheckResource{Version: "v1", Resource: "pods", Namespace: "shop", Name: "one"}, Expression: "true"},
	}
	manifest, err := cloudinit.OperatorRBAC(checks)
	if err != nil {
		t.Fatal(err)
	}
	docs := yamlDocs(t, manifest)
	if len(docs) != 6 {
		t.Fatalf("operator RBAC has %d objects, want the marker's Role and RoleBinding, the Services exposer's and the checks' ClusterRole and ClusterRoleBinding", len(docs))
	}
	name := "labforge-solution-checks-reader"
	role, binding := docs["ClusterRole/"+name], docs["ClusterRoleBinding/"+name]
	eq(t, "ClusterRole rules", role["rules"], []map[string]any{
		{"apiGroups": []string{"apps"}, "resources": []string{"deployments"}, "resourceNames": []string{"web", "api"}, "verbs": []string{"get", "list", "watch"}},
		{"apiGroups": []string{""}, "resources": []string{"pods"}, "verbs": []string{"get", "list", "watch"}},
	})
	eq(t, "ClusterRoleBinding roleRef", binding["roleRef"], map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name})
	eq(t, "ClusterRoleBinding subjects", binding["subjects"], []map[string]any{{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": lab.OperatorUser}})

	plain, err := cloudinit.OperatorRBAC(nil)
	if err != nil {
		t.Fatal(err)
	}
	checkOperatorRBAC(t, plain)
}
