package report

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"sort"
	"strings"
)

// CPUShares lists the window's CPU time by process, most first, each divided by n and
// scaled by scale ("kube-apiserver 61, etcd 12, ..."), in unit.
func CPUShares(w APIWindow, n, scale float64, unit string) string {
	byProc := w.CPUByProcess()
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
		parts[i] = fmt.Sprintf("%s %s", k, FormatValue(byProc[k]*scale/n))
	}
	return strings.Join(parts, ", ") + " " + unit
}

// CPUSummary says how much CPU the window took of the machine's cpus, and by whom.
func CPUSummary(w APIWindow, cpus int) string {
	busy := 100 * w.TotalCPU() / (w.Seconds * float64(max(cpus, 1)))
	return fmt.Sprintf("CPU %.1f s, %.0f %% of %d CPUs over the window: %s", w.TotalCPU(), busy, cpus, CPUShares(w, 1, 1, "s"))
}

// PrintSummary writes the human summary of one scenario.
func PrintSummary(w io.Writer, r *ScenarioResult) {
	fmt.Fprintf(w, "\n== %s: %s (%.0fs, load %.1f -> %.1f)\n", r.Name, r.Description, r.Seconds, r.LoadAverage[0], r.LoadAverage[1])
	if r.Error != "" {
		fmt.Fprintf(w, "   FAILED: %s\n", r.Error)
	}
	for _, f := range r.Figures {
		value := "n/a"
		if f.Value != nil {
			value = FormatValue(*f.Value)
		}
		line := fmt.Sprintf("   %-58s %10s %-10s", f.Name, value, f.Unit)
		if f.Target != nil {
			verdict := "MISSED"
			if *f.Met {
				verdict = "met"
			}
			line += fmt.Sprintf(" target %s %s: %s", f.Target.Op, FormatValue(f.Target.Value), verdict)
		}
		if f.Note != "" {
			line += "  (" + f.Note + ")"
		}
		fmt.Fprintln(w, strings.TrimRight(line, " "))
	}
	for _, win := range r.Windows {
		fmt.Fprintf(w, "   [%s] %.1fs: %.0f mutating API requests (%.0f from the harness), %.0f conflicts; top: %s\n",
			win.Name, win.Seconds, win.MutatingRequests, win.HarnessWrites, win.Conflicts, TopEntries(win.ByResource, 6))
		if len(win.Failed) > 0 {
			fmt.Fprintf(w, "   [%s] refused: %s\n", win.Name, TopEntries(win.Failed, 6))
		}
		fmt.Fprintf(w, "   [%s] reconciles: %s\n", win.Name, TopEntries(win.Reconciles, 8))
		if len(win.CPUSeconds) > 0 {
			fmt.Fprintf(w, "   [%s] %s\n", win.Name, CPUSummary(win, runtime.NumCPU()))
		}
	}
	for _, img := range r.Images {
		fmt.Fprintf(w, "   image: %s\n", img)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "   note: %s\n", n)
	}
}

// FormatValue writes a figure's value as the summary and the Markdown tables show it.
func FormatValue(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e12:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// TopEntries renders the n largest entries of m, largest first.
func TopEntries(m map[string]float64, n int) string {
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

// WriteMarkdown renders a results file as the tables of docs/performance.md's results
// section: one table per scenario, figures with their targets.
func WriteMarkdown(w io.Writer, r *Results) {
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
				value = FormatValue(*f.Value) + " " + f.Unit
			}
			if f.Target != nil {
				tgt = f.Target.Op + " " + FormatValue(f.Target.Value)
				met = "no"
				if *f.Met {
					met = "yes"
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", f.Name, value, tgt, met)
		}
		for _, win := range s.Windows {
			fmt.Fprintf(w, "\nWindow *%s* (%.1f s): %.0f mutating requests, %.0f from the harness, %.0f conflicts. Top: %s.\n",
				win.Name, win.Seconds, win.MutatingRequests, win.HarnessWrites, win.Conflicts, TopEntries(win.ByResource, 8))
			if len(win.CPUSeconds) > 0 {
				fmt.Fprintf(w, "%s.\n", CPUSummary(win, r.Machine.CPUs))
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
