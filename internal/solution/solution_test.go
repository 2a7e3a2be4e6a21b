package solution_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/solution"
)

// TestEvaluatorLifecycle: a claim observed before the evaluator starts is woken once it
// does; a lab the operator cannot reach says so on every check and wakes its claim; Stop
// and the manager's stop end the watches.
func TestEvaluatorLifecycle(t *testing.T) {
	e := solution.NewEvaluator(func(context.Context, string) (*rest.Config, error) {
		return nil, errors.New("no credential for the lab")
	})
	key := types.NamespacedName{Namespace: "class", Name: "alice"}
	checks := []labforgev1alpha1.SolutionCheck{{Name: "web", Resource: labforgev1alpha1.CheckResource{Version: "v1", Resource: "pods"}, Expression: "true"}}

	if got := e.Observe(key, "uid-1", "lab-1", checks); got[0].State != solution.Waiting || got[0].Message != "The operator is starting" {
		t.Fatalf("before Start: %+v", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- e.Start(ctx) }()
	wake := func(what string) {
		t.Helper()
		select {
		case ev := <-e.Events():
			if ev.Object.GetNamespace() != key.Namespace || ev.Object.GetName() != key.Name {
				t.Fatalf("%s: woke %s/%s", what, ev.Object.GetNamespace(), ev.Object.GetName())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: the claim was not woken", what)
		}
	}
	wake("after Start")
	e.Observe(key, "uid-1", "lab-1", checks)
	wake("after the first evaluation")
	got := e.Observe(key, "uid-1", "lab-1", checks)
	if want := (solution.Result{Name: "web", State: solution.Unevaluable, Message: "Cannot evaluate: no credential for the lab"}); got[0] != want {
		t.Fatalf("unreachable lab: %+v, want %+v", got[0], want)
	}
	if n := e.Watching(); n != 1 {
		t.Fatalf("watching %d labs, want 1", n)
	}
	e.Stop(key)
	if n := e.Watching(); n != 0 {
		t.Fatalf("after Stop: watching %d labs, want 0", n)
	}
	e.Observe(key, "uid-2", "lab-2", checks)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := e.Watching(); n != 0 {
		t.Fatalf("after the manager stopped: watching %d labs, want 0", n)
	}
}
