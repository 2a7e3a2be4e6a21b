package labpool

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

var statusT0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

type labSpec struct {
	name    string
	age     time.Duration // created statusT0 + age
	gen     int64
	ready   bool
	failed  bool
	bound   bool
	deleted bool
}

func env(l labSpec) *labforgev1alpha1.LabEnvironment {
	e := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: l.name, CreationTimestamp: metav1.NewTime(statusT0.Add(l.age))}}
	e.Status.TemplateGeneration = l.gen
	if l.ready {
		rt := metav1.NewTime(statusT0.Add(l.age + time.Minute))
		e.Status.ReadyTime = &rt
		e.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: "True"}}
	}
	if l.failed {
		e.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: "False"}, {Type: "Stalled", Status: "True"}}
	}
	if l.bound {
		e.Spec.ClaimRef = &labforgev1alpha1.ClaimReference{Namespace: "ns", Name: "c", UID: "u"}
	}
	if l.deleted {
		now := metav1.NewTime(statusT0)
		e.DeletionTimestamp = &now
	}
	return e
}

func TestStateOf(t *testing.T) {
	tests := map[string]struct {
		lab  labSpec
		want LabState
	}{
		"booting":                 {lab: labSpec{}, want: StateBooting},
		"ready":                   {lab: labSpec{ready: true}, want: StateReady},
		"failed":                  {lab: labSpec{failed: true}, want: StateFailed},
		"bound beats ready":       {lab: labSpec{ready: true, bound: true}, want: StateBound},
		"bound beats failed":      {lab: labSpec{failed: true, bound: true}, want: StateBound},
		"deleting beats anything": {lab: labSpec{ready: true, bound: true, deleted: true}, want: StateDeleting},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := stateOf(env(tc.lab)); got != tc.want {
				t.Errorf("stateOf() = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestFailureEvidence(t *testing.T) {
	tests := map[string]struct {
		labs []labSpec
		want []string
	}{
		"no failures": {labs: []labSpec{{name: "a", gen: 2, ready: true}}},
		"failures in a row": {labs: []labSpec{
			{name: "a", gen: 2, ready: true},
			{name: "b", age: time.Hour, gen: 2, failed: true},
			{name: "c", age: 2 * time.Hour, gen: 2, failed: true},
		}, want: []string{"b", "c"}},
		"a later success clears earlier failures": {labs: []labSpec{
			{name: "b", gen: 2, failed: true},
			{name: "a", age: time.Hour, gen: 2, ready: true, bound: true},
			{name: "c", age: 2 * time.Hour, gen: 2, failed: true},
		}, want: []string{"c"}},
		"failures of an older template do not count": {labs: []labSpec{
			{name: "old", gen: 1, failed: true},
			{name: "new", age: time.Hour, gen: 2, failed: true},
		}, want: []string{"new"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var envs []*labforgev1alpha1.LabEnvironment
			for _, l := range tc.labs {
				envs = append(envs, env(l))
			}
			var got []string
			for _, e := range envs {
				if failureEvidence(envs, 2)[e.Name] {
					got = append(got, e.Name)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("evidence (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSetStatus(t *testing.T) {
	type cond struct{ Status, Reason string }
	tests := map[string]struct {
		scope scope
		want  map[string]cond
	}{
		"warm": {
			scope: scope{plan: Plan{Target: 3, Rule: labforgev1alpha1.ScalingReplicas, Counts: Counts{Ready: 3, Booting: 1, Bound: 2}}},
			want:  map[string]cond{"Ready": {"True", "Warm"}},
		},
		"filling": {
			scope: scope{plan: Plan{Target: 3, Rule: labforgev1alpha1.ScalingReplicas, Counts: Counts{Ready: 1, Booting: 2, Waiting: 4}}},
			want:  map[string]cond{"Ready": {"Unknown", "Filling"}},
		},
		"a window's floor is the warm target": {
			scope: scope{plan: Plan{Target: 30, Rule: labforgev1alpha1.ScalingMinLabs, Counts: Counts{Ready: 10, Booting: 20}}, sizing: Sizing{Window: "monday"}},
			want:  map[string]cond{"Ready": {"Unknown", "Filling"}},
		},
		"template missing": {
			scope: scope{problemReason: labforgev1alpha1.ReasonTemplateNotFound, problemMessage: "LabTemplate t does not exist"},
			want:  map[string]cond{"Ready": {"False", "TemplateNotFound"}, "Stalled": {"True", "TemplateNotFound"}},
		},
		"invalid schedule": {
			scope: scope{plan: Plan{Target: 3, Counts: Counts{Ready: 3}}, sizing: Sizing{Err: errors.New("window a: bad")}},
			want:  map[string]cond{"Ready": {"False", "InvalidSchedule"}, "Stalled": {"True", "InvalidSchedule"}},
		},
		"circuit open": {
			scope: scope{circuitOpen: true, evidence: 3, template: &labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Generation: 4}}},
			want:  map[string]cond{"Ready": {"False", "RepeatedBootFailures"}, "Stalled": {"True", "RepeatedBootFailures"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := tc.scope
			s.pool = &labforgev1alpha1.LabPool{ObjectMeta: metav1.ObjectMeta{Name: "p", Generation: 2}}
			s.pool.Spec.Replicas = 3
			s.pool.Spec.TemplateRef.Name = "t"
			setStatus(&s, true)
			got := map[string]cond{}
			for _, c := range s.pool.Status.Conditions {
				got[c.Type] = cond{string(c.Status), c.Reason}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("conditions (-want +got):\n%s", diff)
			}
			st := s.pool.Status
			c := s.plan.Counts
			if st.Replicas != c.Ready+c.Booting || st.ReadyReplicas != c.Ready || st.BoundReplicas != c.Bound || st.WaitingClaims != c.Unserved() {
				t.Errorf("counts %+v do not match the plan's %+v", st, c)
			}
			if st.Selector != "labforge.dev/pool=p" || st.ObservedGeneration != 2 {
				t.Errorf("selector %q, observedGeneration %d", st.Selector, st.ObservedGeneration)
			}
		})
	}
}

func TestCountWaiting(t *testing.T) {
	claim := func(uid, lab string, conditions ...string) labforgev1alpha1.LabClaim {
		c := labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c-" + uid, UID: types.UID(uid)}}
		c.Status.Lab = lab
		for _, t := range conditions {
			c.Status.Conditions = append(c.Status.Conditions, metav1.Condition{Type: t, Status: metav1.ConditionTrue})
		}
		return c
	}
	boundTo := func(name, uid string) *labforgev1alpha1.LabEnvironment {
		e := env(labSpec{name: name, ready: true})
		e.Spec.ClaimRef = &labforgev1alpha1.ClaimReference{Namespace: "ns", Name: "c-" + uid, UID: types.UID(uid)}
		return e
	}
	deleting := claim("d", "")
	now := metav1.NewTime(statusT0)
	deleting.DeletionTimestamp = &now
	elsewhere := claim("e", "")
	elsewhere.Namespace = "other"
	tests := map[string]struct {
		claims []labforgev1alpha1.LabClaim
		labs   []*labforgev1alpha1.LabEnvironment
		want   int32
	}{
		"a claim from a namespace the pool does not admit": {claims: []labforgev1alpha1.LabClaim{elsewhere, claim("a", "")}, want: 1},
		"a claim with no lab waits":                        {claims: []labforgev1alpha1.LabClaim{claim("a", "")}, labs: []*labforgev1alpha1.LabEnvironment{env(labSpec{name: "p-0", ready: true})}, want: 1},
		"a claim whose status names its lab":               {claims: []labforgev1alpha1.LabClaim{claim("a", "p-0")}, labs: []*labforgev1alpha1.LabEnvironment{boundTo("p-0", "a")}},
		"bound, its status not written yet":                {claims: []labforgev1alpha1.LabClaim{claim("a", "")}, labs: []*labforgev1alpha1.LabEnvironment{boundTo("p-0", "a")}},
		"a lab bound to an earlier namesake":               {claims: []labforgev1alpha1.LabClaim{claim("b", "")}, labs: []*labforgev1alpha1.LabEnvironment{boundTo("p-0", "a")}, want: 1},
		"refused":                                          {claims: []labforgev1alpha1.LabClaim{claim("a", "", "Stalled")}},
		"expired, its lab gone":                            {claims: []labforgev1alpha1.LabClaim{claim("a", "p-0", "Expired")}},
		"expired before its status named one":              {claims: []labforgev1alpha1.LabClaim{claim("a", "", "Expired")}},
		"being deleted":                                    {claims: []labforgev1alpha1.LabClaim{deleting}},
		"two waiting, one bound unwritten": {
			claims: []labforgev1alpha1.LabClaim{claim("a", ""), claim("b", ""), claim("c", "")},
			labs:   []*labforgev1alpha1.LabEnvironment{boundTo("p-0", "b"), env(labSpec{name: "p-1"})},
			want:   2,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := countWaiting(tc.claims, tc.labs, func(ns string) bool { return ns == "ns" }); got != tc.want {
				t.Errorf("countWaiting = %d, want %d", got, tc.want)
			}
		})
	}
}

// A claim a Ready lab is free for is about to be bound: the status counts as waiting only
// the claims beyond the Ready labs, which wait for a boot.
func TestUnserved(t *testing.T) {
	for _, tc := range []struct{ waiting, ready, want int32 }{
		{waiting: 0, ready: 3, want: 0},
		{waiting: 1, ready: 3, want: 0},
		{waiting: 3, ready: 3, want: 0},
		{waiting: 5, ready: 3, want: 2},
		{waiting: 4, ready: 0, want: 4},
	} {
		if got := (Counts{Waiting: tc.waiting, Ready: tc.ready}).Unserved(); got != tc.want {
			t.Errorf("%d claims waiting, %d Ready labs: %d unserved, want %d", tc.waiting, tc.ready, got, tc.want)
		}
	}
}

// A status whose counts alone moved waits for the interval since this process's last
// status write; a change of condition or generation does not (countsOnly).
func TestStatusHold(t *testing.T) {
	base := labforgev1alpha1.LabPoolStatus{ObservedGeneration: 2, ReadyReplicas: 3, Conditions: []metav1.Condition{
		{Type: labforgev1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: labforgev1alpha1.ReasonWarm, Message: "3 of 3 warm labs are ready", ObservedGeneration: 2},
	}, Scaling: &labforgev1alpha1.PoolScalingStatus{Rule: labforgev1alpha1.ScalingMinLabs, Desired: 30}}
	counts := *base.DeepCopy()
	counts.ReadyReplicas, counts.BoundReplicas, counts.Conditions[0].Message = 2, 1, "2 of 3 warm labs are ready"
	flipped := *counts.DeepCopy()
	flipped.Conditions[0].Status, flipped.Conditions[0].Reason = metav1.ConditionUnknown, labforgev1alpha1.ReasonFilling
	generation := *base.DeepCopy()
	generation.ObservedGeneration = 3
	desired := *base.DeepCopy()
	desired.Scaling.Desired = 29
	rule := *base.DeepCopy()
	rule.Scaling.Rule, rule.Scaling.Window = labforgev1alpha1.ScalingSchedule, "class"
	next := *base.DeepCopy()
	next.Scaling.NextChange = &metav1.Time{Time: statusT0}
	first := *base.DeepCopy()
	first.Scaling = nil
	boot := *counts.DeepCopy()
	boot.Scaling.BootTime, boot.Scaling.WarmUp = &metav1.Duration{Duration: 91 * time.Second}, &metav1.Duration{Duration: 121 * time.Second}
	warming := *base.DeepCopy()
	warming.Scaling.Rule, warming.Scaling.Window, warming.Scaling.WarmingUp = labforgev1alpha1.ScalingSchedule, "class", true
	for name, tc := range map[string]struct {
		after labforgev1alpha1.LabPoolStatus
		want  bool
	}{
		"counts and their message":  {after: counts, want: true},
		"the Ready condition flips": {after: flipped, want: false},
		"a new generation observed": {after: generation, want: false},
		"the floor's desired count": {after: desired, want: true},
		"the rule and its window":   {after: rule, want: false},
		"the next window edge":      {after: next, want: false},
		"no scaling status yet":     {after: first, want: false},
		// The observed boot time rides on the count writes of the labs that become
		// Ready: a write of its own per lab is what it must not cost.
		"the boot time observed with the counts": {after: boot, want: true},
		"a window warming up":                    {after: warming, want: false},
	} {
		if got := countsOnly(base, tc.after); got != tc.want {
			t.Errorf("%s: countsOnly = %v, want %v", name, got, tc.want)
		}
	}

	clk := clocktesting.NewFakePassiveClock(statusT0)
	r := &Reconciler{Clock: clk}
	if got := r.statusHold("p"); got != 0 {
		t.Errorf("before any write: hold %s, want 0", got)
	}
	r.wroteStatus("p")
	clk.SetTime(statusT0.Add(300 * time.Millisecond))
	if got := r.statusHold("p"); got != 700*time.Millisecond {
		t.Errorf("300 ms after a write: hold %s, want 700ms", got)
	}
	if got := r.statusHold("other"); got != 0 {
		t.Errorf("another pool: hold %s, want 0", got)
	}
	clk.SetTime(statusT0.Add(time.Second))
	if got := r.statusHold("p"); got != 0 {
		t.Errorf("a second after a write: hold %s, want 0", got)
	}
	r.forget("p")
	if got := r.statusHold("p"); got != 0 {
		t.Errorf("a deleted pool: hold %s, want 0", got)
	}
	if off := (&Reconciler{Clock: clk, StatusInterval: -1}); off.statusHold("p") != 0 {
		t.Error("StatusInterval < 0 still holds")
	}
}

// TestScalingStatus: status.scaling names an open window, unless the hard cap holds the
// pool below it; desired is the rule's target within the cap; the next edge is shown,
// and the pass requeues at it.
func TestScalingStatus(t *testing.T) {
	next := statusT0.Add(90 * time.Minute)
	nextTime := metav1.NewTime(next)
	tests := map[string]struct {
		plan      Plan
		sizing    Sizing
		bootTime  *metav1.Duration
		warmUp    time.Duration
		want      labforgev1alpha1.PoolScalingStatus
		wantAfter time.Duration
	}{
		"a pool without a schedule": {
			plan: Plan{Target: 3, Rule: labforgev1alpha1.ScalingReplicas},
			want: labforgev1alpha1.PoolScalingStatus{Rule: labforgev1alpha1.ScalingReplicas, Desired: 3},
		},
		"an open window": {
			plan:      Plan{Target: 12, Rule: labforgev1alpha1.ScalingMinLabs, Counts: Counts{Bound: 5}},
			sizing:    Sizing{Window: "class", NextChange: next},
			want:      labforgev1alpha1.PoolScalingStatus{Rule: labforgev1alpha1.ScalingSchedule, Window: "class", Desired: 12, NextChange: &nextTime},
			wantAfter: 90 * time.Minute,
		},
		"a window warming up, and the boot time that sets its warm-up": {
			plan:     Plan{Target: 12, Rule: labforgev1alpha1.ScalingMinLabs},
			sizing:   Sizing{Window: "class", WarmingUp: true, NextChange: next},
			bootTime: &metav1.Duration{Duration: 91 * time.Second},
			warmUp:   121 * time.Second,
			want: labforgev1alpha1.PoolScalingStatus{Rule: labforgev1alpha1.ScalingSchedule, Window: "class", WarmingUp: true, Desired: 12, NextChange: &nextTime,
				BootTime: &metav1.Duration{Duration: 91 * time.Second}, WarmUp: &metav1.Duration{Duration: 121 * time.Second}},
			wantAfter: 90 * time.Minute,
		},
		"an open window held back by the hard cap": {
			plan:      Plan{Target: 25, Rule: labforgev1alpha1.ScalingMaxLabs, Counts: Counts{Bound: 5}},
			sizing:    Sizing{Window: "class", NextChange: next},
			want:      labforgev1alpha1.PoolScalingStatus{Rule: labforgev1alpha1.ScalingMaxLabs, Window: "class", Desired: 15, NextChange: &nextTime},
			wantAfter: 90 * time.Minute,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := &scope{plan: tc.plan, sizing: tc.sizing, now: statusT0, bootTime: tc.bootTime, warmUp: tc.warmUp}
			s.pool = &labforgev1alpha1.LabPool{Spec: labforgev1alpha1.LabPoolSpec{MaxLabs: 20}}
			if diff := cmp.Diff(&tc.want, scalingStatus(s)); diff != "" {
				t.Errorf("scalingStatus() (-want +got):\n%s", diff)
			}
			if got := s.untilNextChange(); got != tc.wantAfter {
				t.Errorf("untilNextChange() = %s, want %s", got, tc.wantAfter)
			}
		})
	}
}
