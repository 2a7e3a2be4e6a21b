package scenarios

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/bench/recorder"
	"github.com/labforge/labforge/test/bench/report"
)

// classParams configures the class-start scenario: students arriving at a class on a pool
// whose labs take boot to boot, once on a fixed pool and once on a pool whose schedule
// declares a window at the class's own time, warmUp unset: the pool warms up for it by
// its own observed boot time with its margin (status.scaling.warmUp), learnt from the
// boots of its first labs.
type classParams struct {
	pool     poolSpec
	students int
	// spread is how long the students take to arrive: student i (from 0) claims at
	// class start + i*spread/students, so one every 2 s for 30 over 60 s.
	spread time.Duration
	// boot is the simulated VMs' boot delay, whatever the harness's -boot-delay says.
	boot time.Duration
	// lead is how long before the class the fixed pool's idle lab-minutes are counted
	// (the scheduled pool's span is its own warm-up).
	lead time.Duration
	// window is how long the window stays open.
	window time.Duration
	// waitDeadline is how long the harness waits for every student's claim to be Ready.
	waitDeadline time.Duration
}

// classResult is what one class measured.
type classResult struct {
	// waits are each student's claim -> Ready, in ms (+Inf: never Ready).
	waits []float64
	// warm counts the students whose claim was bound within warmBind of its create: a
	// Ready lab was there for them. launchWarm counts the claims whose own status said
	// Warm.
	warm, launchWarm int
	// allReady is when the pool first held a lab, Ready or claimed, for every student,
	// from class start (negative: before it); +Inf if never seen.
	allReady float64
	// idle is the Ready unclaimed lab-minutes from class start until the last student's
	// lab was Ready; before the lab-minutes from the window's opening (the fixed pool:
	// lead before the class) to class start.
	idle, before float64
	// minimum is the idle lab-minutes a pool with every lab Ready at class start, each
	// taken as its student arrives, cannot go below: the sum of the arrival offsets.
	minimum float64
	// lead is the span before the class over which before is counted: the scheduled
	// pool's warm-up, p.lead for the fixed one; bootTime the scheduled pool's observed
	// boot time that gave it.
	lead, bootTime time.Duration
}

// warmBind is how soon a claim must be bound to count as served warm: a claim a Ready lab
// is free for is bound in milliseconds, one that waits for a boot waits for the rest of
// it. (The claim's status.launchType is reported beside it as a cross-check: Warm when
// its lab was Ready before the claim came.)
const warmBind = 5 * time.Second

// runClassStart: the fixed pool, then the scheduled one, on one control plane.
func (h *Harness) runClassStart(ctx context.Context, r *report.ScenarioResult, p classParams) error {
	r.Parameters = claimParams()
	r.Parameters["pool"], r.Parameters["students"], r.Parameters["spread"] = p.pool.params(), p.students, p.spread.String()
	r.Parameters["bootDelay"], r.Parameters["window"] = p.boot.String(), p.window.String()
	r.Parameters["schedule"] = fmt.Sprintf("one window, minLabs %d, buffer 0, starting at class start (cron: the class's whole minute), "+
		"warmUp unset: the pool's observed boot time with its margin", p.students)
	r.Parameters["fixedPoolIdleSpanBeforeClass"] = p.lead.String()
	r.Parameters["claimDeadline"] = p.waitDeadline.String()
	hh := *h
	hh.BootDelay = p.boot
	e, err := hh.startEnv(ctx, r)
	defer e.close()
	if err != nil {
		return err
	}
	fixed, err := runClass(ctx, e, p, "fixed", false)
	if err != nil {
		return fmt.Errorf("fixed pool: %w", err)
	}
	if err := e.endClass(ctx, "fixed"); err != nil {
		return err
	}
	scheduled, err := runClass(ctx, e, p, "scheduled", true)
	if err != nil {
		return fmt.Errorf("scheduled pool: %w", err)
	}
	r.Parameters["observedBootTime"], r.Parameters["warmUp"] = scheduled.bootTime.String(), scheduled.lead.String()
	r.Figures = append(r.Figures, fixed.figures("fixed pool of "+fmt.Sprint(p.pool.replicas), p, false)...)
	r.Figures = append(r.Figures, scheduled.figures("scheduled pool", p, true)...)
	hh.latencyImage(r, "class-start-wait.svg", fmt.Sprintf("class start: %d students over %s, boot %s, pool of %d", p.students, p.spread, p.boot, p.pool.replicas),
		[]report.Series{{Name: "fixed pool", Values: fixed.waits}, {Name: "scheduled pool", Values: scheduled.waits}},
		[]report.VLine{{Label: "target p99 1 s (scheduled)", X: 1000}})
	return nil
}

