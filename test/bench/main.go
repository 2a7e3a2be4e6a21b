// Command bench is labforge's benchmark harness (`make bench`). Each scenario starts a
// fresh real control plane (etcd, kube-apiserver, kube-controller-manager from bin/), runs
// `labforge operator` (every controller and the simulated VM backend, as `make dev` runs
// them) as a child process against it, drives it as students would, and measures from the
// outside: latencies from the harness's own watch timestamps, API writes from the API
// server's apiserver_request_total, reconciles and memory from the operator's /metrics.
// It prints a summary and writes results.json and SVG images; docs/performance.md explains
// every figure.
//
// The work is split by job: package scenarios runs the benchmarks (the control plane, the
// operator process, the claims), package recorder measures (API and operator counters,
// /proc CPU and memory, watch timestamps), package report writes results.json, the summary,
// the Markdown tables and the images. This command only reads the flags and wires them.
//
// Usage:
//
//	go run ./test/bench -out bench/results.json [-scenario serial,burst] [-labforge bin/labforge]
package main

import (
	"context"
	"encoding/json"
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

	"github.com/labforge/labforge/test/bench/report"
	"github.com/labforge/labforge/test/bench/scenarios"
	"github.com/labforge/labforge/test/integration"
)

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
	only := fs.String("scenario", "", "Comma-separated scenarios to run (default: all). Known: "+strings.Join(scenarios.Names(), ", ")+".")
	bin := fs.String("labforge", filepath.Join(integration.RepoRoot(), "bin", "labforge"), "The labforge binary to run as the operator (make bench builds it).")
	logs := fs.String("logs", "", "Directory for the control-plane and operator logs (default: a new temporary directory, removed after a run without failures).")
	seed := fs.Uint64("seed", 1, "Seed of the sustained scenario's arrivals.")
	bootDelay := fs.Duration("boot-delay", 0, "Boot delay of the simulated VMs.")
	profile := fs.Duration("profile", 0, "Take a CPU profile of the operator this long from the start of each measured window, into the logs directory (0: none). scale always writes a heap profile per step there.")
	audit := fs.Bool("audit", false, "Have each scenario's kube-apiserver keep an audit log of every write (metadata only) as "+scenarios.AuditLogFile+" in its log directory; needs -logs. It costs kube-apiserver CPU: compare figures only between runs alike.")
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
		var res report.Results
		if err := json.Unmarshal(data, &res); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", *markdown, err)
			return 1
		}
		report.WriteMarkdown(stdout, &res)
		return 0
	}
	all := scenarios.All(*seed)
	selected := all
	if *only != "" {
		selected = nil
		for _, name := range strings.Split(*only, ",") {
			s, ok := scenarios.Find(all, strings.TrimSpace(name))
			if !ok {
				fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (known: %s)\n", name, strings.Join(scenarios.Names(), ", "))
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
	h := &scenarios.Harness{LabforgeBin: absBin, OutDir: filepath.Dir(*out), LogRoot: logRoot, BootDelay: *bootDelay, Profile: *profile, Audit: *audit, Log: stdout}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	res := &report.Results{Schema: report.SchemaVersion, Machine: report.ReadMachine(time.Now())}
	// A partial run replaces its scenarios in the results file and keeps the others: each
	// entry carries its own start time and load.
	kept := map[string]*report.ScenarioResult{}
	if len(selected) < len(all) {
		kept = previousResults(*out)
	}
	for _, s := range selected {
		delete(kept, s.Name)
	}
	ordered := func() []*report.ScenarioResult {
		ran := map[string]*report.ScenarioResult{}
		for _, r := range res.Scenarios {
			ran[r.Name] = r
		}
		var out []*report.ScenarioResult
		for _, s := range all {
			if r := ran[s.Name]; r != nil {
				out = append(out, r)
			} else if r := kept[s.Name]; r != nil {
				out = append(out, r)
			}
		}
		return out
	}
	fmt.Fprintf(stdout, "labforge bench: %d scenario(s) on %d CPUs (%s), load %.1f; logs in %s\n",
		len(selected), res.Machine.CPUs, res.Machine.CPUModel, res.Machine.LoadAverage, logRoot)
	failed := false
	for _, s := range selected {
		r := scenarios.Run(ctx, h, s)
		res.Scenarios = append(res.Scenarios, r)
		report.PrintSummary(stdout, r)
		if err := report.WriteResults(*out, &report.Results{Schema: res.Schema, Machine: res.Machine, Scenarios: ordered()}); err != nil {
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

// previousResults reads the scenarios of an earlier results file of this schema, by name;
// none when there is no such file.
func previousResults(path string) map[string]*report.ScenarioResult {
	out := map[string]*report.ScenarioResult{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	var prev report.Results
	if json.Unmarshal(data, &prev) != nil || prev.Schema != report.SchemaVersion {
		return out
	}
	for _, r := range prev.Scenarios {
		out[r.Name] = r
	}
	return out
}
