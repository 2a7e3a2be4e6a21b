package scenarios

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/test/bench/recorder"
	"github.com/labforge/labforge/test/bench/report"
)

// coldParams configures the cold scenario.
type coldParams struct {
	claims int
}

// runCold: claims naming a template, one after another: how fast the operator creates a
// lab's VMs, and how fast it turns the lab's readiness into a Ready claim.
func (h *Harness) runCold(ctx context.Context, r *report.ScenarioResult, p coldParams) error {
	r.Parameters = claimParams()
	r.Parameters["claims"] = p.claims
	r.Parameters["claimRef"] = "templateRef (no pool): each claim boots its own lab"
	r.Parameters["release"] = "each claim is deleted once Ready and its timings read, before the next is created"
	r.Parameters["readinessSignal"] = "the moment the harness first saw the last VMI of the lab Running (the simulated lab reports its bootstrap complete once every VM runs)"
	e, w, err := h.startSettled(ctx, r, "cold claims")
	defer e.close()
	if err != nil {
		return err
	}
	var toVMs, signalToReady, toReady []float64
	names := map[string]bool{}
	for i := 0; i < p.claims; i++ {
		name := fmt.Sprintf("cold-%04d", i)
		names[name] = true
		c := e.createClaim(ctx, name, "", e.template.Name)
		if c.CreateErr != nil {
			return fmt.Errorf("creating claim %s: %w", name, c.CreateErr)
		}
		ok, err := e.awaitReady(ctx, c, readyDeadline)
		if err != nil {
			return err
		}
		v := e.claims.Snapshot(map[string]bool{name: true})[0]
		toReady = append(toReady, v.Latency(readyDeadline))
		if !ok || len(v.Labs) == 0 {
			toVMs, signalToReady = append(toVMs, report.Inf), append(signalToReady, report.Inf)
			continue
		}
		ns := lab.Namespace(v.Labs[0])
		// The VM and VMI watches are other streams than the claim's: let them catch up.
		_ = e.waitFor(ctx, 10*time.Second, "the VMs of "+ns, func() bool {
			vms, running := e.vms.AllSeen(ns, e.vmsPerLab())
			return !vms.IsZero() && !running.IsZero()
		}, nil)
		vms, running := e.vms.AllSeen(ns, e.vmsPerLab())
		if vms.IsZero() || running.IsZero() {
			toVMs, signalToReady = append(toVMs, report.Inf), append(signalToReady, report.Inf)
		} else {
			toVMs = append(toVMs, report.Millis(vms.Sub(v.T0)))
			signalToReady = append(signalToReady, report.Millis(v.ReadyAt.Sub(running)))
		}
		if err := e.deleteClaim(ctx, name); err != nil {
			return err
		}
	}
	o := outcome(e.claims.Snapshot(names))
	r.Figures = append(r.Figures, report.LatencyFigures("claim -> all VM objects created", toVMs, 0, 250)...)
	r.Figures = append(r.Figures, report.LatencyFigures("readiness signal -> claim Ready", signalToReady, 0, 100)...)
	r.Figures = append(r.Figures, report.LatencyFigures("claim -> Ready", toReady, 0, 0)...)
	r.Figures = append(r.Figures, report.NewFigure("claims served Cold", float64(o.cold), "count"))
	r.Figures = append(r.Figures, o.countFigures()...)
	h.latencyImage(r, "cold-latency.svg", fmt.Sprintf("cold path: %d claims naming a template, one after another", p.claims),
		[]report.Series{{Name: "claim -> all VMs created", Values: toVMs}, {Name: "last VMI Running -> claim Ready", Values: signalToReady},
			{Name: "claim -> Ready", Values: toReady}},
		[]report.VLine{{Label: "target VMs 250 ms", X: 250}, {Label: "target signal -> Ready 100 ms", X: 100}})
	if _, err := e.settle(ctx, 2*time.Second, 5*time.Minute, nil); err != nil {
		return err
	}
	win, err := e.end(ctx, w)
	r.Windows = append(r.Windows, win)
	return err
}

