package labpool

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// at is a UTC instant on 2026-mm-dd.
func at(month time.Month, day, hour, minute int) time.Time {
	return time.Date(2026, month, day, hour, minute, 0, 0, time.UTC)
}

func window(name, start string, d time.Duration, zone string, minLabs, buffer *int32) labforgev1alpha1.PoolWindow {
	return labforgev1alpha1.PoolWindow{Name: name, Start: start, Duration: metav1.Duration{Duration: d}, TimeZone: zone, MinLabs: minLabs, Buffer: buffer}
}

// TestRules: the sizing a pool's rules ask for at one instant, each case a fake clock's
// "now": window edges (half-open: open at the start, closed at the end), overlaps, time
// zones across daylight saving, and a pool without a schedule (its own fields, no change
// ever).
func TestRules(t *testing.T) {
	// 09:00 in Berlin, two hours: 08:00Z in winter (CET), 07:00Z in summer (CEST).
	class := window("class", "0 9 * * MON-FRI", 2*time.Hour, "Europe/Berlin", ptr.To[int32](30), ptr.To[int32](0))
	tests := map[string]struct {
		spec labforgev1alpha1.LabPoolSpec
		now  time.Time
		want Sizing
	}{
		"no schedule: the pool's own buffer, no floor, no change ever": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 2},
			now:  at(3, 2, 8, 0),
			want: Sizing{Buffer: 2},
		},
		"the pool's own floor": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 2, MinLabs: ptr.To[int32](5)},
			now:  at(3, 2, 8, 0),
			want: Sizing{Buffer: 2, MinLabs: 5},
		},
		"a minute before the window opens (winter): own size, next change at the opening": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 2, Schedule: []labforgev1alpha1.PoolWindow{class}},
			now:  at(3, 2, 7, 59),
			want: Sizing{Buffer: 2, NextChange: at(3, 2, 8, 0)},
		},
		"at the opening itself the window is open": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 2, Schedule: []labforgev1alpha1.PoolWindow{class}},
			now:  at(3, 2, 8, 0),
			want: Sizing{Buffer: 0, MinLabs: 30, Window: "class", NextChange: at(3, 2, 10, 0)},
		},
		"a second before it closes": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 2, Schedule: []labforgev1alpha1.PoolWindow{class}},
			now:  at(3, 2, 9, 59).Add(59 * time.Second),
			want: Sizing{Buffer: 0, MinLabs: 30, Window: "class", NextChange: at(3, 2, 10, 0)},
		},
		"at the close it is closed, and the next opening is the next weekday": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 2, Schedule: []labforgev1alpha1.PoolWindow{class}},
			now:  at(3, 2, 10, 0),
			want: Sizing{Buffer: 2, NextChange: at(3, 3, 8, 0)},
		},
		"Friday's close: the next opening is Monday": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 2, Schedule: []labforgev1alpha1.PoolWindow{class}},
			now:  at(3, 6, 10, 0),
			want: Sizing{Buffer: 2, NextChange: at(3, 9, 8, 0)},
		},
		"Friday before daylight saving begins: Monday's 09:00 Berlin is 07:00Z": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 2, Schedule: []labforgev1alpha1.PoolWindow{class}},
			now:  at(3, 27, 10, 0),
			want: Sizing{Buffer: 2, NextChange: at(3, 30, 7, 0)},
		},
		"summer time: open at 07:00Z, not at 08:00Z": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 2, Schedule: []labforgev1alpha1.PoolWindow{class}},
			now:  at(3, 30, 7, 0),
			want: Sizing{Buffer: 0, MinLabs: 30, Window: "class", NextChange: at(3, 30, 9, 0)},
		},
		"a start in the hour skipped in spring does not happen that day": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 1, Schedule: []labforgev1alpha1.PoolWindow{
				window("night", "30 2 * * *", time.Hour, "Europe/Berlin", nil, ptr.To[int32](4))}},
			now:  at(3, 29, 0, 0), // 01:00 CET; 02:30 does not exist today
			want: Sizing{Buffer: 1, NextChange: at(3, 30, 0, 30)},
		},
		"a start in the hour repeated in autumn happens twice: a 2h window runs 3h": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 1, Schedule: []labforgev1alpha1.PoolWindow{
				window("night", "30 2 * * *", 2*time.Hour, "Europe/Berlin", nil, ptr.To[int32](4))}},
			now:  at(10, 25, 0, 30), // 02:30 CEST; 02:30 CET comes an hour later
			want: Sizing{Buffer: 4, Window: "night", NextChange: at(10, 25, 3, 30)},
		},
		"a window that sets only a floor keeps the pool's buffer": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 2, Schedule: []labforgev1alpha1.PoolWindow{
				window("class", "0 8 * * *", time.Hour, "", ptr.To[int32](30), nil)}},
			now:  at(3, 2, 8, 30),
			want: Sizing{Buffer: 2, MinLabs: 30, Window: "class", NextChange: at(3, 2, 9, 0)},
		},
		"a window may lower the pool's buffer (nights)": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 5, Schedule: []labforgev1alpha1.PoolWindow{
				window("night", "0 22 * * *", 8*time.Hour, "UTC", nil, ptr.To[int32](0))}},
			now:  at(3, 3, 5, 0),
			want: Sizing{Buffer: 0, Window: "night", NextChange: at(3, 3, 6, 0)},
		},
		"overlapping windows: the larger of each, the first open one named, the nearest edge": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 2, Schedule: []labforgev1alpha1.PoolWindow{
				window("closed", "0 12 * * *", time.Hour, "", ptr.To[int32](99), nil),
				window("a", "0 8 * * *", 3*time.Hour, "", ptr.To[int32](10), ptr.To[int32](1)),
				window("b", "30 8 * * *", time.Hour, "", ptr.To[int32](5), ptr.To[int32](4)),
			}},
			now:  at(3, 2, 9, 0),
			want: Sizing{Buffer: 4, MinLabs: 10, Window: "a", NextChange: at(3, 2, 9, 30)},
		},
		"a window reopening before it closes stays open until the last period ends": {
			spec: labforgev1alpha1.LabPoolSpec{Replicas: 1, Schedule: []labforgev1alpha1.PoolWindow{
				window("rolling", "*/10 * * * *", 15*time.Minute, "", nil, ptr.To[int32](3))}},
			now:  at(3, 2, 9, 5),
			want: Sizing{Buffer: 3, Window: "rolling", NextChange: at(3, 2, 9, 5).Add(maxMerge * 10 * time.Minute).Add(10 * time.Minute)},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Rules(tc.spec, tc.now, 0)
			if got.Err != nil {
				t.Fatalf("Rules() error: %v", got.Err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("Rules() (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRulesRefuseWhatTheyCannotRead: a bad start or zone is reported in the parser's
// words, and the pool is sized by its own fields and its readable windows.
func TestRulesRefuseWhatTheyCannotRead(t *testing.T) {
	tests := map[string]struct {
		w       labforgev1alpha1.PoolWindow
		wantErr string
	}{
		"a start of four fields": {
			w:       window("bad", "0 9 * *", time.Hour, "", ptr.To[int32](3), nil),
			wantErr: `window bad: start "0 9 * *": expected exactly 5 fields, found 4: [0 9 * *]`,
		},
		"an hour out of range": {
			w:       window("bad", "0 25 * * *", time.Hour, "", ptr.To[int32](3), nil),
			wantErr: `window bad: start "0 25 * * *": end of range (25) above maximum (23): 25`,
		},
		"an unknown zone": {
			w:       window("bad", "0 9 * * *", time.Hour, "Europe/Atlantis", ptr.To[int32](3), nil),
			wantErr: `window bad: timeZone "Europe/Atlantis": unknown time zone Europe/Atlantis`,
		},
		"the operator's local zone": {
			w:       window("bad", "0 9 * * *", time.Hour, "Local", ptr.To[int32](3), nil),
			wantErr: "window bad: the time zone goes in timeZone, as an IANA name (Europe/Berlin)",
		},
		"a zone inside the start": {
			w:       window("bad", "CRON_TZ=UTC 0 9 * * *", time.Hour, "", ptr.To[int32](3), nil),
			wantErr: "window bad: the time zone goes in timeZone, as an IANA name (Europe/Berlin)",
		},
		"a warm-up over two hours": {
			w: func() labforgev1alpha1.PoolWindow {
				w := window("bad", "0 9 * * *", time.Hour, "", ptr.To[int32](3), nil)
				w.WarmUp = &metav1.Duration{Duration: 3 * time.Hour}
				return w
			}(),
			wantErr: "window bad: warmUp 3h0m0s is not between 0s and 2h",
		},
		"a duration under a minute": {
			w:       window("bad", "0 9 * * *", 30*time.Second, "", ptr.To[int32](3), nil),
			wantErr: "window bad: duration 30s is not between 1m and 168h",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			good := window("good", "0 8 * * *", 4*time.Hour, "", ptr.To[int32](7), nil)
			spec := labforgev1alpha1.LabPoolSpec{Replicas: 2, Schedule: []labforgev1alpha1.PoolWindow{tc.w, good}}
			got := Rules(spec, at(3, 2, 9, 0), 0)
			if got.Err == nil || got.Err.Error() != tc.wantErr {
				t.Fatalf("Rules() error = %v, want %q", got.Err, tc.wantErr)
			}
			if _, err := ParseWindow(tc.w); err == nil || err.Error() != tc.wantErr {
				t.Errorf("ParseWindow() error = %v, want %q", err, tc.wantErr)
			}
			want := Sizing{Buffer: 2, MinLabs: 7, Window: "good", NextChange: at(3, 2, 12, 0), Err: got.Err}
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
				t.Errorf("Rules() (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := ParseWindow(window("ok", "@daily", time.Hour, "Asia/Kolkata", nil, ptr.To[int32](1))); err != nil {
		t.Errorf("ParseWindow(@daily) = %v, want no error", err)
	}
	if !strings.Contains(Rules(labforgev1alpha1.LabPoolSpec{Schedule: []labforgev1alpha1.PoolWindow{
		window("x", "0 9 * *", time.Hour, "", nil, nil), window("y", "0 9 * * *", time.Hour, "Nowhere", nil, nil),
	}}, at(3, 2, 9, 0), 0).Err.Error(), "\n") {
		t.Errorf("two bad windows should both be reported")
	}
}

// TestComputeRules: what the rules ask of unbound labs (Target, Rule) and what the pool
// then wants (Desired), with the buffer, the floor, waiting claims and the hard cap.
func TestComputeRules(t *testing.T) {
	tests := map[string]struct {
		in                      Input
		wantTarget, wantDesired int32
		wantRule                labforgev1alpha1.PoolScalingRule
		wantCreate              int32
	}{
		"buffer alone, as before floors existed": {
			in:         Input{Replicas: 3, MaxBooting: 10, MaxLabs: 100, WaitingClaims: 2, Labs: labs("b", 4, StateBound)},
			wantTarget: 3, wantDesired: 5, wantRule: labforgev1alpha1.ScalingReplicas, wantCreate: 5,
		},
		"a floor of 30 before the class: 30 unbound": {
			in:         Input{Replicas: 0, MinLabs: 30, MaxBooting: 30, MaxLabs: 100, Labs: labs("r", 10, StateReady)},
			wantTarget: 30, wantDesired: 30, wantRule: labforgev1alpha1.ScalingMinLabs, wantCreate: 20,
		},
		"the floor counts claimed labs: 12 claimed of 30, 18 unbound": {
			in:         Input{Replicas: 0, MinLabs: 30, MaxBooting: 30, MaxLabs: 100, Labs: append(labs("b", 12, StateBound), labs("r", 18, StateReady)...)},
			wantTarget: 18, wantDesired: 18, wantRule: labforgev1alpha1.ScalingMinLabs,
		},
		"waiting claims are part of the floor, not on top of it": {
			in:         Input{Replicas: 0, MinLabs: 30, MaxBooting: 30, MaxLabs: 100, WaitingClaims: 5, Labs: labs("r", 30, StateReady)},
			wantTarget: 30, wantDesired: 30, wantRule: labforgev1alpha1.ScalingMinLabs,
		},
		"a class all claimed: the buffer takes over": {
			in:         Input{Replicas: 2, MinLabs: 30, MaxBooting: 30, MaxLabs: 100, Labs: labs("b", 30, StateBound)},
			wantTarget: 2, wantDesired: 2, wantRule: labforgev1alpha1.ScalingReplicas, wantCreate: 2,
		},
		"more waiting than the floor leaves: the buffer beyond them": {
			in:         Input{Replicas: 1, MinLabs: 10, MaxBooting: 30, MaxLabs: 100, WaitingClaims: 12, Labs: labs("b", 5, StateBound)},
			wantTarget: 5, wantDesired: 13, wantRule: labforgev1alpha1.ScalingMinLabs, wantCreate: 13,
		},
		"the hard cap holds the floor back": {
			in:         Input{Replicas: 0, MinLabs: 30, MaxBooting: 30, MaxLabs: 20, Labs: labs("b", 5, StateBound)},
			wantTarget: 25, wantDesired: 15, wantRule: labforgev1alpha1.ScalingMaxLabs, wantCreate: 15,
		},
		"the hard cap holds the buffer back": {
			in:         Input{Replicas: 8, MaxBooting: 30, MaxLabs: 10, Labs: labs("b", 5, StateBound)},
			wantTarget: 8, wantDesired: 5, wantRule: labforgev1alpha1.ScalingMaxLabs, wantCreate: 5,
		},
		"a floor beyond the labs no longer asked for is scaled down like replicas": {
			in:         Input{Replicas: 0, MinLabs: 0, MaxBooting: 30, MaxLabs: 100, Labs: labs("r", 3, StateReady)},
			wantTarget: 0, wantDesired: 0, wantRule: labforgev1alpha1.ScalingReplicas,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p := Compute(tc.in)
			got := [4]any{p.Target, p.Desired, p.Rule, p.Create}
			want := [4]any{tc.wantTarget, tc.wantDesired, tc.wantRule, tc.wantCreate}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Compute() target, desired, rule, create (-want +got):\n%s", diff)
			}
			if err := checkInvariants(tc.in, p); err != nil {
				t.Error(err)
			}
		})
	}
}