// figures are one class's figures; targets only for the scheduled pool, the fixed one
// being the baseline.
func (c classResult) figures(prefix string, p classParams, targets bool) []report.Figure {
	sorted := append([]float64(nil), c.waits...)
	sort.Float64s(sorted)
	warm := report.NewFigure(prefix+": students served warm", float64(c.warm), "count").
		WithNote("bound within %s of the claim's create", warmBind)
	p99 := report.NewFigure(prefix+": student wait p99", report.Percentile(sorted, 0.99), "ms")
	idle := report.NewFigure(prefix+": idle warm lab-minutes, class start -> last served", c.idle, "lab-min")
	if targets {
		warm = warm.Want(">=", float64(p.students))
		p99 = p99.Want("<=", 1000)
		idle = idle.Want("<=", math.Round(c.minimum*1.1*100)/100).WithNote("within 10 %% of the minimum below")
	}
	return []report.Figure{
		warm,
		report.NewFigure(prefix+": student wait p50", report.Percentile(sorted, 0.50), "ms"),
		p99,
		report.NewFigure(prefix+": student wait max", report.Percentile(sorted, 1), "ms"),
		idle,
		report.NewFigure(prefix+": idle lab-minutes the schedule implies at least", c.minimum, "lab-min").
			WithNote("every lab Ready at class start, each idle until its student arrives"),
		report.NewFigure(prefix+": idle warm lab-minutes, window opening -> class start", c.before, "lab-min").
			WithNote("the %s before the class", c.lead),
		report.NewFigure(prefix+": a lab for every student, from class start", c.allReady, "s").
			WithNote("first moment Ready + claimed labs >= %d; negative: before the class", p.students),
		report.NewFigure(prefix+": claims whose status.launchType says Warm", float64(c.launchWarm), "count"),
	}
}

// runClass fills a pool of p.pool, then (scheduled) declares a window starting at the
// class, and has the students arrive.
func runClass(ctx context.Context, e *env, p classParams, name string, scheduled bool) (classResult, error) {
	res := classResult{lead: p.lead}
	pool := p.pool
	pool.name = "class-" + name
	if err := e.createPool(ctx, pool); err != nil {
		return res, err
	}
	if err := e.waitPoolReady(ctx, pool.name, int(pool.replicas), 10*time.Minute); err != nil {
		return res, err
	}
	if _, err := e.settle(ctx, 2*time.Second, 5*time.Minute, nil); err != nil {
		return res, err
	}
	if scheduled {
		// The pool's fill was its first boots: the warm-up it learnt from them is what
		// anticipates the class, as on a real host where the pool kept its boot time
		// from last week's class.
		var err error
		if res.bootTime, res.lead, err = e.observedWarmUp(ctx, pool.name); err != nil {
			return res, err
		}
	}
	// A window starts on a whole minute: the class starts on the first whole minute far
	// enough ahead to declare it and, scheduled, for the pool to warm up before it.
	classStart := time.Now().Add(res.lead + 15*time.Second).Truncate(time.Minute).Add(time.Minute)
	opens := classStart.Add(-res.lead)
	if scheduled {
		if err := e.declareWindow(ctx, pool.name, classStart, p); err != nil {
			return res, err
		}
	}
	if scheduled {
		e.h.logf("%s: boot time %s, warm-up %s from %s, class starts %s", name, res.bootTime, res.lead, opens.Format("15:04:05"), classStart.Format("15:04:05"))
	} else {
		e.h.logf("%s: class starts %s", name, classStart.Format("15:04:05"))
	}
	e.labs.Record(pool.name)
	names, err := arrive(ctx, e, pool.name, name, classStart, p)
	if err != nil {
		return res, err
	}
	served := func() bool {
		return e.claims.Count(func(c *recorder.ClaimRec) bool { return names[c.Name] && (!c.ReadyAt.IsZero() || c.CreateErr != nil) }) == len(names)
	}
	err = e.waitFor(ctx, p.waitDeadline, "every student's claim Ready", served, func() string { return e.describePool(pool.name) })
	timeline := e.labs.StopRecording(pool.name)
	if err != nil {
		return res, err
	}
	var last time.Time
	for _, v := range e.claims.Snapshot(names) {
		if v.CreateErr != nil || v.ReadyAt.IsZero() {
			res.waits = append(res.waits, math.Inf(1))
			continue
		}
		res.waits = append(res.waits, report.Millis(v.ReadyAt.Sub(v.T0)))
		if !v.BoundAt.IsZero() && v.BoundAt.Sub(v.T0) <= warmBind {
			res.warm++
		}
		if v.Launch == labforgev1alpha1.LaunchWarm {
			res.launchWarm++
		}
		last = later(last, v.ReadyAt)
	}
	res.idle = readyLabMinutes(timeline, classStart, last)
	res.before = readyLabMinutes(timeline, opens, classStart)
	res.allReady = math.Inf(1)
	for _, o := range timeline {
		if o.Count[recorder.LabReady]+o.Count[recorder.LabBound] >= p.students {
			res.allReady = o.At.Sub(classStart).Seconds()
			break
		}
	}
	for i := range p.students {
		res.minimum += (time.Duration(i) * p.spread / time.Duration(p.students)).Minutes()
	}
	return res, nil
}

