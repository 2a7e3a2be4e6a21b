// Package report is what a bench run leaves behind: results.json (its types, written by
// WriteResults; docs/performance.md describes every field), the summary printed as a
// scenario ends, the Markdown tables of docs/performance.md, and the SVG images.
package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"
)

// SchemaVersion names the layout of results.json; docs/performance.md describes it. Bump it
// when a field changes meaning, so that old and new runs are never compared by mistake.
const SchemaVersion = "labforge-bench/v1"

// Results is what results.json holds: the machine, then one entry per scenario run.
type Results struct {
	// Schema is SchemaVersion.
	Schema string `json:"schema"`
	// Machine is where the run happened.
	Machine Machine `json:"machine"`
	// Scenarios are the scenarios run, in order.
	Scenarios []*ScenarioResult `json:"scenarios"`
}

// Machine describes the host of a run: figures from different machines do not compare.
type Machine struct {
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

// ScenarioResult is one scenario's outcome.
type ScenarioResult struct {
	// Name is the scenario's name, as -scenario takes it.
	Name string `json:"name"`
	// Description says in one line what the scenario does.
	Description string `json:"description"`
	// Parameters are the scenario's settings (pool sizes, claim counts, seed, deadlines).
	Parameters map[string]any `json:"parameters"`
	// Figures are the scenario's measurements, with the target where it has one.
	Figures []Figure `json:"figures"`
	// Windows are the measured phases of the scenario with what the API server and the
	// manager counted during each.
	Windows []APIWindow `json:"windows"`
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

// Figure is one measurement.
type Figure struct {
	// Name says what was measured.
	Name string `json:"name"`
	// Value is the measurement; null when it could not be measured (e.g. a percentile
	// that falls on a claim that never became Ready).
	Value *float64 `json:"value"`
	// Unit is the unit of Value: ms, s, MiB, count, per claim, per second, bool (1 true).
	Unit string `json:"unit"`
	// Target is the target for this figure, if any.
	Target *Target `json:"target,omitempty"`
	// Met says whether Value meets Target; absent without a target.
	Met *bool `json:"met,omitempty"`
	// Note qualifies the value.
	Note string `json:"note,omitempty"`
}

// Target is a bound a figure should respect: Op is "<=", ">=" or "==".
type Target struct {
	// Op is the comparison: "<=", ">=" or "==".
	Op string `json:"op"`
	// Value is the bound, in the figure's unit.
	Value float64 `json:"value"`
}

// APIWindow is what the API server and the manager counted during one measured phase.
type APIWindow struct {
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

// CPUByProcess returns the window's CPU time by process, the operator's included.
func (w APIWindow) CPUByProcess() map[string]float64 {
	out := make(map[string]float64, len(w.CPUSeconds)+1)
	for k, v := range w.CPUSeconds {
		out[k] = v
	}
	out["operator"] = w.OperatorCPUSeconds
	return out
}

// TotalCPU is the CPU time every process measured used during the window.
func (w APIWindow) TotalCPU() float64 {
	total := 0.0
	for _, v := range w.CPUByProcess() {
		total += v
	}
	return total
}

// Inf stands for a duration that never ended (a claim never Ready).
var Inf = math.Inf(1)

// NewFigure returns a figure of value in unit; an infinite or NaN value (never measured)
// is stored as null.
func NewFigure(name string, value float64, unit string) Figure {
	f := Figure{Name: name, Unit: unit}
	if !math.IsInf(value, 0) && !math.IsNaN(value) {
		f.Value = &value
	}
	return f
}

// Want sets the figure's target and whether it was met. A figure without a value misses
// its target.
func (f Figure) Want(op string, bound float64) Figure {
	f.Target = &Target{Op: op, Value: bound}
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

// WithNote returns the figure with its note set (fmt.Sprintf of format and args).
func (f Figure) WithNote(format string, args ...any) Figure {
	f.Note = fmt.Sprintf(format, args...)
	return f
}

// BoolValue is a bool figure's value: 1 for true.
func BoolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Percentile returns the nearest-rank q-quantile (0 < q <= 1) of sorted: the smallest value
// with at least q of the values at or below it. +Inf stands for a claim that never became
// Ready, so a percentile that reaches one is +Inf.
func Percentile(sorted []float64, q float64) float64 {
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

// LatencyFigures returns p50, p90, p99 and max of values (ms; +Inf for never), named with
// prefix, with the targets given for p50 and p99 (0 for none).
func LatencyFigures(prefix string, values []float64, p50Target, p99Target float64) []Figure {
	sorted := append([]float64(nil), values...)
	sort.Float64s(sorted)
	p50 := NewFigure(prefix+" p50", Percentile(sorted, 0.50), "ms")
	p99 := NewFigure(prefix+" p99", Percentile(sorted, 0.99), "ms")
	if p50Target > 0 {
		p50 = p50.Want("<=", p50Target)
	}
	if p99Target > 0 {
		p99 = p99.Want("<=", p99Target)
	}
	return []Figure{p50, NewFigure(prefix+" p90", Percentile(sorted, 0.90), "ms"), p99,
		NewFigure(prefix+" max", Percentile(sorted, 1), "ms")}
}

// Millis is d in milliseconds, the unit of every latency figure.
func Millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ReadMachine describes this host.
func ReadMachine(now time.Time) Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), Date: now.UTC().Format(time.RFC3339), LoadAverage: LoadAverage()}
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

// LoadAverage is the 1-minute load average, or -1 when unknown.
func LoadAverage() float64 {
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

// WriteResults writes r as indented JSON to path, atomically.
func WriteResults(path string, r *Results) error {
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
