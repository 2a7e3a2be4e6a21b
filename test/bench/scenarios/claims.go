package scenarios

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/bench/recorder"
	"github.com/labforge/labforge/test/bench/report"
)

// readyDeadline is how long a claim may take to become Ready before the harness counts it
// as never Ready.
const readyDeadline = 60 * time.Second

// claimParams are the parameters every claim scenario records.
func claimParams() map[string]any {
	return map[string]any{
		"claim":         "the sample claim: ssh.generateKeyPair true, duration 1h, in namespace " + studentNamespace,
		"template":      "config/samples/1-labtemplate.yaml without its checks and exposed Services (a control plane and 1 worker: 2 VMs per lab)",
		"readyDeadline": readyDeadline.String(),
	}
}

// serialClaims creates n claims one after another, each waited Ready (up to readyDeadline)
// and, when release is set, deleted before the next is created. It returns their names.
func serialClaims(ctx context.Context, e *env, prefix, pool, template string, n int, release bool) (map[string]bool, error) {
	names := map[string]bool{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%04d", prefix, i)
		names[name] = true
		r := e.createClaim(ctx, name, pool, template)
		if r.CreateErr != nil {
			e.h.logf("creating claim %s: %v", name, r.CreateErr)
			continue
		}
		if _, err := e.awaitReady(ctx, r, readyDeadline); err != nil {
			return names, err
		}
		if release {
			if err := e.deleteClaim(ctx, name); err != nil {
				return names, fmt.Errorf("deleting claim %s: %w", name, err)
			}
		}
		if (i+1)%50 == 0 && i+1 < n {
			e.h.logf("%d/%d claims", i+1, n)
		}
	}
	return names, nil
}

// claimOutcome counts what happened to a set of claims.
type claimOutcome struct {
	latencies                    []float64 // ms, +Inf for never Ready
	ready, never, cold, failures int
	first, last                  time.Time // earliest t0, latest readyAt
}

func outcome(views []recorder.ClaimView) claimOutcome {
	var o claimOutcome
	for _, v := range views {
		if v.CreateErr != nil {
			o.failures++
			continue
		}
		l := v.Latency(readyDeadline)
		o.latencies = append(o.latencies, l)
		if math.IsInf(l, 1) {
			o.never++
		} else {
			o.ready++
			if v.ReadyAt.After(o.last) {
				o.last = v.ReadyAt
			}
		}
		if o.first.IsZero() || v.T0.Before(o.first) {
			o.first = v.T0
		}
		if v.Launch == labforgev1alpha1.LaunchCold {
			o.cold++
		}
	}
	return o
}

// countFigures are the claim counts every claim scenario reports.
func (o claimOutcome) countFigures() []report.Figure {
	return []report.Figure{
		report.NewFigure("claims Ready", float64(o.ready), "count"),
		report.NewFigure("claims never Ready (within the deadline)", float64(o.never), "count"),
		report.NewFigure("claim creates refused by the API server", float64(o.failures), "count"),
	}
}

// The targets of issue 21, set beside the closest peer measured on this machine
// (docs/performance.md): serial claim -> Ready p50 and p99 with the refill running, the CPU
// of a serial claim cycle (claim, release and refill) of all processes, and a burst of 50
// all Ready, in ms.
const (
	serialP50, serialP99 float64 = 50, 150
	serialCycleCPU       float64 = 350
	burstAllReady        float64 = 1000
)

// refusals are a window's writes refused with 403 per claim: the operator's own, which
// by design are none (no controller of its writes into a lab that is going), and all told,
// whose remainder is kube-controller-manager's (its root-CA publisher re-creating
// kube-root-ca.crt in a namespace being deleted).
func refusals(w report.APIWindow, n int) []report.Figure {
	d := float64(max(n, 1))
	op, all := 0.0, 0.0
	for k, v := range w.OperatorRequests {
		if method, code, _ := strings.Cut(k, " "); recorder.MutatingVerbs[method] && code == "403" {
			op += v
		}
	}
	for k, v := range w.Failed {
		if strings.HasSuffix(k, " 403") {
			all += v
		}
	}
	return []report.Figure{
		report.NewFigure("operator writes refused with 403 per claim", op/d, "per claim").Want("==", 0).
			WithNote("writes into a terminating namespace, by the operator and its simulated KubeVirt"),
		report.NewFigure("writes refused with 403 per claim, all told", all/d, "per claim").
			WithNote("the rest: kube-controller-manager's root-CA publisher in namespaces being deleted"),
	}
}

