// Command bench is labforge's benchmark harness (`make bench`). Each scenario starts a
// fresh real control plane (etcd, kube-apiserver, kube-controller-manager from bin/), runs
// `labforge operator` (every controller and the simulated VM backend, as `make dev` runs
// them) as a child process against it, drives it as students would, and measures from the
// outside: latencies from the harness's own watch timestamps, API writes from the API
// server's apiserver_request_total, reconciles and memory from the operator's /metrics.
// It prints a summary and writes results.json and SVG images; docs/performance.md explains
// every figure.
//
// Usage:
//
//	go run ./test/bench -out bench/results.json [-scenario serial,burst] [-labforge bin/labforge]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/labforge/labforge/test/integration"
)

// scenario is one benchmark.
type scenario struct {
	name, description string
	run               func(ctx context.Context, h *harness, r *scenarioResult) error
}

// scenarios are every benchmark, in the order `make bench` runs them: quick ones first,
// the ones with 1,000 labs last.
func scenarios(seed uint64) []scenario {
	return []scenario{
		{"fill", "a pool of 100 from empty until every lab is Ready", func(ctx context.Context, h *harness, r *scenarioResult) error {
			return h.runFill(ctx, r, fillParams{pool: poolSpec{name: "fill", replicas: 100, maxBooting: 100, maxLab: 100}})
		}},
		{"serial", "200 warm claims one after another on a pool of 20", func(ctx context.Context, h *harness, r *scenarioResult) error {
			return h.runSerial(ctx, r, serialParams{pool: poolSpec{name: "serial", replicas: 20, maxBooting: 20, maxLab: 100}, claims: 200})
		}},
		{"burst", "50 claims at once on a pool of 60", func(ctx context.Context, h *harness, r *scenarioResult) error {
			return h.runBurst(ctx, r, burstParams{pool: poolSpec{name: "burst", replicas: 60, maxBooting: 60, maxLab: 200}, claims: 50, clients: 10})
		}},
		{"api-cost", "mutating API requests per warm claim, claim path alone and with refill", func(ctx context.Context, h *harness, r *scenarioResult) error {
			return h.runAPICost(ctx, r, apiCostParams{claims: 20, refillPool: poolSpec{name: "refill", replicas: 10, maxBooting: 10, maxLab: 100}})
		}},
		{"cold", "20 claims naming a template (no pool), one after another", func(ctx context.Context, h *harness, r *scenarioResult) error {
			return h.runCold(ctx, r, coldParams{claims: 20})
		}},
		{"restart", "the operator SIGKILLed during a burst of 50 claims on a pool of 60, restarted at once", func(ctx context.Context, h *harness, r *scenarioResult) error {
			return h.runRestart(ctx, r, restartParams{pool: poolSpec{name: "restart", replicas: 60, maxBooting: 60, maxLab: 200}, claims: 50, clients: 10, killAfter: 15})
		}},
		{"sustained", "Poisson arrivals at 50/s for 60 s, each claim released 2 s after Ready, pool of 100 refilling", func(ctx context.Context, h *harness, r *scenarioResult) error {
			return h.runSustained(ctx, r, sustainedParams{pool: poolSpec{name: "sustained", replicas: 100, maxBooting: 100, maxLab: 1000},
				rate: 50, duration: 60 * time.Second, dwell: 2 * time.Second, seed: seed, windows: 10 * time.Second})
		}},
		{"scale", "the operator's memory settled at 100 and at 1,000 Ready labs", func(ctx context.Context, h *harness, r *scenarioResult) error {
			return h.runScale(ctx, r, scaleParams{pool: poolSpec{name: "scale", maxBooting: 200, maxLab: 1000}, steps: []int32{100, 1000}})
		}},
		{"idle-resync", "1,000 Ready labs, the operator restarted: writes and time of its first pass", func(ctx context.Context, h *harness, r *scenarioResult) error {
			return h.runIdleResync(ctx, r, idleParams{pool: poolSpec{name: "idle", replicas: 1000, maxBooting: 200, maxLab: 1000}})
		}},
	}
}

func init() {
	// The harness's own watches log only errors.
	ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout))
}

