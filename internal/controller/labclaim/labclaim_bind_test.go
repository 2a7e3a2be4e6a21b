package labclaim

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

func TestLaunchType(t *testing.T) {
	claimed := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	pool := &labforgev1alpha1.LocalObjectReference{Name: "warm"}
	tests := map[string]struct {
		templateRef   bool
		queuePosition int32
		labCreated    time.Time
		labReady      *time.Time // nil: never Ready before (a bind's lab always is; a test's need not be)
		want          labforgev1alpha1.LaunchType
	}{
		"a lab booted for a template claim":             {templateRef: true, labCreated: claimed.Add(time.Second), want: labforgev1alpha1.LaunchCold},
		"a pool's lab, the claim never waited":          {labCreated: claimed.Add(time.Minute), want: labforgev1alpha1.LaunchWarm},
		"a pool's lab Ready before a claim that waited": {queuePosition: 2, labCreated: claimed.Add(-2 * time.Minute), labReady: ptr.To(claimed.Add(-time.Minute)), want: labforgev1alpha1.LaunchWarm},
		"a pool's lab booted while the claim waited":    {queuePosition: 1, labCreated: claimed.Add(time.Minute), labReady: ptr.To(claimed.Add(2 * time.Minute)), want: labforgev1alpha1.LaunchCold},
		// The class-start benchmark: the pool started the lab before the student came, and
		// the student still waited for its boot.
		"a pool's lab older than the claim, Ready after it": {queuePosition: 3, labCreated: claimed.Add(-time.Minute), labReady: ptr.To(claimed.Add(70 * time.Second)), want: labforgev1alpha1.LaunchCold},
		"a pool's lab Ready in the second the claim came":   {queuePosition: 1, labCreated: claimed.Add(-time.Minute), labReady: ptr.To(claimed), want: labforgev1alpha1.LaunchCold},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			claim := &labforgev1alpha1.LabClaim{
				ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(claimed)},
				Status:     labforgev1alpha1.LabClaimStatus{QueuePosition: tc.queuePosition},
			}
			if tc.templateRef {
				claim.Spec.TemplateRef = &labforgev1alpha1.LocalObjectReference{Name: "t"}
			} else {
				claim.Spec.PoolRef = pool
			}
			env := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(tc.labCreated)}}
			if tc.labReady != nil {
				env.Status.ReadyTime = ptr.To(metav1.NewTime(*tc.labReady))
			}
			if got := launchType(claim, env); got != tc.want {
				t.Errorf("launchType = %q, want %q", got, tc.want)
			}
		})
	}
}

