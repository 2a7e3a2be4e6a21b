package scenarios

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/bench/recorder"
	"github.com/labforge/labforge/test/bench/report"
)

const mib = 1 << 20

// fillParams configures the fill scenario.
type fillParams struct {
	pool poolSpec
}

// runFill: a pool created empty, until every lab is Ready.
func (h *Harness) runFill(ctx context.Context, r *report.ScenarioResult, p fillParams) error {
	r.Parameters = map[string]any{"pool": p.pool.params(), "template": claimParams()["template"], "bootDelay": h.BootDelay.String()}
	e, w, err := h.startSettled(ctx, r, "fill")
	defer e.close()
	if err != nil {
		return err
	}
	e.labs.Record(p.pool.name)
	start := time.Now()
	if err := e.createPool(ctx, p.pool); err != nil {
		return err
	}
	n := int(p.pool.replicas)
	fillErr := e.waitPoolReady(ctx, p.pool.name, n, 10*time.Minute)
	if fillErr != nil && e.op.failure() != nil {
		return fillErr
	}
	statusErr := e.waitFor(ctx, time.Minute, "LabPool status readyReplicas", func() bool {
		return !e.pools.ReadySince(p.pool.name, p.pool.replicas).IsZero()
	}, nil)
	timeline := e.labs.StopRecording(p.pool.name)
	firstReady, allReady := report.Inf, report.Inf
	for _, s := range timeline {
		if s.Count[recorder.LabReady] >= 1 && firstReady == report.Inf {
			firstReady = s.At.Sub(start).Seconds()
		}
		if s.Count[recorder.LabReady] >= n && allReady == report.Inf {
			allReady = s.At.Sub(start).Seconds()
		}
	}
	statusReady := report.Inf
	if statusErr == nil {
		statusReady = e.pools.ReadySince(p.pool.name, p.pool.replicas).Sub(start).Seconds()
	}
	r.Figures = []report.Figure{
		report.NewFigure("pool created -> all labs Ready", allReady, "s").Want("<=", 6).WithNote("as the harness's LabEnvironment watch saw them"),
		report.NewFigure("pool created -> status.readyReplicas = replicas", statusReady, "s"),
		report.NewFigure("pool created -> first lab Ready", firstReady, "s"),
	}
	if fillErr != nil {
		r.Notes = append(r.Notes, fillErr.Error())
	}
	if err := report.DrawTimeline(filepath.Join(h.OutDir, "fill-occupancy.svg"),
		fmt.Sprintf("fill: a pool of %d from empty (maxBooting %d, boot delay %s)", p.pool.replicas, p.pool.maxBooting, h.BootDelay), "labs",
		occupancyLines(timeline, float64(start.UnixNano())/1e9)[:2], []report.VLine{{Label: "pool created", X: 0}}); err != nil {
		r.Notes = append(r.Notes, "drawing fill-occupancy.svg: "+err.Error())
	} else {
		r.Images = append(r.Images, "fill-occupancy.svg")
	}
	if _, err := e.settle(ctx, 2*time.Second, 5*time.Minute, nil); err != nil {
		return err
	}
	win, err := e.end(ctx, w)
	r.Windows = append(r.Windows, win)
	r.Figures = append(r.Figures,
		report.NewFigure("mutating API requests per lab", win.MutatingRequests/float64(n), "per lab").WithNote("all told: operator, kube-controller-manager, harness"),
		report.NewFigure("operator writes per lab", operatorWrites(win)/float64(n), "per lab"),
		report.NewFigure("operator CPU per lab", win.OperatorCPUSeconds*1000/float64(n), "ms").WithNote("process_cpu_seconds_total"),
		report.NewFigure("CPU per lab, all processes", win.TotalCPU()*1000/float64(n), "ms").Want("<=", 120).WithNote("%s", report.CPUShares(win, float64(n), 1000, "ms")),
		report.NewFigure("CPU time of all processes / CPUs", win.TotalCPU()/float64(runtime.NumCPU()), "s").
			WithNote("the fill's floor on this machine: how long it takes at least with every CPU doing nothing else"))
	return err
}

// memoryReading is the operator's memory at one moment.
type memoryReading struct {
	rss, heapAlloc, heapInuse, goSys float64
	// From /proc: peak RSS, and the RSS split into anonymous memory (heap, stacks) and
	// file-backed pages (the binary's code and data).
	peak, anon, file float64
}