func run(args []string, stdout io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	out := fs.String("out", filepath.Join("bench", "results.json"), "Where to write the results; the images go in the same directory.")
	only := fs.String("scenario", "", "Comma-separated scenarios to run (default: all). Known: "+strings.Join(scenarioNames(), ", ")+".")
	bin := fs.String("labforge", filepath.Join(integration.RepoRoot(), "bin", "labforge"), "The labforge binary to run as the operator (make bench builds it).")
	logs := fs.String("logs", "", "Directory for the control-plane and operator logs (default: a new temporary directory, removed after a run without failures).")
	seed := fs.Uint64("seed", 1, "Seed of the sustained scenario's arrivals.")
	bootDelay := fs.Duration("boot-delay", 0, "Boot delay of the simulated VMs.")
	profile := fs.Duration("profile", 0, "Take a CPU profile of the operator this long from the start of each measured window, into the logs directory (0: none). scale always writes a heap profile per step there.")
	audit := fs.Bool("audit", false, "Have each scenario's kube-apiserver keep an audit log of every write (metadata only) as "+auditLogFile+" in its log directory; needs -logs. It costs kube-apiserver CPU: compare figures only between runs alike.")
	markdown := fs.String("markdown", "", "Print the results file given as Markdown tables (for docs/performance.md) and run nothing.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *markdown != "" {
		data, err := os.ReadFile(*markdown)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
		var res results
		if err := json.Unmarshal(data, &res); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", *markdown, err)
			return 1
		}
		writeMarkdown(stdout, &res)
		return 0
	}
	all := scenarios(*seed)
	selected := all
	if *only != "" {
		selected = nil
		for _, name := range strings.Split(*only, ",") {
			s, ok := findScenario(all, strings.TrimSpace(name))
			if !ok {
				fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (known: %s)\n", name, strings.Join(scenarioNames(), ", "))
				return 2
			}
			selected = append(selected, s)
		}
	}
	if _, err := os.Stat(*bin); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v (build it with `go build -o bin/labforge ./cmd/labforge`, as make bench does)\n", err)
		return 2
	}
	if *audit && *logs == "" {
		fmt.Fprintln(os.Stderr, "bench: -audit needs -logs DIR (a temporary log directory is removed after the run)")
		return 2
	}
	logRoot, tempLogs := *logs, *logs == ""
	if tempLogs {
		var err error
		if logRoot, err = os.MkdirTemp("", "labforge-bench-"); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			return 1
		}
	}
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 1
	}
	absBin, _ := filepath.Abs(*bin)
	h := &harness{labforgeBin: absBin, outDir: filepath.Dir(*out), logRoot: logRoot, bootDelay: *bootDelay, profile: *profile, audit: *audit, log: stdout}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res := &results{Schema: schemaVersion, Machine: readMachine(time.Now())}
	// A partial run replaces its scenarios in the results file and keeps the others: each
	// entry carries its own start time and load.
	kept := map[string]*scenarioResult{}
	if len(selected) < len(all) {
		kept = previousResults(*out)
	}
	for _, s := range selected {
		delete(kept, s.name)
	}
	ordered := func() []*scenarioResult {
		ran := map[string]*scenarioResult{}
		for _, r := range res.Scenarios {
			ran[r.Name] = r
		}
		var out []*scenarioResult
		for _, s := range all {
			if r := ran[s.name]; r != nil {
				out = append(out, r)
			} else if r := kept[s.name]; r != nil {
				out = append(out, r)
			}
		}
		return out
	}
	fmt.Fprintf(stdout, "labforge bench: %d scenario(s) on %d CPUs (%s), load %.1f; logs in %s\n",
		len(selected), res.Machine.CPUs, res.Machine.CPUModel, res.Machine.LoadAverage, logRoot)
	failed := false
	for _, s := range selected {
		r := runScenario(ctx, h, s)
		res.Scenarios = append(res.Scenarios, r)
		printSummary(stdout, r)
		if err := writeResults(*out, &results{Schema: res.Schema, Machine: res.Machine, Scenarios: ordered()}); err != nil {
			fmt.Fprintf(os.Stderr, "bench: writing %s: %v\n", *out, err)
			return 1
		}
		if r.Error != "" {
			failed = true
		}
		if ctx.Err() != nil {
			break
		}
	}
	fmt.Fprintf(stdout, "\nresults: %s\n", *out)
	if failed {
		fmt.Fprintf(stdout, "logs kept in %s\n", logRoot)
		return 1
	}
	if tempLogs {
		_ = os.RemoveAll(logRoot)
	}
	return 0
}

// runScenario runs one scenario and returns its result, with its error recorded.
func runScenario(ctx context.Context, h *harness, s scenario) *scenarioResult {
	start := time.Now()
	r := &scenarioResult{Name: s.name, Description: s.description, Started: start.UTC().Format(time.RFC3339), Parameters: map[string]any{}}
	r.LoadAverage[0] = loadAverage()
	fmt.Fprintf(h.log, "\n-- %s: %s\n", s.name, s.description)
	if err := s.run(ctx, h, r); err != nil {
		r.Error = err.Error()
		if errors.Is(err, context.Canceled) {
			r.Error = "interrupted"
		}
	}
	r.Seconds = time.Since(start).Seconds()
	r.LoadAverage[1] = loadAverage()
	if r.Figures == nil {
		r.Figures = []figure{}
	}
	if r.Windows == nil {
		r.Windows = []apiWindow{}
	}
	return r
}

// previousResults reads the scenarios of an earlier results file of this schema, by name;
// none when there is no such file.
func previousResults(path string) map[string]*scenarioResult {
	out := map[string]*scenarioResult{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	var prev results
	if json.Unmarshal(data, &prev) != nil || prev.Schema != schemaVersion {
		return out
	}
	for _, r := range prev.Scenarios {
		out[r.Name] = r
	}
	return out
}

func findScenario(all []scenario, name string) (scenario, bool) {
	for _, s := range all {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

func scenarioNames() []string {
	var names []string
	for _, s := range scenarios(0) {
		names = append(names, s.name)
	}
	return names
}
