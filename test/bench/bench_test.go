package main

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseMetrics(t *testing.T) {
	tests := map[string]struct {
		text    string
		want    metricSet
		wantErr string
	}{
		"counters with labels, comments and a timestamp": {
			text: `# HELP apiserver_request_total Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",group="labforge.dev",resource="labclaims",verb="POST"} 3
apiserver_request_total{code="409",resource="labenvironments",verb="PUT"} 1 1700000000000
process_resident_memory_bytes 5.2e+07
`,
			want: metricSet{
				{name: "apiserver_request_total", labels: map[string]string{"code": "201", "component": "apiserver", "group": "labforge.dev", "resource": "labclaims", "verb": "POST"}, value: 3},
				{name: "apiserver_request_total", labels: map[string]string{"code": "409", "resource": "labenvironments", "verb": "PUT"}, value: 1},
				{name: "process_resident_memory_bytes", labels: map[string]string{}, value: 5.2e7},
			},
		},
		"escaped label values and special floats": {
			text: `m{path="a\"b\\c\nd",le="+Inf"} +Inf
m{x="1",} NaN
`,
			want: metricSet{
				{name: "m", labels: map[string]string{"path": "a\"b\\c\nd", "le": "+Inf"}, value: math.Inf(1)},
				{name: "m", labels: map[string]string{"x": "1"}, value: math.NaN()},
			},
		},
		"an unterminated label set": {text: `m{a="1" 3`, wantErr: "malformed label"},
		"no value":                  {text: "m{a=\"1\"}\n", wantErr: "no value"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseMetrics(strings.NewReader(tc.text), nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(sample{}), cmp.Comparer(func(a, b float64) bool {
				return a == b || (math.IsNaN(a) && math.IsNaN(b))
			})); diff != "" {
				t.Errorf("parseMetrics (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiffAPI(t *testing.T) {
	before := apiCounts{
		{resource: "POST labforge.dev/labclaims", code: "201"}:    10,
		{resource: "PUT coordination.k8s.io/leases", code: "200"}: 4,
	}
	after := apiCounts{
		{resource: "POST labforge.dev/labclaims", code: "201"}:                  13,
		{resource: "PUT labforge.dev/labenvironments", code: "200"}:             2,
		{resource: "PUT labforge.dev/labenvironments", code: "409"}:             1,
		{resource: "APPLY secrets", code: "200"}:                                5,
		{resource: "PUT coordination.k8s.io/leases", code: "200"}:               6,
		{resource: "PATCH labforge.dev/labclaims/status", code: "200"}:          0,
		{resource: "DELETECOLLECTION kubevirt.io/virtualmachines", code: "200"}: 1,
	}
	got := diffAPI(before, after)
	want := apiDelta{mutating: 12, leases: 2, conflicts: 1, byResource: map[string]float64{
		"POST labforge.dev/labclaims": 3, "PUT labforge.dev/labenvironments": 3, "APPLY secrets": 5,
		"PUT coordination.k8s.io/leases": 2, "DELETECOLLECTION kubevirt.io/virtualmachines": 1,
	}, failed: map[string]float64{"PUT labforge.dev/labenvironments 409": 1}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(apiDelta{})); diff != "" {
		t.Errorf("diffAPI (-want +got):\n%s", diff)
	}
}

func TestPercentile(t *testing.T) {
	values := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := map[string]struct {
		sorted []float64
		q      float64
		want   float64
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
			if got := percentile(tc.sorted, tc.q); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.sorted, tc.q, got, tc.want)
			}
		})
	}
}

