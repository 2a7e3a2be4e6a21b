package labclaim

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/index"
)

// Two claims a moment apart on a template capped at one lab: the second pass's cache does
// not show the first claim's lab yet (it already shows the first claim bound), and the
// second claim must wait all the same. A create the API server refused holds no room.
func TestColdLabCapSurvivesALaggingCache(t *testing.T) {
	ctx := context.Background()
	t0 := metav1.NewTime(time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC))
	tmpl := &labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Name: "capped"},
		Spec: labforgev1alpha1.LabTemplateSpec{Claims: labforgev1alpha1.TemplateClaims{
			NamespaceSelector: &metav1.LabelSelector{}, MaxBooting: 1, MaxLabs: 1}}}
	claim := func(name, uid string) *labforgev1alpha1.LabClaim {
		return &labforgev1alpha1.LabClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: name, UID: typesUID(uid), CreationTimestamp: t0},
			Spec:       labforgev1alpha1.LabClaimSpec{TemplateRef: &labforgev1alpha1.LocalObjectReference{Name: "capped"}},
		}
	}
	first, second := claim("a-first", "uid-a"), claim("b-second", "uid-b")
	lagging, refuse := true, false
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(tmpl, first, second).
		WithStatusSubresource(&labforgev1alpha1.LabClaim{}).
		WithIndex(&labforgev1alpha1.LabClaim{}, index.ClaimByTemplate, index.ClaimTemplate).
		WithInterceptorFuncs(interceptor.Funcs{
			List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
				if _, labs := list.(*labforgev1alpha1.LabEnvironmentList); labs && lagging {
					return nil // the cache has seen no lab yet
				}
				return c.List(ctx, list, opts...)
			},
			Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
				if refuse {
					return errors.New("etcdserver: request timed out")
				}
				return c.Create(ctx, obj, opts...)
			},
		}).Build()
	r := &Reconciler{Client: c, APIReader: c}
	labs := func() []string {
		var envs labforgev1alpha1.LabEnvironmentList
		lagging = false
		defer func() { lagging = true }()
		if err := c.List(ctx, &envs); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range envs.Items {
			names = append(names, e.Name)
		}
		return names
	}

	sFirst := &scope{claim: first, template: tmpl}
	if err := r.bindCold(ctx, sFirst); err != nil || sFirst.env == nil {
		t.Fatalf("first claim: bindCold = %v, lab %v; want a lab", err, sFirst.env)
	}
	// The claim cache shows the first claim bound; the lab cache does not show its lab.
	first.Status.Lab = sFirst.env.Name
	r.expected().Lower(expectBind, client.ObjectKeyFromObject(sFirst.env))
	if err := c.Status().Update(ctx, first); err != nil {
		t.Fatal(err)
	}

	sSecond := &scope{claim: second, template: tmpl}
	if err := r.bindCold(ctx, sSecond); err != nil {
		t.Fatal(err)
	}
	if sSecond.env != nil {
		t.Fatalf("second claim got lab %s past a cap of 1", sSecond.env.Name)
	}
	wantMessage := "Waiting for a lab of LabTemplate capped: its claims hold 1 of at most 1 labs (spec.claims.maxLabs); number 1 in line"
	if sSecond.pendingReason != labforgev1alpha1.ReasonWaitingForLab || sSecond.pendingMessage != wantMessage || sSecond.queuePosition != 1 {
		t.Errorf("second claim waits with %q, %q, position %d; want %q, %q, 1",
			sSecond.pendingReason, sSecond.pendingMessage, sSecond.queuePosition, labforgev1alpha1.ReasonWaitingForLab, wantMessage)
	}
	if diff := cmp.Diff([]string{coldLabName(first)}, labs()); diff != "" {
		t.Errorf("labs (-want +got):\n%s", diff)
	}

	// The first lab is gone (the cache agrees); the second claim's create is refused: the
	// refused create must not hold the room, so the next pass boots the lab.
	if err := c.Delete(ctx, sFirst.env); err != nil {
		t.Fatal(err)
	}
	// Until its finalizer has run, a lab being deleted still holds the room.
	lagging = false
	if sSecond = (&scope{claim: second, template: tmpl}); r.bindCold(ctx, sSecond) != nil || sSecond.env != nil {
		t.Fatalf("second claim booted a lab while the first was being deleted: %v", sSecond.env)
	}
	gone := &labforgev1alpha1.LabEnvironment{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(sFirst.env), gone); err != nil {
		t.Fatal(err)
	}
	gone.Finalizers = nil
	if err := c.Update(ctx, gone); err != nil {
		t.Fatal(err)
	}
	lagging, refuse = false, true
	sSecond = &scope{claim: second, template: tmpl}
	if err := r.bindCold(ctx, sSecond); err == nil {
		t.Fatal("bindCold reported no error for a refused create")
	}
	refuse = false
	sSecond = &scope{claim: second, template: tmpl}
	if err := r.bindCold(ctx, sSecond); err != nil || sSecond.env == nil {
		t.Fatalf("second claim after the first lab went: bindCold = %v, lab %v, waiting %q; want a lab", err, sSecond.env, sSecond.pendingMessage)
	}
}