// perClaim divides a window's counts by n claims.
func perClaim(w report.APIWindow, n int, suffix string) []report.Figure {
	d := float64(max(n, 1))
	reconciles := 0.0
	for _, v := range w.Reconciles {
		reconciles += v
	}
	return []report.Figure{
		report.NewFigure("mutating API requests per claim"+suffix, w.MutatingRequests/d, "per claim"),
		report.NewFigure("409 conflicts per claim"+suffix, w.Conflicts/d, "per claim"),
		report.NewFigure("operator writes per claim"+suffix, operatorWrites(w)/d, "per claim").WithNote("the operator's own client, rest_client_requests_total"),
		report.NewFigure("reconciles per claim"+suffix, reconciles/d, "per claim"),
		report.NewFigure("operator CPU per claim"+suffix, w.OperatorCPUSeconds*1000/d, "ms").WithNote("process_cpu_seconds_total"),
		report.NewFigure("CPU per claim, all processes"+suffix, w.TotalCPU()*1000/d, "ms").WithNote("%s", report.CPUShares(w, d, 1000, "ms")),
		report.NewFigure("operator garbage collections per claim"+suffix, w.OperatorGCs/d, "per claim"),
	}
}

// waitReleased waits until every named claim is gone and the pool is back to its warm
// target with nothing booting or being deleted.
func waitReleased(ctx context.Context, e *env, names map[string]bool, pool string, replicas int) error {
	return e.waitFor(ctx, 5*time.Minute, "released claims gone and LabPool "+pool+" refilled", func() bool {
		gone := e.claims.Count(func(r *recorder.ClaimRec) bool { return names[r.Name] && (!r.DeletedAt.IsZero() || r.CreateErr != nil) })
		o := e.labs.Occupancy(pool)
		return gone == len(names) && o.Count[recorder.LabReady] >= replicas && o.Count[recorder.LabBooting] == 0 && o.Count[recorder.LabDeleting] == 0
	}, func() string { return e.describePool(pool) })
}

// prepare starts a scenario's env with one pool filled and the operator idle.
func (h *Harness) prepare(ctx context.Context, r *report.ScenarioResult, pool poolSpec) (*env, error) {
	e, err := h.startEnv(ctx, r)
	if err != nil {
		return e, err
	}
	if err := e.createPool(ctx, pool); err != nil {
		return e, err
	}
	// Filling 1,000 labs takes a while on a busy 2-core machine.
	timeout := 10*time.Minute + time.Duration(pool.replicas)*3*time.Second
	if err := e.waitPoolReady(ctx, pool.name, int(pool.replicas), timeout); err != nil {
		return e, err
	}
	if _, err := e.settle(ctx, 2*time.Second, 5*time.Minute, nil); err != nil {
		return e, err
	}
	return e, nil
}

// latencyImage draws a latency image next to results.json and lists it in r.
func (h *Harness) latencyImage(r *report.ScenarioResult, file, title string, ss []report.Series, targets []report.VLine) {
	if err := report.DrawLatency(filepath.Join(h.OutDir, file), title, ss, targets); err != nil {
		r.Notes = append(r.Notes, "drawing "+file+": "+err.Error())
		return
	}
	r.Images = append(r.Images, file)
}

// serialParams configures the serial scenario.
type serialParams struct {
	pool   poolSpec
	claims int
}