// restartParams configures the restart scenario.
type restartParams struct {
	pool            poolSpec
	claims, clients int
	killAfter       int
}

// runRestart: the operator killed with SIGKILL in the middle of a burst and started again
// at once. How long until it binds again, and whether any claim was lost or double-bound.
func (h *Harness) runRestart(ctx context.Context, r *report.ScenarioResult, p restartParams) error {
	r.Parameters = claimParams()
	r.Parameters["pool"], r.Parameters["claims"], r.Parameters["clients"] = p.pool.params(), p.claims, p.clients
	r.Parameters["kill"] = fmt.Sprintf("SIGKILL once the harness saw %d claims bound, then a new operator process at once", p.killAfter)
	e, err := h.prepare(ctx, r, p.pool)
	defer e.close()
	if err != nil {
		return err
	}
	w, err := e.begin(ctx, "burst, kill and restart")
	if err != nil {
		return err
	}
	burstDone := make(chan map[string]bool, 1)
	go func() { burstDone <- createBurst(ctx, e, "restart", p.pool.name, p.claims, p.clients) }()
	bound := func() int { return e.claims.Count(func(c *recorder.ClaimRec) bool { return !c.BoundAt.IsZero() }) }
	if err := e.waitFor(ctx, readyDeadline, fmt.Sprintf("%d claims bound", p.killAfter), func() bool { return bound() >= p.killAfter }, nil); err != nil {
		return err
	}
	_, _, _ = e.scrape(ctx) // the killed process's last counts, for the window
	if err := e.op.kill(); err != nil {
		return err
	}
	killed := time.Now()
	boundAtKill := bound()
	// What the API server holds now is everything the dead process bound.
	var before labforgev1alpha1.LabClaimList
	if err := e.c.List(ctx, &before, client.InNamespace(studentNamespace)); err != nil {
		return err
	}
	boundBefore := map[string]bool{}
	for _, c := range before.Items {
		if c.Status.Lab != "" {
			boundBefore[c.Name] = true
		}
	}
	proc, err := e.op.start(ctx)
	if err != nil {
		return err
	}
	names := <-burstDone
	firstBind := func() time.Time {
		var first time.Time
		for _, v := range e.claims.Snapshot(names) {
			if !boundBefore[v.Name] && !v.BoundAt.IsZero() && (first.IsZero() || v.BoundAt.Before(first)) {
				first = v.BoundAt
			}
		}
		return first
	}
	rebindErr := e.waitFor(ctx, 2*time.Minute, "a bind by the restarted operator", func() bool { return !firstBind().IsZero() || len(boundBefore) == len(names) }, nil)
	if rebindErr != nil && e.op.failure() != nil {
		return rebindErr
	}
	readyErr := e.waitFor(ctx, readyDeadline, "every claim Ready after the restart", func() bool {
		return e.claims.Count(func(c *recorder.ClaimRec) bool { return names[c.Name] && (!c.ReadyAt.IsZero() || c.CreateErr != nil) }) == len(names)
	}, nil)
	if readyErr != nil && e.op.failure() != nil {
		return readyErr
	}
	views := e.claims.Snapshot(names)
	o := outcome(views)

	// Double binding, seen three ways: a claim whose lab changed, a lab named by two claims
	// (through the watch), and the API server's final word.
	claimsOfLab := map[string]map[string]bool{}
	labChanged := 0
	for _, v := range views {
		if len(v.Labs) > 1 {
			labChanged++
		}
		for _, l := range v.Labs {
			if claimsOfLab[l] == nil {
				claimsOfLab[l] = map[string]bool{}
			}
			claimsOfLab[l][v.Name] = true
		}
	}
	sharedLabs := 0
	for _, cs := range claimsOfLab {
		if len(cs) > 1 {
			sharedLabs++
		}
	}
	refChanged, sharedClaims := e.labs.Integrity()
	var envs labforgev1alpha1.LabEnvironmentList
	if err := e.c.List(ctx, &envs); err != nil {
		return err
	}
	labsOfClaim := map[string]int{}
	for _, env := range envs.Items {
		if ref := env.Spec.ClaimRef; ref != nil && env.DeletionTimestamp.IsZero() {
			labsOfClaim[string(ref.UID)]++
		}
	}
	apiDouble := 0
	for _, n := range labsOfClaim {
		if n > 1 {
			apiDouble++
		}
	}
	firstBindFig := report.NewFigure("restart -> first bind", report.Inf, "s").Want("<=", 5)
	if fb := firstBind(); !fb.IsZero() {
		firstBindFig = report.NewFigure("restart -> first bind", fb.Sub(proc.started).Seconds(), "s").Want("<=", 5).WithNote("from the new process's start")
	}
	r.Figures = []report.Figure{
		firstBindFig,
		report.NewFigure("claims bound when killed", float64(boundAtKill), "count"),
		report.NewFigure("lost claims (never Ready)", float64(o.never+o.failures), "count").Want("==", 0),
		report.NewFigure("double-bound claims or labs", float64(labChanged+sharedLabs+sharedClaims+apiDouble), "count").Want("==", 0).
			WithNote("claims whose lab changed %d, labs named by two claims %d, claims held by two labs (watch %d, API %d)", labChanged, sharedLabs, sharedClaims, apiDouble),
		report.NewFigure("labs whose claimRef changed", float64(refChanged), "count").Want("==", 0),
		report.NewFigure("cold fallbacks", float64(o.cold), "count"),
	}
	r.Figures = append(r.Figures, report.LatencyFigures("claim -> Ready", o.latencies, 0, 0)...)
	if rebindErr != nil {
		r.Notes = append(r.Notes, rebindErr.Error())
	}
	if readyErr != nil {
		r.Notes = append(r.Notes, readyErr.Error())
	}
	h.restartImage(r, views, o.first, killed, proc.started)

	if err := e.waitPoolReady(ctx, p.pool.name, int(p.pool.replicas), 5*time.Minute); err != nil {
		r.Notes = append(r.Notes, "after the run: "+err.Error())
	} else if _, err := e.settle(ctx, 2*time.Second, 5*time.Minute, nil); err != nil {
		r.Notes = append(r.Notes, "after the run: "+err.Error())
	}
	win, err := e.end(ctx, w)
	r.Windows = append(r.Windows, win)
	return err
}

