package scenarios

import (
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/labforge/labforge/test/bench/recorder"
)

func TestArrivalsAreSeededPoisson(t *testing.T) {
	a, b := arrivals(1, 50, 60*time.Second), arrivals(1, 50, 60*time.Second)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("two draws with one seed differ:\n%s", diff)
	}
	if c := arrivals(2, 50, 60*time.Second); cmp.Equal(a, c) {
		t.Fatal("two seeds drew the same arrivals")
	}
	// 3,000 expected; a Poisson count's standard deviation is about 55.
	if n := len(a); n < 2800 || n > 3200 {
		t.Errorf("drew %d arrivals at 50/s over 60s, want about 3000", n)
	}
	for i := 1; i < len(a); i++ {
		if a[i] < a[i-1] || a[i] >= 60*time.Second {
			t.Fatalf("arrival %d at %s after %s: not increasing within the duration", i, a[i], a[i-1])
		}
	}
}

func TestReadyLabMinutes(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	occ := func(at time.Duration, ready int) recorder.Occupancy {
		o := recorder.Occupancy{At: t0.Add(at)}
		o.Count[recorder.LabReady] = ready
		return o
	}
	// 10 Ready from -1m, 30 from 0, 20 from +30s, 0 from +1m.
	timeline := []recorder.Occupancy{occ(-time.Minute, 10), occ(0, 30), occ(30*time.Second, 20), occ(time.Minute, 0)}
	tests := map[string]struct {
		from, to time.Duration
		want     float64
	}{
		"the whole timeline":                  {from: -time.Minute, to: 2 * time.Minute, want: 10 + 15 + 10},
		"from class start":                    {from: 0, to: 2 * time.Minute, want: 15 + 10},
		"a window inside one sample":          {from: 10 * time.Second, to: 20 * time.Second, want: 5},
		"before the timeline counts nothing":  {from: -2 * time.Minute, to: -time.Minute, want: 0},
		"a span ending before the next event": {from: -time.Minute, to: -30 * time.Second, want: 5},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := readyLabMinutes(timeline, t0.Add(tc.from), t0.Add(tc.to)); math.Abs(got-tc.want) > 1e-9 {
				t.Errorf("readyLabMinutes() = %v, want %v", got, tc.want)
			}
		})
	}
}