// runSerial: a warm pool, claims one after another, each released once Ready.
func (h *Harness) runSerial(ctx context.Context, r *report.ScenarioResult, p serialParams) error {
	r.Parameters = claimParams()
	r.Parameters["pool"], r.Parameters["claims"] = p.pool.params(), p.claims
	r.Parameters["release"] = "each claim is deleted as soon as it is Ready, before the next is created; the pool refills meanwhile"
	e, err := h.prepare(ctx, r, p.pool)
	defer e.close()
	if err != nil {
		return err
	}
	w, err := e.begin(ctx, "claims and refill")
	if err != nil {
		return err
	}
	names, err := serialClaims(ctx, e, "serial", p.pool.name, "", p.claims, true)
	if err != nil {
		return err
	}
	o := outcome(e.claims.Snapshot(names))
	r.Figures = append(report.LatencyFigures("claim -> Ready", o.latencies, serialP50, serialP99), o.countFigures()...)
	r.Figures = append(r.Figures, report.NewFigure("cold fallbacks", float64(o.cold), "count"))
	h.latencyImage(r, "serial-latency.svg", fmt.Sprintf("serial warm claims: %d claims one after another, pool of %d", p.claims, p.pool.replicas),
		[]report.Series{{Name: "claim -> Ready", Values: o.latencies}},
		[]report.VLine{{Label: fmt.Sprintf("target p50 %g ms", serialP50), X: serialP50}, {Label: fmt.Sprintf("target p99 %g ms", serialP99), X: serialP99}})

	if err := waitReleased(ctx, e, names, p.pool.name, int(p.pool.replicas)); err != nil {
		return err
	}
	if _, err := e.settle(ctx, 2*time.Second, 5*time.Minute, nil); err != nil {
		return err
	}
	win, err := e.end(ctx, w)
	r.Windows = append(r.Windows, win)
	figs := perClaim(win, p.claims, " (claim, release and refill)")
	figs[5] = figs[5].Want("<=", serialCycleCPU)
	r.Figures = append(r.Figures, figs...)
	r.Figures = append(r.Figures, refusals(win, p.claims)...)
	return err
}

// burstParams configures the burst scenario.
type burstParams struct {
	pool            poolSpec
	claims, clients int
}

// createBurst creates claims from clients goroutines at once; each creates its share one
// after another. It returns the claims' names once every Create returned.
func createBurst(ctx context.Context, e *env, prefix, pool string, claims, clients int) map[string]bool {
	names := map[string]bool{}
	for i := 0; i < claims; i++ {
		names[fmt.Sprintf("%s-%04d", prefix, i)] = true
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < clients; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := g; i < claims; i += clients {
				e.createClaim(ctx, fmt.Sprintf("%s-%04d", prefix, i), pool, "")
			}
		}()
	}
	close(start)
	wg.Wait()
	return names
}

// runBurst: a warm pool, many claims at once.
func (h *Harness) runBurst(ctx context.Context, r *report.ScenarioResult, p burstParams) error {
	r.Parameters = claimParams()
	r.Parameters["pool"], r.Parameters["claims"], r.Parameters["clients"] = p.pool.params(), p.claims, p.clients
	r.Parameters["release"] = "claims are kept; the pool refills behind them"
	e, err := h.prepare(ctx, r, p.pool)
	defer e.close()
	if err != nil {
		return err
	}
	w, err := e.begin(ctx, "burst and refill")
	if err != nil {
		return err
	}
	names := createBurst(ctx, e, "burst", p.pool.name, p.claims, p.clients)
	err = e.waitFor(ctx, readyDeadline, "every burst claim Ready", func() bool {
		return e.claims.Count(func(c *recorder.ClaimRec) bool { return names[c.Name] && (!c.ReadyAt.IsZero() || c.CreateErr != nil) }) == len(names)
	}, nil)
	if err != nil && e.op.failure() != nil {
		return err
	}
	o := outcome(e.claims.Snapshot(names))
	r.Figures = report.LatencyFigures("claim -> Ready", o.latencies, 0, 0)
	all := report.Inf
	if o.never == 0 && o.failures == 0 {
		all = report.Millis(o.last.Sub(o.first))
	}
	r.Figures = append(r.Figures, report.NewFigure("first create -> all Ready", all, "ms").Want("<=", burstAllReady),
		report.NewFigure("cold fallbacks", float64(o.cold), "count").Want("==", 0))
	r.Figures = append(r.Figures, o.countFigures()...)
	h.latencyImage(r, "burst-latency.svg", fmt.Sprintf("burst: %d claims at once from %d clients, pool of %d", p.claims, p.clients, p.pool.replicas),
		[]report.Series{{Name: "claim -> Ready", Values: o.latencies}}, []report.VLine{{Label: fmt.Sprintf("target all Ready %g ms", burstAllReady), X: burstAllReady}})

	if err := e.waitPoolReady(ctx, p.pool.name, int(p.pool.replicas), 5*time.Minute); err != nil {
		return err
	}
	if _, err := e.settle(ctx, 2*time.Second, 5*time.Minute, nil); err != nil {
		return err
	}
	win, err := e.end(ctx, w)
	r.Windows = append(r.Windows, win)
	figs := perClaim(win, p.claims, " (claim and refill)")
	figs[1] = figs[1].Want("==", 0)
	r.Figures = append(r.Figures, figs...)
	return err
}

