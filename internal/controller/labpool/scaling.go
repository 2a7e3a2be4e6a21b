package labpool

import (
	"errors"
	"fmt"
	"strings"
	"time"
	// The operator reads windows' time zones from the zone database built into its binary,
	// not from the image's /usr/share/zoneinfo: a distroless image, or a host whose
	// database is older, would otherwise refuse a zone or shift a class by an hour.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// Sizing is what a pool's own fields and its open windows ask for at one instant: the
// inputs Compute sizes the pool from. It is a pure function of the spec and the time
// (Rules), in the spirit of Agones' Buffer and Schedule autoscaling policies: a buffer of
// unclaimed labs beyond the claims waiting, a floor on the labs held, and calendar windows
// that replace both while they are open.
type Sizing struct {
	// Buffer is the unclaimed labs kept beyond the waiting claims (spec.replicas, or an
	// open window's buffer).
	Buffer int32
	// MinLabs is the floor on the pool's labs, claimed or not (spec.minLabs, or an open
	// window's minLabs).
	MinLabs int32
	// Window names the open window that sizes the pool, "" when none is open.
	Window string
	// WarmingUp says Window has not started yet: it sizes the pool from its warm-up.
	WarmingUp bool
	// NextChange is when the next window begins warming up, starts or closes; zero
	// without a schedule (or when no window ever opens again).
	NextChange time.Time
	// Err says why windows were ignored: a start or a time zone the operator cannot
	// read. The other windows and the pool's own fields still apply.
	Err error
}

// maxMerge bounds how many starts of one window are merged into one open period (a window
// reopening before it closes): a start every minute for a week is 10,080. Past it, the
// period's end is known only that far, and NextChange is a check, not a change.
const maxMerge = 1000

// Rules evaluates a pool's sizing rules at now. Outside every window the pool's own
// fields apply; while windows are open, each of minLabs and buffer is the largest any
// open window asks (a window that leaves one unset asks the pool's own), and the first
// open window in spec order is named. Invalid windows are skipped and reported in Err.
//
// A window is open on [start-warmUp, start+duration) for each start its cron expression
// gives: warmUp is the window's own, or lead (the pool's observed boot time with its
// margin, WarmUpFor) when it sets none. A start whose warm-up begins before the previous
// period ended extends it. Starts are computed in the window's time zone by
// robfig/cron, the parser Kubernetes CronJobs use, and follow the wall clock across
// daylight saving: a start in the hour skipped in spring does not happen that day, and a
// start in the hour repeated in autumn happens twice, an hour apart (the second merely
// extends a window longer than an hour). Durations and warm-ups are absolute time: a
// warm-up across a change of the clocks begins that long before the start, whatever the
// wall clock says.
func Rules(spec labforgev1alpha1.LabPoolSpec, now time.Time, lead time.Duration) Sizing {
	own := Sizing{Buffer: spec.Replicas, MinLabs: deref(spec.MinLabs)}
	out := own
	var errs []error
	opened := false
	for _, w := range spec.Schedule {
		sched, err := ParseWindow(w)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		warmUp := lead
		if w.WarmUp != nil {
			warmUp = w.WarmUp.Duration
		}
		open, warming, edge := openAt(sched, w.Duration.Duration, warmUp, now)
		if !edge.IsZero() && (out.NextChange.IsZero() || edge.Before(out.NextChange)) {
			out.NextChange = edge
		}
		if !open {
			continue
		}
		buffer, minLabs := own.Buffer, own.MinLabs
		if w.Buffer != nil {
			buffer = *w.Buffer
		}
		if w.MinLabs != nil {
			minLabs = *w.MinLabs
		}
		if !opened {
			out.Buffer, out.MinLabs, out.Window, out.WarmingUp, opened = buffer, minLabs, w.Name, warming, true
			continue
		}
		out.Buffer, out.MinLabs = max(out.Buffer, buffer), max(out.MinLabs, minLabs)
	}
	out.Err = errors.Join(errs...)
	return out
}

// ParseWindow reads a window's start in its time zone, or says what is wrong with them in
// the parser's words.
func ParseWindow(w labforgev1alpha1.PoolWindow) (cron.Schedule, error) {
	zone := w.TimeZone
	if zone == "" {
		zone = "UTC"
	}
	// "Local" is the operator's own zone: a pool must not change its hours with the host
	// the operator happens to run on.
	if zone == "Local" || strings.Contains(w.Start, "TZ=") {
		return nil, fmt.Errorf("window %s: the time zone goes in timeZone, as an IANA name (Europe/Berlin)", w.Name)
	}
	if _, err := time.LoadLocation(zone); err != nil {
		return nil, fmt.Errorf("window %s: timeZone %q: %w", w.Name, zone, err)
	}
	sched, err := cron.ParseStandard("CRON_TZ=" + zone + " " + w.Start)
	if err != nil {
		return nil, fmt.Errorf("window %s: start %q: %w", w.Name, w.Start, err)
	}
	if d := w.Duration.Duration; d < time.Minute || d > 7*24*time.Hour {
		return nil, fmt.Errorf("window %s: duration %s is not between 1m and 168h", w.Name, d)
	}
	if w.WarmUp != nil && (w.WarmUp.Duration < 0 || w.WarmUp.Duration > MaxWarmUp) {
		return nil, fmt.Errorf("window %s: warmUp %s is not between 0s and 2h", w.Name, w.WarmUp.Duration)
	}
	return sched, nil
}

// openAt says whether a window of duration d starting on sched, warming up lead before
// each start, is open at now, whether it is still warming up for its start, and its next
// edge: its start if warming up, when it closes if open, when its warm-up begins next if
// not (zero: never).
func openAt(sched cron.Schedule, d, lead time.Duration, now time.Time) (open, warming bool, edge time.Time) {
	// The first start after now-d is the earliest whose period could still cover now; if
	// its warm-up has not begun, no later one's has.
	start := sched.Next(now.Add(-d))
	if start.IsZero() {
		return false, false, start
	}
	if start.Add(-lead).After(now) {
		return false, false, start.Add(-lead)
	}
	if now.Before(start) {
		return true, true, start
	}
	end := start.Add(d)
	for i, next := 0, sched.Next(start); i < maxMerge && !next.IsZero() && !next.Add(-lead).After(end); i++ {
		end = next.Add(d)
		next = sched.Next(next)
	}
	return true, false, end
}

func deref(p *int32) int32 {
	if p == nil {
		return 0
	}
	return *p
}