// memory reads the operator's memory: RSS and Go's own figures from its metrics, peak
// RSS and the split of RSS from /proc.
func (e *env) memory(ctx context.Context) (memoryReading, error) {
	m, _, err := e.scrape(ctx)
	if err != nil {
		return memoryReading{}, err
	}
	r := memoryReading{
		rss:       m.Set.Sum("process_resident_memory_bytes", nil),
		heapAlloc: m.Set.Sum("go_memstats_heap_alloc_bytes", nil),
		heapInuse: m.Set.Sum("go_memstats_heap_inuse_bytes", nil),
		goSys:     m.Set.Sum("go_memstats_sys_bytes", nil),
	}
	if p := e.op.current(); p != nil {
		if st, err := recorder.ProcStatus(p.cmd.Process.Pid); err == nil {
			r.peak, r.anon, r.file = st["VmHWM"], st["RssAnon"], st["RssFile"]
		}
	}
	return r, nil
}

// liveHeap has the operator collect garbage and returns its heap then, the part of its
// memory its cache and state hold. It writes the heap profile taken with it, and the same
// in text (ending with the runtime's MemStats: idle and released heap, stacks, GC
// metadata), and the process's /proc smaps, to the log directory.
func (e *env) liveHeap(ctx context.Context, labs int32) (float64, error) {
	proc := e.op.current()
	if proc == nil || proc.pprofAddr == "" {
		return 0, errors.New("the operator serves no profiles")
	}
	path := filepath.Join(e.logDir, fmt.Sprintf("heap-%d-labs.pprof", labs))
	if err := fetchTo(ctx, "http://"+proc.pprofAddr+"/debug/pprof/heap?gc=1", path); err != nil {
		return 0, fmt.Errorf("heap profile at %d labs: %w", labs, err)
	}
	text := strings.TrimSuffix(path, ".pprof") + ".txt"
	if err := fetchTo(ctx, "http://"+proc.pprofAddr+"/debug/pprof/heap?gc=1&debug=1", text); err != nil {
		return 0, fmt.Errorf("heap profile at %d labs: %w", labs, err)
	}
	e.h.logf("heap profile at %d labs: %s (and .txt)", labs, path)
	// Which mappings the RSS is made of (the binary's text and data, the heap arenas;
	// FilePmdMapped shows the kernel's huge pages of the binary).
	if smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", proc.cmd.Process.Pid)); err == nil {
		_ = os.WriteFile(filepath.Join(e.logDir, fmt.Sprintf("smaps-%d-labs.txt", labs)), smaps, 0o644)
	}
	data, err := os.ReadFile(text)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s has no HeapAlloc line", text)
}

// scaleParams configures the scale scenario.
type scaleParams struct {
	pool  poolSpec
	steps []int32
}

// setReplicas scales a pool.
func (e *env) setReplicas(ctx context.Context, pool string, replicas int32) error {
	p := &labforgev1alpha1.LabPool{}
	if err := e.c.Get(ctx, client.ObjectKey{Name: pool}, p); err != nil {
		return err
	}
	patch := client.MergeFrom(p.DeepCopy())
	p.Spec.Replicas = replicas
	return e.c.Patch(ctx, p, patch)
}

