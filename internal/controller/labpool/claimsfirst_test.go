package labpool

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

func TestCountInFlight(t *testing.T) {
	claim := func(uid string, conditions ...string) labforgev1alpha1.LabClaim {
		c := labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c-" + uid, UID: types.UID(uid)}}
		for _, t := range conditions {
			c.Status.Conditions = append(c.Status.Conditions, metav1.Condition{Type: t, Status: metav1.ConditionTrue})
		}
		return c
	}
	boundTo := func(name, uid string, ready bool) *labforgev1alpha1.LabEnvironment {
		e := env(labSpec{name: name, ready: ready})
		e.Spec.ClaimRef = &labforgev1alpha1.ClaimReference{Namespace: "ns", Name: "c-" + uid, UID: types.UID(uid)}
		return e
	}
	ready := func(name string) *labforgev1alpha1.LabEnvironment { return env(labSpec{name: name, ready: true}) }
	tests := map[string]struct {
		claims  []labforgev1alpha1.LabClaim
		labs    []*labforgev1alpha1.LabEnvironment
		waiting int32
		want    int
	}{
		"nothing asked":                         {labs: []*labforgev1alpha1.LabEnvironment{ready("p-0")}},
		"two waiting, one Ready lab free":       {claims: []labforgev1alpha1.LabClaim{claim("a"), claim("b")}, labs: []*labforgev1alpha1.LabEnvironment{ready("p-0")}, waiting: 2, want: 1},
		"waiting for a lab to boot: the refill": {claims: []labforgev1alpha1.LabClaim{claim("a")}, labs: []*labforgev1alpha1.LabEnvironment{env(labSpec{name: "p-0"})}, waiting: 1},
		"bound to a Ready lab, handover underway": {
			claims: []labforgev1alpha1.LabClaim{claim("a")}, labs: []*labforgev1alpha1.LabEnvironment{boundTo("p-0", "a", true)}, want: 1,
		},
		"bound to a lab still booting":   {claims: []labforgev1alpha1.LabClaim{claim("a")}, labs: []*labforgev1alpha1.LabEnvironment{boundTo("p-0", "a", false)}},
		"served: the claim is Ready":     {claims: []labforgev1alpha1.LabClaim{claim("a", "Ready")}, labs: []*labforgev1alpha1.LabEnvironment{boundTo("p-0", "a", true)}},
		"refused after the bind":         {claims: []labforgev1alpha1.LabClaim{claim("a", "Stalled")}, labs: []*labforgev1alpha1.LabEnvironment{boundTo("p-0", "a", true)}},
		"a free Ready lab, none waiting": {claims: []labforgev1alpha1.LabClaim{claim("a", "Ready")}, labs: []*labforgev1alpha1.LabEnvironment{ready("p-1")}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := countInFlight(tc.claims, tc.labs, tc.waiting); got != tc.want {
				t.Errorf("countInFlight = %d, want %d", got, tc.want)
			}
		})
	}
}

// TestClaimsFirst follows one pool through a burst: its refill waits while claims are in
// flight, never longer than the limit (longer the more claims are in flight, up to a
// cap), and starts a new wait after it went ahead.
func TestClaimsFirst(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(statusT0)
	r := &Reconciler{Clock: clk, ClaimsFirst: 500 * time.Millisecond}
	steps := []struct {
		advance  time.Duration
		inFlight int
		want     time.Duration
	}{
		{0, 0, 0},                      // nothing in flight: create
		{0, 3, 500 * time.Millisecond}, // a burst begins: wait
		{200 * time.Millisecond, 5, 300 * time.Millisecond}, // still in flight: wait out the rest
		{300 * time.Millisecond, 2, 0},                      // the limit: create whatever comes
		{10 * time.Millisecond, 2, 500 * time.Millisecond},  // a new wait begins
		{100 * time.Millisecond, 0, 0},                      // the burst is served: create
		{0, 1, 500 * time.Millisecond},                      // and the next one waits afresh
		{100 * time.Millisecond, 0, 0},
		{0, 20, 1200 * time.Millisecond},       // a big burst waits longer: 60 ms a claim
		{1 * time.Second, 50, 2 * time.Second}, // and longer as it grows, up to 3 s
		{1 * time.Second, 10, 1 * time.Second}, // its peak counts, not what is left
		{1 * time.Second, 100, 0},              // never past 3 s
	}
	for i, step := range steps {
		clk.SetTime(clk.Now().Add(step.advance))
		if got := r.claimsFirst("pool", step.inFlight, false); got != step.want {
			t.Errorf("step %d: claimsFirst = %s, want %s", i, got, step.want)
		}
	}
	if got := r.claimsFirst("other", 4, false); got != 500*time.Millisecond {
		t.Errorf("another pool: claimsFirst = %s, want its own wait", got)
	}
	off := &Reconciler{Clock: clk, ClaimsFirst: -1}
	if got := off.claimsFirst("pool", 4, false); got != 0 {
		t.Errorf("disabled: claimsFirst = %s, want 0", got)
	}
	// Claims beyond the Ready labs wait for the refill: however many, no longer than 500 ms.
	outrun := &Reconciler{Clock: clk, ClaimsFirst: 500 * time.Millisecond}
	if got := outrun.claimsFirst("pool", 100, true); got != 500*time.Millisecond {
		t.Errorf("outrun by its claims: claimsFirst = %s, want 500ms", got)
	}
}
