package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

// schemaVersion names the layout of results.json; docs/performance.md describes it. Bump it
// when a field changes meaning, so that old and new runs are never compared by mistake.
const schemaVersion = "labforge-bench/v1"

// results is what results.json holds: the machine, then one entry per scenario run.
type results struct {
	// Schema is schemaVersion.
	Schema string `json:"schema"`
	// Machine is where the run happened.
	Machine machine `json:"machine"`
	// Scenarios are the scenarios run, in order.
	Scenarios []*scenarioResult `json:"scenarios"`
}

// machine describes the host of a run: figures from different machines do not compare.
type machine struct {
	// CPUs is the number of logical CPUs the harness saw.
	CPUs int `json:"cpus"`
	// CPUModel is the first "model name" of /proc/cpuinfo.
	CPUModel string `json:"cpuModel,omitempty"`
	// MemoryBytes is the total memory of /proc/meminfo.
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
	// GoVersion is the Go toolchain of the harness (the operator is built by the same one).
	GoVersion string `json:"goVersion"`
	// Kernel is the kernel release (uname -r).
	Kernel string `json:"kernel"`
	// Date is when the run started (UTC, RFC 3339).
	Date string `json:"date"`
	// LoadAverage is /proc/loadavg's 1-minute figure when the run started: the machine may
	// be shared, and a busy machine makes every figure worse.
	LoadAverage float64 `json:"loadAverage1m"`
}

// scenarioResult is one scenario's outcome.
type scenarioResult struct {
	// Name is the scenario's name, as -scenario takes it.
	Name string `json:"name"`
	// Description says in one line what the scenario does.
	Description string `json:"description"`
	// Parameters are the scenario's settings (pool sizes, claim counts, seed, deadlines).
	Parameters map[string]any `json:"parameters"`
	// Figures are the scenario's measurements, with the target where it has one.
	Figures []figure `json:"figures"`
	// Windows are the measured phases of the scenario with what the API server and the
	// manager counted during each.
	Windows []apiWindow `json:"windows"`
	// Images are the files drawn for the scenario, relative to results.json.
	Images []string `json:"images,omitempty"`
	// Notes are things a reader should know about this run (a settle that timed out, ...).
	Notes []string `json:"notes,omitempty"`
	// Error is set when the scenario could not finish; its figures are then partial.
	Error string `json:"error,omitempty"`
	// Started is when the scenario began (UTC, RFC 3339).
	Started string `json:"started"`
	// Seconds is how long the scenario took, control-plane start and teardown included.
	Seconds float64 `json:"seconds"`
	// LoadAverage is /proc/loadavg's 1-minute figure at the scenario's start and end.
	LoadAverage [2]float64 `json:"loadAverage1m"`
}

// figure is one measurement.
type figure struct {
	// Name says what was measured.
	Name string `json:"name"`
	// Value is the measurement; null when it could not be measured (e.g. a percentile
	// that falls on a claim that never became Ready).
	Value *float64 `json:"value"`
	// Unit is the unit of Value: ms, s, MiB, count, per claim, per second, bool (1 true).
	Unit string `json:"unit"`
	// Target is the target for this figure, if any.
	Target *target `json:"target,omitempty"`
	// Met says whether Value meets Target; absent without a target.
	Met *bool `json:"met,omitempty"`
	// Note qualifies the value.
	Note string `json:"note,omitempty"`
}

// target is a bound a figure should respect: Op is "<=", ">=" or "==".
type target struct {
	// Op is the comparison: "<=", ">=" or "==".
	Op string `json:"op"`
	// Value is the bound, in the figure's unit.
	Value float64 `json:"value"`
}

// apiWindow is what the API server and the manager counted during one measured phase.
type apiWindow struct {
	// Name names the phase.
	Name string `json:"name"`
	// Seconds is the phase's length.
	Seconds float64 `json:"seconds"`
	// MutatingRequests counts the API server's POST, PUT, PATCH, APPLY, DELETE and
	// DELETECOLLECTION requests from every client (operator, kube-controller-manager, the
	// harness), leases excluded.
	MutatingRequests float64 `json:"mutatingRequests"`
	// LeaseWrites counts mutating requests on coordination.k8s.io leases (the API server's
	// own identity lease): background noise, kept out of MutatingRequests.
	LeaseWrites float64 `json:"leaseWrites"`
	// Conflicts counts mutating requests answered 409 Conflict.
	Conflicts float64 `json:"conflicts"`
	// HarnessWrites counts the writes the harness itself issued (claims, pools, deletes).
	HarnessWrites float64 `json:"harnessWrites"`
	// ByResource breaks MutatingRequests (and lease writes) down by "VERB group/resource[/subresource]".
	ByResource map[string]float64 `json:"byResource"`
	// Failed counts the mutating requests answered with an error by "VERB group/resource code"
	// (409 conflicts, 404 deletes of objects already gone, ...).
	Failed map[string]float64 `json:"failed"`
	// OperatorRequests counts the operator's own client requests by "METHOD code" (its
	// rest_client_requests_total), reads included.
	OperatorRequests map[string]float64 `json:"operatorRequests"`
	// OperatorCPUSeconds is the CPU time the operator process used (process_cpu_seconds_total),
	// and OperatorGCs its garbage collections (go_gc_duration_seconds_count).
	OperatorCPUSeconds float64 `json:"operatorCPUSeconds"`
	OperatorGCs        float64 `json:"operatorGCs"`
	// CPUSeconds is the CPU time of the other processes on the machine's CPUs, from /proc:
	// etcd, kube-apiserver, kube-controller-manager and the harness ("bench").
	CPUSeconds map[string]float64 `json:"cpuSeconds,omitempty"`
	// Reconciles counts reconciles by "controller result" (controller_runtime_reconcile_total).
	Reconciles map[string]float64 `json:"reconciles"`
}