// runScale: the operator's memory once it settled at each number of Ready labs.
func (h *Harness) runScale(ctx context.Context, r *report.ScenarioResult, p scaleParams) error {
	p.pool.replicas = p.steps[0]
	r.Parameters = map[string]any{"pool": p.pool.params(), "steps": p.steps, "template": claimParams()["template"],
		"settle": "no queued or running reconcile and reconcile counts unchanged for 3s before reading"}
	e, err := h.prepare(ctx, r, p.pool)
	defer e.close()
	if err != nil {
		return err
	}
	for i, n := range p.steps {
		if i > 0 {
			if err := e.setReplicas(ctx, p.pool.name, n); err != nil {
				return err
			}
			h.logf("scaling to %d labs", n)
			if err := e.waitPoolReady(ctx, p.pool.name, int(n), 10*time.Minute+time.Duration(n)*3*time.Second); err != nil {
				return err
			}
		}
		if _, err := e.settle(ctx, 3*time.Second, 10*time.Minute, nil); err != nil {
			return err
		}
		mem, err := e.memory(ctx)
		if err != nil {
			return err
		}
		at := fmt.Sprintf(" at %d labs", n)
		rssFig := report.NewFigure("operator RSS"+at, mem.rss/mib, "MiB")
		if i == len(p.steps)-1 {
			rssFig = rssFig.Want("<=", 150)
		}
		r.Figures = append(r.Figures, rssFig,
			report.NewFigure("of which anonymous"+at, mem.anon/mib, "MiB").WithNote("RssAnon of /proc: heap, stacks"),
			report.NewFigure("of which file-backed"+at, mem.file/mib, "MiB").WithNote("RssFile of /proc: the binary's pages"),
			report.NewFigure("Go heap in use"+at, mem.heapInuse/mib, "MiB"),
			report.NewFigure("Go heap allocated"+at, mem.heapAlloc/mib, "MiB"),
			report.NewFigure("Go runtime's memory"+at, mem.goSys/mib, "MiB").WithNote("go_memstats_sys_bytes: all the runtime obtained from the OS"),
			report.NewFigure("peak RSS up to"+at[3:], mem.peak/mib, "MiB").WithNote("VmHWM of /proc"))
		h.logf("%d labs: RSS %.0f MiB (%.0f anonymous, %.0f file), heap in use %.0f MiB", n, mem.rss/mib, mem.anon/mib, mem.file/mib, mem.heapInuse/mib)
		live, err := e.liveHeap(ctx, n)
		if err != nil {
			return err
		}
		r.Figures = append(r.Figures, report.NewFigure("Go heap live"+at, live/mib, "MiB").WithNote("HeapAlloc right after a collection the harness asks for"))
	}
	return nil
}

// idleParams configures the idle-resync scenario.
type idleParams struct {
	pool poolSpec
}

// runIdleResync: many Ready labs, the operator restarted; what its first pass writes and
// how long it takes.
func (h *Harness) runIdleResync(ctx context.Context, r *report.ScenarioResult, p idleParams) error {
	r.Parameters = map[string]any{"pool": p.pool.params(), "template": claimParams()["template"],
		"restart": "SIGTERM, then a new operator process at once",
		"passEnd": "every controller started its workers, no queued or running reconcile, every LabEnvironment reconciled, counts unchanged for 3s"}
	e, err := h.prepare(ctx, r, p.pool)
	defer e.close()
	if err != nil {
		return err
	}
	if err := e.op.stop(30 * time.Second); err != nil {
		return err
	}
	w, err := e.begin(ctx, "restart and resync")
	if err != nil {
		return err
	}
	proc, err := e.op.start(ctx)
	if err != nil {
		return err
	}
	metricsUp := time.Since(proc.started)
	if proc.pprofAddr != "" {
		go e.profileCPU(ctx, proc.pprofAddr, w.name)
	}
	labs := float64(p.pool.replicas)
	settled, settleErr := e.settle(ctx, 3*time.Second, 30*time.Minute, func(m recorder.OperatorMetrics) bool {
		return m.ReconcilesOf("labenvironment") >= labs
	})
	pass := report.Inf
	if settleErr == nil {
		pass = settled.Sub(proc.started).Seconds()
	} else if e.op.failure() != nil || ctx.Err() != nil {
		return settleErr
	} else {
		// A pass that never ends is a result too: what it wrote so far is still counted.
		r.Notes = append(r.Notes, "the pass did not end: "+settleErr.Error())
	}
	win, err := e.end(ctx, w)
	r.Windows = append(r.Windows, win)
	reconciles := 0.0
	for _, v := range win.Reconciles {
		reconciles += v
	}
	r.Figures = []report.Figure{
		report.NewFigure("mutating API requests during the resync", win.MutatingRequests, "count").Want("==", 0).WithNote("all clients; leases excluded"),
		report.NewFigure("operator writes during the resync", operatorWrites(win), "count"),
		report.NewFigure("resync pass (process start -> idle)", pass, "s").Want("<=", 5),
		report.NewFigure("process start -> metrics served", metricsUp.Seconds(), "s"),
		report.NewFigure("reconciles in the pass", reconciles, "count"),
	}
	return err
}