// observedWarmUp waits for the pool's status to show the boot time it observed and the
// warm-up that gives a window without its own.
func (e *env) observedWarmUp(ctx context.Context, pool string) (bootTime, warmUp time.Duration, err error) {
	lp := &labforgev1alpha1.LabPool{}
	err = e.waitFor(ctx, time.Minute, "the boot time of LabPool "+pool+" in its status", func() bool {
		if e.c.Get(ctx, client.ObjectKey{Name: pool}, lp) != nil || lp.Status.Scaling == nil || lp.Status.Scaling.WarmUp == nil {
			return false
		}
		bootTime, warmUp = lp.Status.Scaling.BootTime.Duration, lp.Status.Scaling.WarmUp.Duration
		return true
	}, func() string { return e.describePool(pool) })
	return bootTime, warmUp, err
}

// declareWindow patches the pool's schedule with one window starting at the class (UTC),
// for the class's students, with no buffer beyond them and no warmUp of its own.
func (e *env) declareWindow(ctx context.Context, pool string, classStart time.Time, p classParams) error {
	lp := &labforgev1alpha1.LabPool{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: pool}, lp); err != nil {
		return err
	}
	patch := client.MergeFrom(lp.DeepCopy())
	u := classStart.UTC()
	lp.Spec.Schedule = []labforgev1alpha1.PoolWindow{{
		Name:     "class",
		Start:    fmt.Sprintf("%d %d %d %d *", u.Minute(), u.Hour(), u.Day(), int(u.Month())),
		Duration: metav1.Duration{Duration: p.window},
		TimeZone: "UTC",
		MinLabs:  ptr.To(int32(p.students)),
		Buffer:   ptr.To[int32](0),
	}}
	if err := e.c.Patch(ctx, lp, patch); err != nil {
		return fmt.Errorf("declaring the window of LabPool %s: %w", pool, err)
	}
	return nil
}

// arrive waits for the class to start and creates one claim per student, student i at
// classStart + i*spread/students. It returns once every claim was created.
func arrive(ctx context.Context, e *env, pool, prefix string, classStart time.Time, p classParams) (map[string]bool, error) {
	names := map[string]bool{}
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := range p.students {
		at := classStart.Add(time.Duration(i) * p.spread / time.Duration(p.students))
		select {
		case <-time.After(time.Until(at)):
		case <-ctx.Done():
			return names, ctx.Err()
		case <-e.op.Failed():
			return names, e.op.failure()
		}
		name := fmt.Sprintf("%s-%02d", prefix, i)
		names[name] = true
		// A slow Create must not delay the next student.
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.createClaim(ctx, name, pool, "")
		}()
	}
	return names, nil
}

// endClass deletes a class's claims and its pool and waits until its labs are gone.
func (e *env) endClass(ctx context.Context, name string) error {
	pool := "class-" + name
	var claims labforgev1alpha1.LabClaimList
	if err := e.c.List(ctx, &claims, client.InNamespace(studentNamespace)); err != nil {
		return err
	}
	for i := range claims.Items {
		if err := client.IgnoreNotFound(e.c.Delete(ctx, &claims.Items[i])); err != nil {
			return err
		}
	}
	if err := e.c.Delete(ctx, &labforgev1alpha1.LabPool{ObjectMeta: metav1.ObjectMeta{Name: pool}}); err != nil {
		return err
	}
	return e.waitFor(ctx, 10*time.Minute, "the labs of LabPool "+pool+" gone", func() bool {
		o := e.labs.Occupancy(pool)
		live := 0
		for s := recorder.LabDeleting; s < recorder.NumLabStates; s++ {
			live += o.Count[s]
		}
		return live == 0
	}, func() string { return e.describePool(pool) })
}

// readyLabMinutes integrates the Ready unclaimed labs of a timeline over [from, to).
func readyLabMinutes(timeline []recorder.Occupancy, from, to time.Time) float64 {
	total := 0.0
	for i, o := range timeline {
		end := to
		if i+1 < len(timeline) {
			end = timeline[i+1].At
		}
		start := later(o.At, from)
		if end.After(to) {
			end = to
		}
		if end.After(start) {
			total += float64(o.Count[recorder.LabReady]) * end.Sub(start).Minutes()
		}
	}
	return total
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
