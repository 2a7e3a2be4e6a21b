package labpool

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

func withWarmUp(w labforgev1alpha1.PoolWindow, d time.Duration) labforgev1alpha1.PoolWindow {
	w.WarmUp = &metav1.Duration{Duration: d}
	return w
}

// TestRulesWarmUp: a window sizes the pool from warmUp (its own, else the pool's lead)
// before each start: the edges of the warm-up, the window's own warmUp over the pool's,
// warm-ups across both changes of the clocks (absolute time, not wall clock), and
// overlapping windows, one warming up while another is open.
func TestRulesWarmUp(t *testing.T) {
	// 09:00 in Berlin, two hours: 08:00Z in winter.
	class := window("class", "0 9 * * MON-FRI", 2*time.Hour, "Europe/Berlin", ptr.To[int32](30), ptr.To[int32](0))
	open := func(ws ...labforgev1alpha1.PoolWindow) labforgev1alpha1.LabPoolSpec {
		return labforgev1alpha1.LabPoolSpec{Replicas: 2, Schedule: ws}
	}
	tests := map[string]struct {
		spec labforgev1alpha1.LabPoolSpec
		lead time.Duration
		now  time.Time
		want Sizing
	}{
		"a second before the warm-up: own size, next change the warm-up": {
			spec: open(class), lead: 2 * time.Minute,
			now:  at(3, 2, 7, 57).Add(59 * time.Second),
			want: Sizing{Buffer: 2, NextChange: at(3, 2, 7, 58)},
		},
		"the warm-up begins: the window sizes the pool, warming up until its start": {
			spec: open(class), lead: 2 * time.Minute,
			now:  at(3, 2, 7, 58),
			want: Sizing{MinLabs: 30, Window: "class", WarmingUp: true, NextChange: at(3, 2, 8, 0)},
		},
		"the start: no longer warming up, next change the close": {
			spec: open(class), lead: 2 * time.Minute,
			now:  at(3, 2, 8, 0),
			want: Sizing{MinLabs: 30, Window: "class", NextChange: at(3, 2, 10, 0)},
		},
		"the close comes at start+duration, not later by the warm-up": {
			spec: open(class), lead: 2 * time.Minute,
			now:  at(3, 2, 10, 0),
			want: Sizing{Buffer: 2, NextChange: at(3, 3, 7, 58)},
		},
		"the window's own warmUp wins over the pool's lead": {
			spec: open(withWarmUp(class, 10*time.Minute)), lead: 2 * time.Minute,
			now:  at(3, 2, 7, 50),
			want: Sizing{MinLabs: 30, Window: "class", WarmingUp: true, NextChange: at(3, 2, 8, 0)},
		},
		"warmUp 0s opens at the start whatever the pool's lead": {
			spec: open(withWarmUp(class, 0)), lead: 2 * time.Minute,
			now:  at(3, 2, 7, 59),
			want: Sizing{Buffer: 2, NextChange: at(3, 2, 8, 0)},
		},
		// 29 March 2026: at 01:00Z Berlin's clocks jump from 02:00 CET to 03:00 CEST.
		// 03:30 CEST is 01:30Z; an hour's warm-up begins at 00:30Z, 01:30 CET on the wall.
		"spring: a warm-up across the jump is an hour of real time, not of wall clock": {
			spec: open(window("early", "30 3 * * *", time.Hour, "Europe/Berlin", ptr.To[int32](5), nil)), lead: time.Hour,
			now:  at(3, 29, 0, 29),
			want: Sizing{Buffer: 2, NextChange: at(3, 29, 0, 30)},
		},
		"spring: warming up from 00:30Z to the start at 01:30Z": {
			spec: open(window("early", "30 3 * * *", time.Hour, "Europe/Berlin", ptr.To[int32](5), nil)), lead: time.Hour,
			now:  at(3, 29, 0, 30),
			want: Sizing{Buffer: 2, MinLabs: 5, Window: "early", WarmingUp: true, NextChange: at(3, 29, 1, 30)},
		},
		// 25 October 2026: at 01:00Z the clocks fall back from 03:00 CEST to 02:00 CET.
		// 03:00 CET is 02:00Z; two hours' warm-up begin at 00:00Z, 02:00 CEST on the wall.
		"autumn: a warm-up across the fall begins two hours of real time before the start": {
			spec: open(window("early", "0 3 * * *", time.Hour, "Europe/Berlin", ptr.To[int32](5), nil)), lead: 2 * time.Hour,
			now:  at(10, 24, 23, 59),
			want: Sizing{Buffer: 2, NextChange: at(10, 25, 0, 0)},
		},
		"autumn: warming up from 00:00Z to the start at 02:00Z": {
			spec: open(window("early", "0 3 * * *", time.Hour, "Europe/Berlin", ptr.To[int32](5), nil)), lead: 2 * time.Hour,
			now:  at(10, 25, 0, 0),
			want: Sizing{Buffer: 2, MinLabs: 5, Window: "early", WarmingUp: true, NextChange: at(10, 25, 2, 0)},
		},
		// 02:30 happens twice that night, at 00:30Z and 01:30Z: half-hour windows with
		// 45 minutes' warm-up merge (the second warms up at 00:45Z, before the first
		// closes at 01:00Z), and between them the pool warms up for the second.
		"autumn's repeated hour: the second start's warm-up extends the first period": {
			spec: open(window("night", "30 2 * * *", 30*time.Minute, "Europe/Berlin", nil, ptr.To[int32](4))), lead: 45 * time.Minute,
			now:  at(10, 25, 0, 50),
			want: Sizing{Buffer: 4, Window: "night", NextChange: at(10, 25, 2, 0)},
		},
		"autumn's repeated hour: between the two, warming up for the second": {
			spec: open(window("night", "30 2 * * *", 30*time.Minute, "Europe/Berlin", nil, ptr.To[int32](4))), lead: 45 * time.Minute,
			now:  at(10, 25, 1, 10),
			want: Sizing{Buffer: 4, Window: "night", WarmingUp: true, NextChange: at(10, 25, 1, 30)},
		},
		"overlap: an open window is named, another warming up raises the floor, the nearest edge": {
			spec: open(
				withWarmUp(window("a", "0 8 * * *", time.Hour, "", ptr.To[int32](10), nil), 0),
				window("b", "15 9 * * *", time.Hour, "", ptr.To[int32](20), nil)),
			lead: 30 * time.Minute,
			now:  at(3, 2, 8, 50),
			want: Sizing{Buffer: 2, MinLabs: 20, Window: "a", NextChange: at(3, 2, 9, 0)},
		},
		"overlap: the first in spec order is named, and says it is warming up": {
			spec: open(
				window("b", "15 9 * * *", time.Hour, "", ptr.To[int32](20), nil),
				withWarmUp(window("a", "0 8 * * *", time.Hour, "", ptr.To[int32](10), nil), 0)),
			lead: 30 * time.Minute,
			now:  at(3, 2, 8, 50),
			want: Sizing{Buffer: 2, MinLabs: 20, Window: "b", WarmingUp: true, NextChange: at(3, 2, 9, 0)},
		},
		"overlap: the nearest edge is another window's warm-up": {
			spec: open(
				withWarmUp(window("a", "0 8 * * *", 2*time.Hour, "", ptr.To[int32](10), nil), 0),
				window("b", "15 9 * * *", time.Hour, "", ptr.To[int32](20), nil)),
			lead: 30 * time.Minute,
			now:  at(3, 2, 8, 30),
			want: Sizing{Buffer: 2, MinLabs: 10, Window: "a", NextChange: at(3, 2, 8, 45)},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Rules(tc.spec, tc.now, tc.lead)
			if got.Err != nil {
				t.Fatalf("Rules() error: %v", got.Err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("Rules() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWarmUpFor: the observed boot time, a quarter more, at least 30 s more, at most 2h;
// nothing before a boot was seen.
func TestWarmUpFor(t *testing.T) {
	for boot, want := range map[time.Duration]time.Duration{
		0:                0,
		10 * time.Second: 40 * time.Second,
		90 * time.Second: 120 * time.Second,
		91 * time.Second: 121 * time.Second,
		4 * time.Minute:  5 * time.Minute,
		2 * time.Hour:    2 * time.Hour,
	} {
		if got := WarmUpFor(boot); got != want {
			t.Errorf("WarmUpFor(%s) = %s, want %s", boot, got, want)
		}
	}
}

// TestObserveBootTime: the slowest boot among the pool's labs that became Ready, in whole
// seconds rounded up, kept when no lab says otherwise, moved only by a meaningful change.
func TestObserveBootTime(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	lab := func(boot time.Duration, opts ...func(*labforgev1alpha1.LabEnvironment)) *labforgev1alpha1.LabEnvironment {
		env := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(t0)}}
		if boot != 0 {
			env.Status.ReadyTime = ptr.To(metav1.NewTime(t0.Add(boot)))
		}
		for _, o := range opts {
			o(env)
		}
		return env
	}
	claimed := func(e *labforgev1alpha1.LabEnvironment) {
		e.Spec.ClaimRef = &labforgev1alpha1.ClaimReference{Name: "ada"}
	}
	deleting := func(e *labforgev1alpha1.LabEnvironment) { e.DeletionTimestamp = ptr.To(metav1.NewTime(t0)) }
	secs := func(n int) *metav1.Duration { return &metav1.Duration{Duration: time.Duration(n) * time.Second} }
	tests := map[string]struct {
		labs     []*labforgev1alpha1.LabEnvironment
		recorded *metav1.Duration
		want     *metav1.Duration
	}{
		"a new pool: nothing seen":                  {},
		"labs booting, none Ready yet":              {labs: []*labforgev1alpha1.LabEnvironment{lab(0), lab(0)}},
		"the pool emptied between classes keeps it": {recorded: secs(91), want: secs(91)},
		"labs booting keep what was recorded":       {labs: []*labforgev1alpha1.LabEnvironment{lab(0)}, recorded: secs(91), want: secs(91)},
		"the first boot, rounded up to the second":  {labs: []*labforgev1alpha1.LabEnvironment{lab(90*time.Second + 200*time.Millisecond)}, want: secs(91)},
		"the slowest of the labs, claimed and going ones too": {
			labs: []*labforgev1alpha1.LabEnvironment{lab(60 * time.Second), lab(94*time.Second, claimed), lab(97*time.Second, deleting), lab(0)},
			want: secs(97),
		},
		"short boots: under 5 s slower moves nothing": {
			labs: []*labforgev1alpha1.LabEnvironment{lab(24 * time.Second)}, recorded: secs(20), want: secs(20),
		},
		"short boots: 5 s slower moves it": {
			labs: []*labforgev1alpha1.LabEnvironment{lab(25 * time.Second)}, recorded: secs(20), want: secs(25),
		},
		"a tenth of 91 s: 9 s slower moves nothing": {
			labs: []*labforgev1alpha1.LabEnvironment{lab(100 * time.Second)}, recorded: secs(91), want: secs(91),
		},
		"a tenth of 91 s: 10 s slower moves it": {
			labs: []*labforgev1alpha1.LabEnvironment{lab(101 * time.Second)}, recorded: secs(91), want: secs(101),
		},
		"a boot much faster than recorded moves it down": {
			labs: []*labforgev1alpha1.LabEnvironment{lab(30 * time.Second)}, recorded: secs(91), want: secs(30),
		},
		"a Ready time before the creation (a skewed clock) is no boot": {
			labs: []*labforgev1alpha1.LabEnvironment{lab(-5 * time.Second)}, recorded: secs(91), want: secs(91),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, observeBootTime(tc.labs, tc.recorded)); diff != "" {
				t.Errorf("observeBootTime() (-want +got):\n%s", diff)
			}
		})
	}
}
