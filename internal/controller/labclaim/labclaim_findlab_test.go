package labclaim

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/expectations"
	"github.com/labforge/labforge/internal/index"
)

// TestFindLabWithALaggingCache covers what an API server restart provokes only by chance:
// a LabEnvironment cache that has not yet seen a bind must neither make the claim take a
// second lab nor have its lab declared lost. The fake clients stand in for the cache and
// the API server only to disagree on purpose.
func TestFindLabWithALaggingCache(t *testing.T) {
	const uid = types.UID("claim-uid")
	env := func(name string, claimUID types.UID) *labforgev1alpha1.LabEnvironment {
		e := &labforgev1alpha1.LabEnvironment{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "t"}},
		}
		if claimUID != "" {
			e.Spec.ClaimRef = &labforgev1alpha1.ClaimReference{Namespace: "students", Name: "alice", UID: claimUID}
		}
		return e
	}
	tests := map[string]struct {
		// cached is the lab as the cache has it; live as the API server has it.
		cached, live *labforgev1alpha1.LabEnvironment
		// remembered: this process bound the claim to lab-a; statusLab: the claim's
		// status names it; terminal: the claim is Expired.
		remembered, terminal bool
		statusLab            string
		want                 string
		wantRemembered       bool
	}{
		"the cache shows the bind": {
			cached: env("lab-a", uid), live: env("lab-a", uid), remembered: true, want: "lab-a",
		},
		"this process bound it, the cache has not seen it": {
			cached: env("lab-a", ""), live: env("lab-a", uid), remembered: true, want: "lab-a", wantRemembered: true,
		},
		"the status names it, the cache has not seen it": {
			cached: env("lab-a", ""), live: env("lab-a", uid), statusLab: "lab-a", want: "lab-a",
		},
		"the remembered lab went to another claim": {
			cached: env("lab-a", ""), live: env("lab-a", "other"), remembered: true,
		},
		"the lab the status names is gone": {
			statusLab: "lab-a",
		},
		"never bound: the API server is not asked": {
			// The API server would answer; an unbound claim must not cost a read.
			live: env("lab-a", uid),
		},
		"an expired claim: its lab is not looked for": {
			live: env("lab-a", uid), statusLab: "lab-a", terminal: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			scheme := testScheme(t)
			cache := fake.NewClientBuilder().WithScheme(scheme).WithIndex(&labforgev1alpha1.LabEnvironment{}, index.LabByClaimUID, index.LabClaimUID)
			if tc.cached != nil {
				cache = cache.WithObjects(tc.cached)
			}
			apiServer := fake.NewClientBuilder().WithScheme(scheme)
			if tc.live != nil {
				apiServer = apiServer.WithObjects(tc.live)
			}
			r := &Reconciler{Client: cache.Build(), APIReader: apiServer.Build()}
			if tc.remembered {
				r.expected().ExpectBy(expectBind, env("lab-a", ""), string(uid))
			}
			claim := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: "alice", UID: uid}}
			claim.Status.Lab = tc.statusLab
			if tc.terminal {
				claim.Status.Conditions = []metav1.Condition{{Type: labforgev1alpha1.ConditionExpired, Status: metav1.ConditionTrue, Reason: labforgev1alpha1.ReasonExpired}}
			}
			s := &scope{claim: claim}
			if err := r.findLab(context.Background(), s); err != nil {
				t.Fatal(err)
			}
			got := ""
			if s.env != nil {
				got = s.env.Name
			}
			if got != tc.want {
				t.Errorf("found lab %q, want %q", got, tc.want)
			}
			if _, remembered := r.expected().ExpectedBy(expectBind, string(uid)); remembered != tc.wantRemembered {
				t.Errorf("bind remembered: %v, want %v", remembered, tc.wantRemembered)
			}
		})
	}
}

// testScheme returns a scheme that knows labforge's kinds.
func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := labforgev1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}

// TestCacheLagsBehindTheBoundStatus: after this process wrote a claim's bound status, a
// pass on the claim as the cache had it before waits (it would take the bind for new),
// until the cache shows that write or a newer one, or the expectation lapses.
func TestCacheLagsBehindTheBoundStatus(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	r := &Reconciler{Clock: clk}
	claim := func(rv string) *labforgev1alpha1.LabClaim {
		return &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: "alice", UID: "alice-uid", ResourceVersion: rv}}
	}
	steps := []struct {
		do       func()
		cachedRV string
		want     bool
	}{
		{cachedRV: "4", want: false}, // nothing written yet
		{do: func() { r.expected().Expect(expectBoundStatus, claim("6")) }, cachedRV: "5", want: true},
		{cachedRV: "5", want: true},
		{cachedRV: "7", want: false}, // newer than the write: it is in
		{cachedRV: "5", want: false}, // met once, for good
		{do: func() { r.expected().Expect(expectBoundStatus, claim("9")) }, cachedRV: "8", want: true},
		{do: func() { clk.SetTime(clk.Now().Add(expectations.DefaultTTL)) }, cachedRV: "8", want: false},
	}
	for i, step := range steps {
		if step.do != nil {
			step.do()
		}
		if got := r.cacheLags(claim(step.cachedRV)); got != step.want {
			t.Errorf("step %d: cacheLags(resourceVersion %s) = %t, want %t", i, step.cachedRV, got, step.want)
		}
	}
}