// cpuByProcess returns the window's CPU time by process, the operator's included.
func (w apiWindow) cpuByProcess() map[string]float64 {
	out := make(map[string]float64, len(w.CPUSeconds)+1)
	for k, v := range w.CPUSeconds {
		out[k] = v
	}
	out["operator"] = w.OperatorCPUSeconds
	return out
}

// totalCPU is the CPU time every process measured used during the window.
func (w apiWindow) totalCPU() float64 {
	total := 0.0
	for _, v := range w.cpuByProcess() {
		total += v
	}
	return total
}

// cpuShares lists the window's CPU time by process, most first, each divided by n and
// scaled by scale ("kube-apiserver 61, etcd 12, ..."), in unit.
func cpuShares(w apiWindow, n, scale float64, unit string) string {
	byProc := w.cpuByProcess()
	names := make([]string, 0, len(byProc))
	for k := range byProc {
		names = append(names, k)
	}
	sort.Slice(names, func(i, j int) bool {
		if byProc[names[i]] != byProc[names[j]] {
			return byProc[names[i]] > byProc[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s %s", k, formatValue(byProc[k]*scale/n))
	}
	return strings.Join(parts, ", ") + " " + unit
}

// cpuSummary says how much CPU the window took of the machine's cpus, and by whom.
func cpuSummary(w apiWindow, cpus int) string {
	busy := 100 * w.totalCPU() / (w.Seconds * float64(max(cpus, 1)))
	return fmt.Sprintf("CPU %.1f s, %.0f %% of %d CPUs over the window: %s", w.totalCPU(), busy, cpus, cpuShares(w, 1, 1, "s"))
}

// inf stands for a duration that never ended (a claim never Ready).
var inf = math.Inf(1)

func newFigure(name string, value float64, unit string) figure {
	f := figure{Name: name, Unit: unit}
	if !math.IsInf(value, 0) && !math.IsNaN(value) {
		f.Value = &value
	}
	return f
}

// want sets the figure's target and whether it was met. A figure without a value misses
// its target.
func (f figure) want(op string, bound float64) figure {
	f.Target = &target{Op: op, Value: bound}
	met := false
	if f.Value != nil {
		v := *f.Value
		switch op {
		case "<=":
			met = v <= bound
		case ">=":
			met = v >= bound
		case "==":
			met = v == bound
		}
	}
	f.Met = &met
	return f
}

func (f figure) note(format string, args ...any) figure {
	f.Note = fmt.Sprintf(format, args...)
	return f
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// percentile returns the nearest-rank q-quantile (0 < q <= 1) of sorted: the smallest value
// with at least q of the values at or below it. +Inf stands for a claim that never became
// Ready, so a percentile that reaches one is +Inf.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(q * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

// latencyFigures returns p50, p90, p99 and max of values (ms; +Inf for never), named with
// prefix, with the targets given for p50 and p99 (0 for none).
func latencyFigures(prefix string, values []float64, p50Target, p99Target float64) []figure {
	sorted := append([]float64(nil), values...)
	sort.Float64s(sorted)
	p50 := newFigure(prefix+" p50", percentile(sorted, 0.50), "ms")
	p99 := newFigure(prefix+" p99", percentile(sorted, 0.99), "ms")
	if p50Target > 0 {
		p50 = p50.want("<=", p50Target)
	}
	if p99Target > 0 {
		p99 = p99.want("<=", p99Target)
	}
	return []figure{p50, newFigure(prefix+" p90", percentile(sorted, 0.90), "ms"), p99,
		newFigure(prefix+" max", percentile(sorted, 1), "ms")}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// readMachine describes this host.
func readMachine(now time.Time) machine {
	m := machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Date: now.UTC().Format(time.RFC3339), LoadAverage: loadAverage()}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		var b strings.Builder
		for _, c := range u.Release {
			if c == 0 {
				break
			}
			b.WriteByte(byte(c))
		}
		m.Kernel = b.String()
	}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(data), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryBytes = kb * 1024
		}
	}
	return m
}

// loadAverage is the 1-minute load average, or -1 when unknown.
func loadAverage() float64 {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var l float64
	if _, err := fmt.Sscanf(string(data), "%f", &l); err != nil {
		return -1
	}
	return l
}

// writeResults writes r as indented JSON to path, atomically.
func writeResults(path string, r *results) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// printSummary writes the human summary of one scenario.
func printSummary(w io.Writer, r *scenarioResult) {
	fmt.Fprintf(w, "\n== %s: %s (%.0fs, load %.1f -> %.1f)\n", r.Name, r.Description, r.Seconds, r.LoadAverage[0], r.LoadAverage[1])
	if r.Error != "" {
		fmt.Fprintf(w, "   FAILED: %s\n", r.Error)
	}
	for _, f := range r.Figures {
		value := "n/a"
		if f.Value != nil {
			value = formatValue(*f.Value)
		}
		line := fmt.Sprintf("   %-58s %10s %-10s", f.Name, value, f.Unit)
		if f.Target != nil {
			verdict := "MISSED"
			if *f.Met {
				verdict = "met"
			}
			line += fmt.Sprintf(" target %s %s: %s", f.Target.Op, formatValue(f.Target.Value), verdict)
		}
		if f.Note != "" {
			line += "  (" + f.Note + ")"
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	for _, win := range r.Windows {
		fmt.Fprintf(w, "   [%s] %.1fs: %.0f mutating API requests (%.0f from the harness), %.0f conflicts; top: %s\n",
			win.Name, win.Seconds, win.MutatingRequests, win.HarnessWrites, win.Conflicts, topEntries(win.ByResource, 6))
		if len(win.Failed) > 0 {
			fmt.Fprintf(w, "   [%s] refused: %s\n", win.Name, topEntries(win.Failed, 6))
		}
		fmt.Fprintf(w, "   [%s] reconciles: %s\n", win.Name, topEntries(win.Reconciles, 8))
		if len(win.CPUSeconds) > 0 {
			fmt.Fprintf(w, "   [%s] %s\n", win.Name, cpuSummary(win, runtime.NumCPU()))
		}
	}
	for _, img := range r.Images {
		fmt.Fprintf(w, "   image: %s\n", img)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "   note: %s\n", n)
	}
}

func formatValue(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e12:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// topEntries renders the n largest entries of m, largest first.
func topEntries(m map[string]float64, n int) string {
	type kv struct {
		k string
		v float64
	}
	var all []kv
	for k, v := range m {
		if v != 0 {
			all = append(all, kv{k, v})
		}
	}
	sort.Slice(all, func(i, j int) bool {
		if all[i].v != all[j].v {
			return all[i].v > all[j].v
		}
		return all[i].k < all[j].k
	})
	var parts []string
	for i, e := range all {
		if i == n {
			parts = append(parts, fmt.Sprintf("... (%d more)", len(all)-n))
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.0f", e.k, e.v))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// writeMarkdown renders a results file as the tables of docs/performance.md's results
// section: one table per scenario, figures with their targets.
func writeMarkdown(w io.Writer, r *results) {
	m := r.Machine
	fmt.Fprintf(w, "Run of %s on %d CPUs (%s), %.0f GiB, kernel %s, %s; load average %.1f at the start.\n",
		m.Date, m.CPUs, m.CPUModel, float64(m.MemoryBytes)/(1<<30), m.Kernel, m.GoVersion, m.LoadAverage)
	for _, s := range r.Scenarios {
		desc := s.Description
		if desc != "" {
			desc = strings.ToUpper(desc[:1]) + desc[1:]
		}
		fmt.Fprintf(w, "\n### %s\n\n%s. %.0f s, load average %.1f -> %.1f.", s.Name, desc, s.Seconds, s.LoadAverage[0], s.LoadAverage[1])
		if s.Error != "" {
			fmt.Fprintf(w, " **Did not finish**: %s", s.Error)
		}
		fmt.Fprint(w, "\n\n| figure | value | target | met |\n| --- | --- | --- | --- |\n")
		for _, f := range s.Figures {
			value, tgt, met := "n/a", "", ""
			if f.Value != nil {
				value = formatValue(*f.Value) + " " + f.Unit
			}
			if f.Target != nil {
				tgt = f.Target.Op + " " + formatValue(f.Target.Value)
				met = "no"
				if *f.Met {
					met = "yes"
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", f.Name, value, tgt, met)
		}
		for _, win := range s.Windows {
			fmt.Fprintf(w, "\nWindow *%s* (%.1f s): %.0f mutating requests, %.0f from the harness, %.0f conflicts. Top: %s.\n",
				win.Name, win.Seconds, win.MutatingRequests, win.HarnessWrites, win.Conflicts, topEntries(win.ByResource, 8))
			if len(win.CPUSeconds) > 0 {
				fmt.Fprintf(w, "%s.\n", cpuSummary(win, r.Machine.CPUs))
			}
		}
		for _, img := range s.Images {
			fmt.Fprintf(w, "\n![%s](../bench/%s)\n", img, img)
		}
		for _, n := range s.Notes {
			fmt.Fprintf(w, "\nNote: %s\n", n)
		}
	}
}