func TestFigureTargets(t *testing.T) {
	tests := map[string]struct {
		f       figure
		wantMet bool
	}{
		"below a maximum":          {newFigure("p99", 59, "ms").want("<=", 60), true},
		"at a maximum":             {newFigure("p99", 60, "ms").want("<=", 60), true},
		"above a maximum":          {newFigure("p99", 61, "ms").want("<=", 60), false},
		"a rate above its minimum": {newFigure("rate", 51, "per second").want(">=", 50), true},
		"zero writes wanted, one":  {newFigure("writes", 1, "count").want("==", 0), false},
		"a value never measured":   {newFigure("p99", math.Inf(1), "ms").want("<=", 60), false},
		"zero double bindings":     {newFigure("double", 0, "count").want("==", 0), true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.f.Met == nil || *tc.f.Met != tc.wantMet {
				t.Errorf("met = %v, want %v", tc.f.Met, tc.wantMet)
			}
		})
	}
	if f := newFigure("never", math.Inf(1), "ms"); f.Value != nil {
		t.Errorf("an infinite value is stored as %v, want null", *f.Value)
	}
}

func TestArrivalsAreSeededPoisson(t *testing.T) {
	a, b := arrivals(1, 50, 60*time.Second), arrivals(1, 50, 60*time.Second)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("two draws with one seed differ:\n%s", diff)
	}
	if c := arrivals(2, 50, 60*time.Second); cmp.Equal(a, c) {
		t.Fatal("two seeds drew the same arrivals")
	}
	// 3,000 expected; a Poisson count's standard deviation is about 55.
	if n := len(a); n < 2800 || n > 3200 {
		t.Errorf("drew %d arrivals at 50/s over 60s, want about 3000", n)
	}
	for i := 1; i < len(a); i++ {
		if a[i] < a[i-1] || a[i] >= 60*time.Second {
			t.Fatalf("arrival %d at %s after %s: not increasing within the duration", i, a[i], a[i-1])
		}
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
	r := &results{Machine: machine{CPUs: 2, CPUModel: "cpu", Kernel: "6.1", GoVersion: "go1.26", Date: "2026-01-01T00:00:00Z"},
		Scenarios: []*scenarioResult{{
			Name: "serial", Description: "200 claims", Seconds: 90,
			Figures: []figure{newFigure("claim -> Ready p50", 12, "ms").want("<=", 20), newFigure("claim -> Ready p99", inf, "ms").want("<=", 60),
				newFigure("cold fallbacks", 0, "count")},
			Windows: []apiWindow{{Name: "claims", Seconds: 80, MutatingRequests: 1000, HarnessWrites: 400, ByResource: map[string]float64{"APPLY secrets": 600, "POST labforge.dev/labclaims": 200},
				OperatorCPUSeconds: 20, CPUSeconds: map[string]float64{"kube-apiserver": 80, "etcd": 20, "bench": 0.5}}},
			Images: []string{"serial-latency.svg"},
		}},
	}
	var b strings.Builder
	writeMarkdown(&b, r)
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

func TestProcessCPU(t *testing.T) {
	before := readCPU(map[string]int{})
	// Spin until the kernel has charged this process at least one tick more.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if s, err := procCPUSeconds(os.Getpid()); err != nil {
			t.Fatal(err)
		} else if s > before["bench"].seconds {
			break
		}
	}
	after := readCPU(map[string]int{"gone": 1 << 30})
	if _, ok := after["gone"]; ok {
		t.Errorf("a process that does not exist was read: %v", after)
	}
	used := cpuSince(before, after)
	if used["bench"] <= 0 {
		t.Errorf("the harness used %v s of CPU spinning, want more than 0", used["bench"])
	}

	// A process restarted in between (a new pid) counts from its start.
	got := cpuSince(map[string]processCPU{"kube-apiserver": {pid: 10, seconds: 50}, "etcd": {pid: 11, seconds: 5}},
		map[string]processCPU{"kube-apiserver": {pid: 12, seconds: 2}, "etcd": {pid: 11, seconds: 7}})
	if got["kube-apiserver"] != 2 || got["etcd"] != 2 {
		t.Errorf("cpuSince = %v, want kube-apiserver 2 (restarted) and etcd 2", got)
	}
}
