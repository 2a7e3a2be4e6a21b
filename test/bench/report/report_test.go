package report

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPercentile(t *testing.T) {
	values := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := map[string]struct {
		sorted []float64
		q      float64
		Want   float64
	}{
		"median of ten is the fifth":      {values, 0.5, 5},
		"p90 of ten is the ninth":         {values, 0.9, 9},
		"p99 of ten is the largest":       {values, 0.99, 10},
		"max":                             {values, 1, 10},
		"one value":                       {[]float64{7}, 0.5, 7},
		"a never-Ready claim reaches p99": {[]float64{1, 2, math.Inf(1)}, 0.99, math.Inf(1)},
		"but not the median":              {[]float64{1, 2, math.Inf(1)}, 0.5, 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Percentile(tc.sorted, tc.q); got != tc.Want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.q, got, tc.Want)
			}
		})
	}
}

func TestFigureTargets(t *testing.T) {
	tests := map[string]struct {
		f       Figure
		wantMet bool
	}{
		"below a maximum":          {NewFigure("p99", 59, "ms").Want("<=", 60), true},
		"at a maximum":             {NewFigure("p99", 60, "ms").Want("<=", 60), true},
		"above a maximum":          {NewFigure("p99", 61, "ms").Want("<=", 60), false},
		"a rate above its minimum": {NewFigure("rate", 51, "per second").Want(">=", 50), true},
		"zero writes wanted, one":  {NewFigure("writes", 1, "count").Want("==", 0), false},
		"a value never measured":   {NewFigure("p99", math.Inf(1), "ms").Want("<=", 60), false},
		"zero double bindings":     {NewFigure("double", 0, "count").Want("==", 0), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.f.Met == nil || *tc.f.Met != tc.wantMet {
				t.Errorf("met = %v, want %v", tc.f.Met, tc.wantMet)
			}
		})
	}
	if f := NewFigure("never", math.Inf(1), "ms"); f.Value != nil {
		t.Errorf("an infinite value is stored as %v, want null", *f.Value)
	}
}

func TestDecimateKeepsExtremes(t *testing.T) {
	var points [][2]float64
	for i := 0; i < 10000; i++ {
		y := 50.0
		if i == 4321 {
			y = 0 // a dip that must survive
		}
		if i == 8765 {
			y = 99
		}
		points = append(points, [2]float64{float64(i), y})
	}
	got := decimate(points, 100)
	if len(got) > 4*101 {
		t.Errorf("kept %d points for 100 columns, want at most 404", len(got))
	}
	lo, hi := 50.0, 50.0
	for i, p := range got {
		lo, hi = math.Min(lo, p[1]), math.Max(hi, p[1])
		if i > 0 && p[0] < got[i-1][0] {
			t.Fatalf("point %d goes back in time", i)
		}
	}
	if lo != 0 || hi != 99 {
		t.Errorf("decimated range [%v, %v], want [0, 99]", lo, hi)
	}
	if got[0] != points[0] || got[len(got)-1] != points[len(points)-1] {
		t.Errorf("first or last point lost")
	}
}

func TestWriteMarkdown(t *testing.T) {
	r := &Results{Machine: Machine{CPUs: 2, CPUModel: "cpu", Kernel: "6.1", GoVersion: "go1.26", Date: "2026-01-01T00:00:00Z"},
		Scenarios: []*ScenarioResult{{
			Name: "serial", Description: "200 claims", Seconds: 90,
			Figures: []Figure{NewFigure("claim -> Ready p50", 12, "ms").Want("<=", 20), NewFigure("claim -> Ready p99", Inf, "ms").Want("<=", 60),
				NewFigure("cold fallbacks", 0, "count")},
			Windows: []APIWindow{{Name: "claims", Seconds: 80, MutatingRequests: 1000, HarnessWrites: 400, ByResource: map[string]float64{"APPLY secrets": 600, "POST labforge.dev/labclaims": 200},
				OperatorCPUSeconds: 20, CPUSeconds: map[string]float64{"kube-apiserver": 80, "etcd": 20, "bench": 0.5}}},
			Images: []string{"serial-latency.svg"},
		}},
	}
	var b strings.Builder
	WriteMarkdown(&b, r)
	for _, want := range []string{
		"### serial\n\n200 claims. 90 s",
		"| claim -> Ready p50 | 12 ms | <= 20 | yes |",
		"| claim -> Ready p99 | n/a | <= 60 | no |",
		"| cold fallbacks | 0 count |  |  |",
		"Window *claims* (80.0 s): 1000 mutating requests, 400 from the harness, 0 conflicts. Top: APPLY secrets 600, POST labforge.dev/labclaims 200.",
		"CPU 120.5 s, 75 % of 2 CPUs over the window: kube-apiserver 80, etcd 20, operator 20, bench 0.5 s.",
		"![serial-latency.svg](../bench/serial-latency.svg)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, b.String())
		}
	}
}

// readSVG draws with draw into a temporary file and returns the SVG, which must be
// well-formed XML.
func readSVG(t *testing.T, draw func(path string) error) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.svg")
	if err := draw(path); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(data))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
	}
	return string(data)
}

func TestDrawLatency(t *testing.T) {
	tests := map[string]struct {
		series  []Series
		targets []VLine
		want    []string
		notWant []string
	}{
		"a linear axis, a claim never Ready": {
			series:  []Series{{Name: "claim -> Ready", Values: []float64{12, 15, Inf}}},
			targets: []VLine{{Label: "target p99 60 ms", X: 60}},
			want: []string{"<svg", "claims per bin", "fraction of claims", "latency (ms)", "target p99 60 ms",
				"claim -&gt; Ready: n=3, p50 15 ms, p99 never, max never, 1 never finished"},
			notWant: []string{"log scale"},
		},
		"values over 30x apart turn the axis logarithmic": {
			series: []Series{{Name: "a", Values: []float64{2, 3, 500}}, {Name: "b", Values: []float64{10, 40}}},
			want:   []string{"latency (ms), log scale", "a: n=3, p50 3 ms, p99 500 ms, max 500 ms", "b: n=2, p50 10 ms, p99 40 ms, max 40 ms", ">200<", ">500<"},
		},
		"no values at all": {
			series: []Series{{Name: "none"}},
			want:   []string{"none: n=0"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			svg := readSVG(t, func(path string) error { return DrawLatency(path, "the title", tc.series, tc.targets) })
			for _, want := range append(tc.want, "the title") {
				if !strings.Contains(svg, want) {
					t.Errorf("the image lacks %q", want)
				}
			}
			for _, not := range tc.notWant {
				if strings.Contains(svg, not) {
					t.Errorf("the image has %q", not)
				}
			}
		})
	}
}

func TestDrawTimeline(t *testing.T) {
	lines := []TimeLine{
		{Name: "claims bound", Points: [][2]float64{{0, 0}, {1.5, 10}, {3, 50}}},
		{Name: "claims Ready", Points: [][2]float64{{0, 0}, {2, 5}, {4, 50}}},
	}
	svg := readSVG(t, func(path string) error {
		return DrawTimeline(path, "restart", "claims", lines, []VLine{{Label: "SIGKILL", X: 1}, {Label: "new process", X: 1.2}})
	})
	for _, want := range []string{"restart", "seconds", "claims bound", "claims Ready", "SIGKILL", "new process"} {
		if !strings.Contains(svg, ">"+want+"<") {
			t.Errorf("the image lacks the text %q", want)
		}
	}
}
