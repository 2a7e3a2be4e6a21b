package scenarios

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/test/bench/report"
	"github.com/labforge/labforge/test/integration"
)

// TestSmoke keeps the harness working: a tiny serial scenario (a pool of 3, 3 claims)
// through the same code as `make bench`, on a real control plane with `labforge operator`
// as a child process. It checks the report's shape and counts, never a duration: benchmarks
// are not tests.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "labforge")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/labforge")
	build.Dir = integration.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building labforge: %v\n%s", err, out)
	}
	var log bytes.Buffer
	h := &Harness{LabforgeBin: bin, OutDir: dir, LogRoot: filepath.Join(dir, "logs"), Audit: true, Log: &log}
	r := Run(ctx, h, Scenario{Name: "smoke", Description: "3 claims on a pool of 3", run: func(ctx context.Context, h *Harness, r *report.ScenarioResult) error {
		return h.runSerial(ctx, r, serialParams{pool: poolSpec{name: "smoke", replicas: 3, maxBooting: 3, maxLab: 10}, claims: 3})
	}})
	report.PrintSummary(&log, r)
	t.Log(log.String())
	if r.Error != "" {
		t.Fatalf("the scenario failed: %s\noperator log:\n%s", r.Error, tail(filepath.Join(dir, "logs", "smoke", "operator-1.log"), 40))
	}

	figures := map[string]report.Figure{}
	for _, f := range r.Figures {
		figures[f.Name] = f
	}
	counts := map[string]float64{"claims Ready": 3, "claims never Ready (within the deadline)": 0, "claim creates refused by the API server": 0, "cold fallbacks": 0}
	for name, want := range counts {
		f, ok := figures[name]
		if !ok || f.Value == nil || *f.Value != want {
			t.Errorf("figure %q = %+v, want %v", name, f, want)
		}
	}
	for _, name := range []string{"claim -> Ready p50", "claim -> Ready p90", "claim -> Ready p99", "claim -> Ready max"} {
		f, ok := figures[name]
		if !ok || f.Value == nil || f.Unit != "ms" {
			t.Errorf("figure %q = %+v, want a value in ms", name, f)
		}
	}
	for name, op := range map[string]string{"claim -> Ready p50": "<=", "claim -> Ready p99": "<=",
		"CPU per claim, all processes (claim, release and refill)": "<=", "operator writes refused with 403 per claim": "=="} {
		if f := figures[name]; f.Target == nil || f.Target.Op != op || f.Met == nil {
			t.Errorf("figure %q has target %+v, met %v; want one with %s", name, f.Target, f.Met, op)
		}
	}
	// No controller of the operator, the simulated KubeVirt included, writes into a lab
	// whose namespace is going.
	if f := figures["operator writes refused with 403 per claim"]; f.Value == nil || *f.Value != 0 {
		t.Errorf("operator writes refused with 403 per claim = %+v, want 0", f)
	}

	if len(r.Windows) != 1 {
		t.Fatalf("got %d windows, want 1", len(r.Windows))
	}
	w := r.Windows[0]
	if w.HarnessWrites != 6 {
		t.Errorf("the harness wrote %v times, want 6 (3 creates, 3 deletes)", w.HarnessWrites)
	}
	if w.ByResource["POST labforge.dev/labclaims"] != 3 || w.ByResource["DELETE labforge.dev/labclaims"] < 3 {
		t.Errorf("the API server counted claim writes %v, want 3 creates and at least the harness's 3 deletes", w.ByResource)
	}
	if w.MutatingRequests < w.HarnessWrites || w.Reconciles["labclaim success"] < 3 || operatorWrites(w) == 0 {
		t.Errorf("window %+v: want the operator's writes and at least 3 successful claim reconciles", w)
	}
	// Every process's CPU time is read from /proc; kube-apiserver served every claim.
	for _, proc := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "bench"} {
		if _, ok := w.CPUSeconds[proc]; !ok {
			t.Errorf("the window's CPU time %v lacks %s", w.CPUSeconds, proc)
		}
	}
	if w.CPUSeconds["kube-apiserver"] <= 0 {
		t.Errorf("kube-apiserver used %v s of CPU serving 3 claims, want more than 0", w.CPUSeconds["kube-apiserver"])
	}
	if all, op := figures["CPU per claim, all processes (claim, release and refill)"], figures["operator CPU per claim (claim, release and refill)"]; all.Value == nil || op.Value == nil || *all.Value <= *op.Value {
		t.Errorf("CPU per claim of all processes %+v, want more than the operator's %+v", all, op)
	}

	// The audit log (-audit) holds every write, the harness's claim creates among them,
	// and no object's body.
	auditLog, err := os.ReadFile(filepath.Join(dir, "logs", "smoke", AuditLogFile))
	if err != nil {
		t.Fatalf("the audit log: %v", err)
	}
	var creates int
	for _, line := range bytes.Split(bytes.TrimSpace(auditLog), []byte("\n")) {
		var ev struct {
			Verb          string
			ObjectRef     struct{ Resource string }
			RequestObject json.RawMessage
		}
		if err := json.Unmarshal(line, &ev); err != nil {
			t.Fatalf("audit log line %q: %v", line, err)
		}
		if ev.RequestObject != nil {
			t.Errorf("the audit log holds a request body: %s", line)
		}
		if ev.Verb == "create" && ev.ObjectRef.Resource == "labclaims" {
			creates++
		}
	}
	if creates != 3 {
		t.Errorf("the audit log has %d LabClaim creates, want 3", creates)
	}

	if len(r.Images) != 1 {
		t.Fatalf("images %v, want one", r.Images)
	}
	svg, err := os.ReadFile(filepath.Join(dir, r.Images[0]))
	if err != nil || !strings.Contains(string(svg), "<svg") || !strings.Contains(string(svg), "n=3") {
		t.Errorf("image %s: %v, want an SVG of 3 claims", r.Images[0], err)
	}

	path := filepath.Join(dir, "results.json")
	if err := report.WriteResults(path, &report.Results{Schema: report.SchemaVersion, Machine: report.ReadMachine(time.Now()), Scenarios: []*report.ScenarioResult{r}}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Schema    string
		Machine   struct{ CPUs int }
		Scenarios []struct {
			Name       string
			Parameters map[string]any
			Figures    []struct {
				Name  string
				Value *float64
				Unit  string
			}
		}
	}
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back.Schema != report.SchemaVersion || back.Machine.CPUs < 1 || len(back.Scenarios) != 1 || back.Scenarios[0].Name != "smoke" ||
		len(back.Scenarios[0].Figures) != len(r.Figures) || back.Scenarios[0].Parameters["claims"] != 3.0 {
		t.Errorf("results.json does not read back: %s", data)
	}
}