func TestCountColdLabs(t *testing.T) {
	now := metav1.Now()
	lab := func(name string, mutate func(*labforgev1alpha1.LabEnvironment)) labforgev1alpha1.LabEnvironment {
		env := labforgev1alpha1.LabEnvironment{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue}},
			Spec: labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "t"},
				ClaimRef: &labforgev1alpha1.ClaimReference{Namespace: "s", Name: name, UID: typesUID(name)}},
		}
		if mutate != nil {
			mutate(&env)
		}
		return env
	}
	envs := []labforgev1alpha1.LabEnvironment{
		lab("booting", nil),
		lab("ready", func(e *labforgev1alpha1.LabEnvironment) { e.Status.ReadyTime = &now }),
		lab("was-ready", func(e *labforgev1alpha1.LabEnvironment) {
			e.Status.ReadyTime = &now
			e.Status.Conditions = []metav1.Condition{{Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionFalse}}
		}),
		lab("failed", func(e *labforgev1alpha1.LabEnvironment) {
			e.Status.Conditions = []metav1.Condition{{Type: labforgev1alpha1.ConditionStalled, Status: metav1.ConditionTrue}}
		}),
		lab("deleting", func(e *labforgev1alpha1.LabEnvironment) { e.DeletionTimestamp = &now }),
		lab("of-a-pool", func(e *labforgev1alpha1.LabEnvironment) {
			e.Spec.PoolRef = &labforgev1alpha1.LocalObjectReference{Name: "p"}
		}),
		lab("admins-own", func(e *labforgev1alpha1.LabEnvironment) { e.Labels = nil }),
		lab("unbound", func(e *labforgev1alpha1.LabEnvironment) { e.Spec.ClaimRef = nil }),
		lab("other-template", func(e *labforgev1alpha1.LabEnvironment) { e.Spec.TemplateRef.Name = "u" }),
	}
	got := countColdLabs(envs, "t")
	if got.total != 5 || got.booting != 1 {
		t.Errorf("total %d, booting %d; want 5, 1", got.total, got.booting)
	}
	want := map[string]bool{"booting": true, "ready": true, "was-ready": true, "failed": true, "deleting": true}
	if diff := cmp.Diff(want, got.names); diff != "" {
		t.Errorf("names (-want +got):\n%s", diff)
	}
	if r := got.room(2, 6); r != 1 {
		t.Errorf("room(maxBooting 2, maxLabs 6) = %d, want 1 (one more may boot)", r)
	}
	if r := got.room(5, 5); r != 0 {
		t.Errorf("room(maxBooting 5, maxLabs 5) = %d, want 0 (five labs held)", r)
	}
}

func typesUID(s string) types.UID { return types.UID(s) }
