// Package scenarios holds the benchmarks of `make bench`: each starts a fresh control plane
// and `labforge operator` (env.go, operator.go), drives them as students would, and fills a
// report.ScenarioResult with what the recorder measured.
package scenarios

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/labforge/labforge/test/bench/report"
)

// Scenario is one benchmark.
type Scenario struct {
	// Name is what -scenario takes; Description says in one line what the scenario does.
	Name, Description string
	// run drives the scenario, filling r.
	run func(ctx context.Context, h *Harness, r *report.ScenarioResult) error
}

// All are every benchmark, in the order `make bench` runs them: quick ones first,
// the ones with 1,000 labs last.
func All(seed uint64) []Scenario {
	return []Scenario{
		{"fill", "a pool of 100 from empty until every lab is Ready", func(ctx context.Context, h *Harness, r *report.ScenarioResult) error {
			return h.runFill(ctx, r, fillParams{pool: poolSpec{name: "fill", replicas: 100, maxBooting: 100, maxLab: 100}})
		}},
		{"serial", "200 warm claims one after another on a pool of 20", func(ctx context.Context, h *Harness, r *report.ScenarioResult) error {
			return h.runSerial(ctx, r, serialParams{pool: poolSpec{name: "serial", replicas: 20, maxBooting: 20, maxLab: 100}, claims: 200})
		}},
		{"burst", "50 claims at once on a pool of 60", func(ctx context.Context, h *Harness, r *report.ScenarioResult) error {
			return h.runBurst(ctx, r, burstParams{pool: poolSpec{name: "burst", replicas: 60, maxBooting: 60, maxLab: 200}, claims: 50, clients: 10})
		}},
		{"api-cost", "mutating API requests per warm claim, claim path alone and with refill", func(ctx context.Context, h *Harness, r *report.ScenarioResult) error {
			return h.runAPICost(ctx, r, apiCostParams{claims: 20, refillPool: poolSpec{name: "refill", replicas: 10, maxBooting: 10, maxLab: 100}})
		}},
		{"cold", "20 claims naming a template (no pool), one after another", func(ctx context.Context, h *Harness, r *report.ScenarioResult) error {
			return h.runCold(ctx, r, coldParams{claims: 20})
		}},
		{"restart", "the operator SIGKILLed during a burst of 50 claims on a pool of 60, restarted at once", func(ctx context.Context, h *Harness, r *report.ScenarioResult) error {
			return h.runRestart(ctx, r, restartParams{pool: poolSpec{name: "restart", replicas: 60, maxBooting: 60, maxLab: 200}, claims: 50, clients: 10, killAfter: 15})
		}},
		{"sustained", "Poisson arrivals at 50/s for 60 s, each claim released 2 s after Ready, pool of 100 refilling", func(ctx context.Context, h *Harness, r *report.ScenarioResult) error {
			return h.runSustained(ctx, r, sustainedParams{pool: poolSpec{name: "sustained", replicas: 100, maxBooting: 100, maxLab: 1000},
				rate: 50, duration: 60 * time.Second, dwell: 2 * time.Second, seed: seed, windows: 10 * time.Second})
		}},
		{"class-start", "30 students over 60 s on a pool of 10, labs booting in 90 s: a fixed pool, then a window declared at class start that the pool warms up for by its observed boot time", func(ctx context.Context, h *Harness, r *report.ScenarioResult) error {
			return h.runClassStart(ctx, r, classParams{pool: poolSpec{replicas: 10, maxBooting: 30, maxLab: 100}, students: 30, spread: 60 * time.Second,
				boot: 90 * time.Second, lead: 90 * time.Second, window: 10 * time.Minute, waitDeadline: 10 * time.Minute})
		}},
		{"scale", "the operator's memory settled at 100 and at 1,000 Ready labs", func(ctx context.Context, h *Harness, r *report.ScenarioResult) error {
			return h.runScale(ctx, r, scaleParams{pool: poolSpec{name: "scale", maxBooting: 200, maxLab: 1000}, steps: []int32{100, 1000}})
		}},
		{"idle-resync", "1,000 Ready labs, the operator restarted: writes and time of its first pass", func(ctx context.Context, h *Harness, r *report.ScenarioResult) error {
			return h.runIdleResync(ctx, r, idleParams{pool: poolSpec{name: "idle", replicas: 1000, maxBooting: 200, maxLab: 1000}})
		}},
	}
}

// Run runs one scenario and returns its result, with its error recorded.
func Run(ctx context.Context, h *Harness, s Scenario) *report.ScenarioResult {
	start := time.Now()
	r := &report.ScenarioResult{Name: s.Name, Description: s.Description, Started: start.UTC().Format(time.RFC3339), Parameters: map[string]any{}}
	r.LoadAverage[0] = report.LoadAverage()
	fmt.Fprintf(h.Log, "\n-- %s: %s\n", s.Name, s.Description)
	if err := s.run(ctx, h, r); err != nil {
		r.Error = err.Error()
		if errors.Is(err, context.Canceled) {
			r.Error = "interrupted"
		}
	}
	r.Seconds = time.Since(start).Seconds()
	r.LoadAverage[1] = report.LoadAverage()
	if r.Figures == nil {
		r.Figures = []report.Figure{}
	}
	if r.Windows == nil {
		r.Windows = []report.APIWindow{}
	}
	return r
}

// Find returns the scenario of all named name.
func Find(all []Scenario, name string) (Scenario, bool) {
	for _, s := range all {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// Names are the names of every scenario, in the order they run.
func Names() []string {
	var names []string
	for _, s := range All(0) {
		names = append(names, s.Name)
	}
	return names
}
