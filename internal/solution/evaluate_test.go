package solution_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/solution"
	"github.com/labforge/labforge/internal/templatecheck"
)

func deployment(name string, ready int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": name, "namespace": "default"},
		"spec":     map[string]any{"replicas": int64(3)},
		"status":   map[string]any{"readyReplicas": ready},
	}}
}

func pod(ns, name, phase string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"status":   map[string]any{"phase": phase},
	}}
}

// TestEvaluate runs compiled checks over objects as the watches hold them.
func TestEvaluate(t *testing.T) {
	web := labforgev1alpha1.SolutionCheck{
		Name: "web-ready", Description: "The web Deployment has 3 ready replicas", Hint: "Look at the Deployment's image",
		Resource:   labforgev1alpha1.CheckResource{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "default", Name: "web"},
		Expression: "object != null && object.status.readyReplicas == object.spec.replicas",
	}
	running := labforgev1alpha1.SolutionCheck{
		Name:       "all-running",
		Resource:   labforgev1alpha1.CheckResource{Version: "v1", Resource: "pods"},
		Expression: "size(objects) > 0 && objects.all(p, p.status.phase == 'Running')",
	}
	order := running
	order.Name, order.Expression = "sorted", "objects.map(p, p.metadata.namespace + '/' + p.metadata.name) == ['a/x', 'b/x', 'b/y']"
	missingField := web
	missingField.Name, missingField.Expression = "typo", "object.status.readyReplicaz == 3"
	costly := running
	costly.Name, costly.Expression = "costly", "objects.all(a, objects.all(b, objects.all(c, a.metadata.name != 'nope')))"

	tests := map[string]struct {
		check labforgev1alpha1.SolutionCheck
		objs  []*unstructured.Unstructured
		want  solution.Result
	}{
		"one object passes": {check: web, objs: []*unstructured.Unstructured{deployment("web", 3)},
			want: solution.Result{Name: "web-ready", State: solution.Passed, Message: "The web Deployment has 3 ready replicas"}},
		"one object fails with the hint": {check: web, objs: []*unstructured.Unstructured{deployment("web", 1)},
			want: solution.Result{Name: "web-ready", State: solution.Failed, Message: "Look at the Deployment's image"}},
		"an absent object is null": {check: web,
			want: solution.Result{Name: "web-ready", State: solution.Failed, Message: "Look at the Deployment's image"}},
		"a list": {check: running, objs: []*unstructured.Unstructured{pod("a", "x", "Running"), pod("b", "x", "Running")},
			want: solution.Result{Name: "all-running", State: solution.Passed, Message: "The check passes"}},
		"a list failing without hint or description": {check: running, objs: []*unstructured.Unstructured{pod("a", "x", "Pending")},
			want: solution.Result{Name: "all-running", State: solution.Failed, Message: "The check does not pass yet"}},
		"a list is sorted by namespace and name": {check: order, objs: []*unstructured.Unstructured{pod("b", "y", ""), pod("a", "x", ""), pod("b", "x", "")},
			want: solution.Result{Name: "sorted", State: solution.Passed, Message: "The check passes"}},
		"a runtime error never passes": {check: missingField, objs: []*unstructured.Unstructured{deployment("web", 3)},
			want: solution.Result{Name: "typo", State: solution.Unevaluable, Message: "Cannot evaluate: the expression failed: no such key: readyReplicaz"}},
		"too many objects": {check: running, objs: pods(templatecheck.MaxCheckObjects + 1),
			want: solution.Result{Name: "all-running", State: solution.Unevaluable, Message: "Cannot evaluate: the check selects 501 objects, more than 500: select fewer by name or label"}},
		"the runtime cost budget stops an evaluation": {check: costly, objs: pods(200),
			want: solution.Result{Name: "costly", State: solution.Unevaluable, Message: "Cannot evaluate: the expression failed: operation cancelled: actual cost limit exceeded"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// Stored compilation: the static estimate already refused "costly" at
			// validation; a template from before a rule must still be bounded at run time.
			prg, err := templatecheck.CompileStoredCheck(&tc.check)
			if err != nil {
				t.Fatal(err)
			}
			got := solution.Evaluate(context.Background(), &tc.check, prg, tc.objs)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("result (-want +got):\n%s", diff)
			}
		})
	}
}

func pods(n int) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, n)
	for i := range out {
		out[i] = pod("default", fmt.Sprintf("p-%d", i), "Running")
	}
	return out
}