// restartImage draws claims bound and Ready over time around the kill.
func (h *Harness) restartImage(r *report.ScenarioResult, views []recorder.ClaimView, start, killed, restarted time.Time) {
	cumulative := func(name string, at func(v recorder.ClaimView) time.Time) report.TimeLine {
		var ts []float64
		for _, v := range views {
			if t := at(v); !t.IsZero() {
				ts = append(ts, t.Sub(start).Seconds())
			}
		}
		sort.Float64s(ts)
		l := report.TimeLine{Name: name, Points: [][2]float64{{0, 0}}}
		for i, t := range ts {
			l.Points = append(l.Points, [2]float64{t, float64(i + 1)})
		}
		return l
	}
	lines := []report.TimeLine{
		cumulative("claims bound (status.lab seen)", func(v recorder.ClaimView) time.Time { return v.BoundAt }),
		cumulative("claims Ready", func(v recorder.ClaimView) time.Time { return v.ReadyAt }),
	}
	file := "restart-timeline.svg"
	err := report.DrawTimeline(filepath.Join(h.OutDir, file), fmt.Sprintf("restart: %d claims at once, the operator killed mid-burst", len(views)), "claims",
		lines, []report.VLine{{Label: "SIGKILL", X: killed.Sub(start).Seconds()}, {Label: "new process", X: restarted.Sub(start).Seconds()}})
	if err != nil {
		r.Notes = append(r.Notes, "drawing "+file+": "+err.Error())
		return
	}
	r.Images = append(r.Images, file)
}