// sustainedParams configures the sustained scenario.
type sustainedParams struct {
	pool     poolSpec
	rate     float64 // claims per second
	duration time.Duration
	dwell    time.Duration
	seed     uint64
	windows  time.Duration
}

// arrivals draws a Poisson process: exponential gaps at rate, until duration.
func arrivals(seed uint64, rate float64, duration time.Duration) []time.Duration {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out []time.Duration
	t := 0.0
	for {
		t += rng.ExpFloat64() / rate
		at := time.Duration(t * float64(time.Second))
		if at >= duration {
			return out
		}
		out = append(out, at)
	}
}

// runSustained: Poisson arrivals for a while, each claim released after a dwell, while
// the pool refills.
func (h *Harness) runSustained(ctx context.Context, r *report.ScenarioResult, p sustainedParams) error {
	plan := arrivals(p.seed, p.rate, p.duration)
	r.Parameters = claimParams()
	r.Parameters["pool"], r.Parameters["rate"], r.Parameters["duration"] = p.pool.params(), p.rate, p.duration.String()
	r.Parameters["seed"], r.Parameters["arrivals"], r.Parameters["dwell"] = p.seed, len(plan), p.dwell.String()
	r.Parameters["release"] = "each claim is deleted " + p.dwell.String() + " after it is Ready (or after the deadline)"
	e, err := h.prepare(ctx, r, p.pool)
	defer e.close()
	if err != nil {
		return err
	}
	w, err := e.begin(ctx, "arrivals, releases and refill")
	if err != nil {
		return err
	}
	e.labs.Record(p.pool.name)
	start := time.Now()
	h.logf("%d arrivals over %s (seed %d)", len(plan), p.duration, p.seed)
	var wg sync.WaitGroup
	names := map[string]bool{}
	var maxLag time.Duration
	for i, at := range plan {
		if d := time.Until(start.Add(at)); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			case <-e.op.Failed():
				return e.op.failure()
			}
		}
		maxLag = max(maxLag, time.Since(start.Add(at)))
		name := fmt.Sprintf("sustained-%05d", i)
		names[name] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.createClaim(ctx, name, p.pool.name, "")
			if c.CreateErr != nil {
				return
			}
			if ok, err := e.awaitReady(ctx, c, readyDeadline); err != nil {
				return
			} else if ok {
				select {
				case <-time.After(p.dwell):
				case <-ctx.Done():
					return
				}
			}
			_ = e.deleteClaim(ctx, name)
		}()
		if (i+1)%500 == 0 {
			h.logf("%d/%d arrivals; %s", i+1, len(plan), e.describePool(p.pool.name))
		}
	}
	arrivalsEnd := time.Now()
	wg.Wait()
	if e.op.failure() != nil {
		return e.op.failure()
	}
	views := e.claims.Snapshot(names)
	o := outcome(views)
	rate := 0.0
	if o.ready > 0 {
		rate = float64(o.ready) / o.last.Sub(o.first).Seconds()
	}
	r.Figures = []report.Figure{
		report.NewFigure("offered rate", float64(len(plan))/p.duration.Seconds(), "per second").WithNote("arrivals drawn / duration"),
		report.NewFigure("achieved rate", rate, "per second").Want(">=", p.rate).WithNote("claims Ready / (last Ready - first create)"),
		report.NewFigure("max arrival lag", report.Millis(maxLag), "ms").WithNote("how late the harness issued an arrival"),
	}
	r.Figures = append(r.Figures, report.LatencyFigures("claim -> Ready", o.latencies, 0, 0)...)
	var perWindow []report.Series
	var p50s []float64
	for from := time.Duration(0); from < p.duration; from += p.windows {
		var ls []float64
		for _, v := range views {
			if off := v.T0.Sub(start); v.CreateErr == nil && off >= from && off < from+p.windows {
				ls = append(ls, v.Latency(readyDeadline))
			}
		}
		sort.Float64s(ls)
		p50 := report.Percentile(ls, 0.5)
		p50s = append(p50s, p50)
		name := fmt.Sprintf("%.0f-%.0fs", from.Seconds(), (from + p.windows).Seconds())
		r.Figures = append(r.Figures, report.NewFigure("claim -> Ready p50, arrivals "+name, p50, "ms"))
		perWindow = append(perWindow, report.Series{Name: "arrivals " + name, Values: ls})
	}
	lo, hi := math.Inf(1), 0.0
	for _, v := range p50s {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	r.Figures = append(r.Figures, report.NewFigure("p50 spread across windows (max / min)", hi/lo, "ratio").WithNote("1 is perfectly flat"))

	timeline := e.labs.StopRecording(p.pool.name)
	minReady := math.MaxInt
	for _, s := range timeline {
		if !s.At.After(arrivalsEnd) {
			minReady = min(minReady, s.Count[recorder.LabReady])
		}
	}
	r.Figures = append(r.Figures,
		report.NewFigure("fewest Ready unclaimed labs during arrivals", float64(minReady), "count"),
		report.NewFigure("pool drained", report.BoolValue(minReady == 0), "bool").Want("==", 0).WithNote("1 if the pool had no Ready unclaimed lab at some moment"),
		report.NewFigure("cold fallbacks", float64(o.cold), "count"))
	r.Figures = append(r.Figures, o.countFigures()...)
	h.latencyImage(r, "sustained-latency.svg", fmt.Sprintf("sustained: Poisson %.0f/s for %s, dwell %s, pool of %d (one curve per %s of arrivals)",
		p.rate, p.duration, p.dwell, p.pool.replicas, p.windows), perWindow, nil)
	t0 := float64(start.UnixNano()) / 1e9
	if err := report.DrawTimeline(filepath.Join(h.OutDir, "sustained-occupancy.svg"),
		fmt.Sprintf("sustained: labs of the pool (%d warm) while claims arrive at %.0f/s", p.pool.replicas, p.rate), "labs",
		occupancyLines(timeline, t0), []report.VLine{{Label: "arrivals start", X: 0}, {Label: "arrivals end", X: arrivalsEnd.Sub(start).Seconds()}}); err != nil {
		r.Notes = append(r.Notes, "drawing sustained-occupancy.svg: "+err.Error())
	} else {
		r.Images = append(r.Images, "sustained-occupancy.svg")
	}

	if err := waitReleased(ctx, e, names, p.pool.name, int(p.pool.replicas)); err != nil {
		r.Notes = append(r.Notes, "after the run: "+err.Error())
	} else if _, err := e.settle(ctx, 2*time.Second, 5*time.Minute, nil); err != nil {
		r.Notes = append(r.Notes, "after the run: "+err.Error())
	}
	win, err := e.end(ctx, w)
	r.Windows = append(r.Windows, win)
	r.Figures = append(r.Figures, perClaim(win, len(plan), " (claim, release and refill)")...)
	return err
}