// A pass walks labs listed at its start while the process's other workers bind them: a
// lab another worker is binding or has bound (the cache not showing it yet) is passed
// over without a write, and a lab is written from the cache's current copy, not the
// pass's stale one.
func TestTryBindSkipsLabsBoundHere(t *testing.T) {
	ctx := context.Background()
	ready := func(name string) *labforgev1alpha1.LabEnvironment {
		return &labforgev1alpha1.LabEnvironment{
			ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: "5"},
			Spec: labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "t"},
				PoolRef: &labforgev1alpha1.LocalObjectReference{Name: "p"}},
			Status: labforgev1alpha1.LabEnvironmentStatus{Conditions: []metav1.Condition{{
				Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: "LabReady", LastTransitionTime: metav1.Now()}}},
		}
	}
	claim := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: "bob", UID: "bob-uid"},
		Spec: labforgev1alpha1.LabClaimSpec{PoolRef: &labforgev1alpha1.LocalObjectReference{Name: "p"}}}
	updates := 0
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(ready("lab-a"), ready("lab-b"), ready("lab-c")).
		WithStatusSubresource(&labforgev1alpha1.LabEnvironment{}).
		WithInterceptorFuncs(interceptor.Funcs{Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			updates++
			return c.Update(ctx, obj, opts...)
		}}).Build()
	r := &Reconciler{Client: c, APIReader: c}
	r.expected().ExpectBy(expectBind, ready("lab-a"), "alice-uid")                 // bound by another worker, the cache behind
	r.expected().Reserve(expectBind, client.ObjectKey{Name: "lab-b"}, "carol-uid") // another worker's write in flight

	for _, name := range []string{"lab-a", "lab-b"} {
		s := &scope{claim: claim}
		// Passed over before any read or write.
		if bound, err := r.tryBind(ctx, s, ready(name)); err != nil || bound {
			t.Fatalf("tryBind(%s) = %v, %v; want passed over", name, bound, err)
		}
	}
	if updates != 0 {
		t.Fatalf("%d writes to labs another worker holds, want 0", updates)
	}
	// The pass's copy is older than the cache's: a write from it would conflict.
	stale := ready("lab-c")
	stale.ResourceVersion = "1"
	s := &scope{claim: claim, now: time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)}
	if bound, err := r.tryBind(ctx, s, stale); err != nil || !bound || updates != 1 {
		t.Fatalf("tryBind(lab-c) from a stale copy = %v, %v after %d writes; want bound in one write", bound, err, updates)
	}
	// The bind is expected until the cache shows it: the claim's next pass asks for it,
	// the other workers pass it over.
	if lab, _ := r.expected().ExpectedBy(expectBind, string(claim.UID)); lab.Name != "lab-c" {
		t.Errorf("the bind of %s is expected on lab %q, want lab-c", claim.UID, lab.Name)
	}
	if r.expected().Reserve(expectBind, client.ObjectKey{Name: "lab-c"}, "carol-uid") {
		t.Error("another worker could reserve lab-c, bound here and not cached yet")
	}
	// A try that binds nothing lets go of its reservation.
	if bound, err := r.tryBind(ctx, s, ready("lab-gone")); err != nil || bound {
		t.Fatalf("tryBind(lab-gone) = %v, %v; want not bound", bound, err)
	}
	if r.expected().Expected(expectBind, client.ObjectKey{Name: "lab-gone"}) {
		t.Error("the reservation of a lab not bound outlived its try")
	}
	// The claim's terms go in the bind's one write (no template nor snapshot here: the
	// API's defaults).
	stored := &labforgev1alpha1.LabEnvironment{}
	if err := c.Get(ctx, client.ObjectKey{Name: "lab-c"}, stored); err != nil {
		t.Fatal(err)
	}
	want := &labforgev1alpha1.ClaimTerms{BoundTime: metav1.NewTime(s.now.Truncate(time.Second)), Lifetime: builtinLifetime, SSHUser: "ubuntu"}
	if stored.Spec.ClaimRef == nil || !cmp.Equal(stored.Spec.Terms, want) {
		t.Errorf("lab-c bound to %v with terms %+v, want %+v", stored.Spec.ClaimRef, stored.Spec.Terms, want)
	}
}

func TestBuilt(t *testing.T) {
	cond := func(t, status, reason string) metav1.Condition {
		return metav1.Condition{Type: t, Status: metav1.ConditionStatus(status), Reason: reason}
	}
	tests := map[string]struct {
		conditions []metav1.Condition
		want       bool
	}{
		"a new lab, no status yet": {want: false},
		"its objects being written": {conditions: []metav1.Condition{
			cond(labforgev1alpha1.ConditionVMsScheduled, "Unknown", "Provisioning")}, want: false},
		"its VMs created, none scheduled yet": {conditions: []metav1.Condition{
			cond(labforgev1alpha1.ConditionVMsScheduled, "Unknown", "WaitingForScheduling")}, want: true},
		"its VMs running, bootstrap under way": {conditions: []metav1.Condition{
			cond(labforgev1alpha1.ConditionVMsScheduled, "True", "Scheduled"),
			cond(labforgev1alpha1.ConditionReady, "Unknown", "Bootstrapping")}, want: true},
		"failed for good": {conditions: []metav1.Condition{
			cond(labforgev1alpha1.ConditionVMsScheduled, "True", "Scheduled"),
			cond(labforgev1alpha1.ConditionReady, "False", "BootTimeout"),
			cond(labforgev1alpha1.ConditionStalled, "True", "BootTimeout")}, want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			env := &labforgev1alpha1.LabEnvironment{Status: labforgev1alpha1.LabEnvironmentStatus{Conditions: tc.conditions}}
			if got := built(env); got != tc.want {
				t.Errorf("built = %t, want %t", got, tc.want)
			}
		})
	}
}