// apiCostParams configures the api-cost scenario.
type apiCostParams struct {
	claims int
	// refillPool is the pool of the second phase; the first phase's pool has replicas and
	// maxLabs equal to claims, so that nothing refills.
	refillPool poolSpec
}

// runAPICost: what a warm claim costs the API server, first on the claim path alone (a
// pool that cannot refill), then with release and refill.
func (h *Harness) runAPICost(ctx context.Context, r *report.ScenarioResult, p apiCostParams) error {
	n := int32(p.claims)
	path := poolSpec{name: "path", replicas: n, maxBooting: n, maxLab: n}
	r.Parameters = claimParams()
	r.Parameters["claims"], r.Parameters["claimPathPool"], r.Parameters["refillPool"] = p.claims, path.params(), p.refillPool.params()
	r.Parameters["phases"] = "claim path: claims one after another on a full pool with maxLabs = claims (nothing refills), kept; " +
		"with refill: claims one after another, each deleted once Ready, until the pool is full again"
	e, err := h.prepare(ctx, r, path)
	defer e.close()
	if err != nil {
		return err
	}
	w, err := e.begin(ctx, "claim path")
	if err != nil {
		return err
	}
	names, err := serialClaims(ctx, e, "path", path.name, "", p.claims, false)
	if err != nil {
		return err
	}
	if _, err := e.settle(ctx, 3*time.Second, 5*time.Minute, nil); err != nil {
		return err
	}
	win, err := e.end(ctx, w)
	if err != nil {
		return err
	}
	r.Windows = append(r.Windows, win)
	o := outcome(e.claims.Snapshot(names))
	figs := perClaim(win, p.claims, " (claim path)")
	figs[0] = figs[0].Want("<=", 8)
	figs[1] = figs[1].Want("<=", 0.1)
	r.Figures = append(r.Figures, figs...)
	r.Figures = append(r.Figures, report.NewFigure("claims Ready (claim path)", float64(o.ready), "count"),
		report.NewFigure("harness writes per claim (claim path)", win.HarnessWrites/float64(p.claims), "per claim").WithNote("the claim's create"))
	// The warm claim's latency with nothing else going on: what serial's would be if the
	// teardown and refill behind each claim cost the machine nothing.
	r.Figures = append(r.Figures, report.LatencyFigures("claim path: claim -> Ready", o.latencies, 0, 0)...)

	if err := e.createPool(ctx, p.refillPool); err != nil {
		return err
	}
	if err := e.waitPoolReady(ctx, p.refillPool.name, int(p.refillPool.replicas), 5*time.Minute); err != nil {
		return err
	}
	if _, err := e.settle(ctx, 2*time.Second, 5*time.Minute, nil); err != nil {
		return err
	}
	if w, err = e.begin(ctx, "with refill"); err != nil {
		return err
	}
	if names, err = serialClaims(ctx, e, "refill", p.refillPool.name, "", p.claims, true); err != nil {
		return err
	}
	if err := waitReleased(ctx, e, names, p.refillPool.name, int(p.refillPool.replicas)); err != nil {
		return err
	}
	if _, err := e.settle(ctx, 3*time.Second, 5*time.Minute, nil); err != nil {
		return err
	}
	if win, err = e.end(ctx, w); err != nil {
		return err
	}
	r.Windows = append(r.Windows, win)
	o = outcome(e.claims.Snapshot(names))
	figs = perClaim(win, p.claims, " (with refill)")
	figs[1] = figs[1].Want("<=", 0.1)
	r.Figures = append(r.Figures, figs...)
	r.Figures = append(r.Figures, report.NewFigure("claims Ready (with refill)", float64(o.ready), "count"),
		report.NewFigure("harness writes per claim (with refill)", win.HarnessWrites/float64(p.claims), "per claim").WithNote("the claim's create and delete"))
	r.Figures = append(r.Figures, report.LatencyFigures("with refill: claim -> Ready", o.latencies, 0, 0)...)
	return nil
}

// occupancyLines turns a pool's occupancy timeline into lines, with x in seconds from t0.
func occupancyLines(timeline []recorder.Occupancy, t0 float64) []report.TimeLine {
	names := []struct {
		name  string
		state recorder.LabState
	}{{"ready, unclaimed", recorder.LabReady}, {"booting", recorder.LabBooting}, {"bound to a claim", recorder.LabBound}, {"being deleted", recorder.LabDeleting}}
	var out []report.TimeLine
	for _, n := range names {
		l := report.TimeLine{Name: n.name}
		for _, o := range timeline {
			l.Points = append(l.Points, [2]float64{float64(o.At.UnixNano())/1e9 - t0, float64(o.Count[n.state])})
		}
		out = append(out, l)
	}
	return out
}
