package recorder

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
		Want    MetricSet
		wantErr string
	}{
		"counters with labels, comments and a timestamp": {
			text: `# HELP apiserver_request_total Counter of apiserver requests.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",group="labforge.dev",resource="labclaims",verb="POST"} 3
apiserver_request_total{code="409",resource="labenvironments",verb="PUT"} 1 1700000000000
process_resident_memory_bytes 5.2e+07
`,
			Want: MetricSet{
				{Name: "apiserver_request_total", Labels: map[string]string{"code": "201", "component": "apiserver", "group": "labforge.dev", "resource": "labclaims", "verb": "POST"}, Value: 3},
				{Name: "apiserver_request_total", Labels: map[string]string{"code": "409", "resource": "labenvironments", "verb": "PUT"}, Value: 1},
				{Name: "process_resident_memory_bytes", Labels: map[string]string{}, Value: 5.2e7},
			},
		},
		"escaped label values and special floats": {
			text: `m{path="a\"b\\c\nd",le="+Inf"} +Inf
m{x="1",} NaN
`,
			Want: MetricSet{
				{Name: "m", Labels: map[string]string{"path": "a\"b\\c\nd", "le": "+Inf"}, Value: math.Inf(1)},
				{Name: "m", Labels: map[string]string{"x": "1"}, Value: math.NaN()},
			},
		},
		"an unterminated label set": {text: `m{a="1" 3`, wantErr: "malformed label"},
		"no value":                  {text: "m{a=\"1\"}\n", wantErr: "no value"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseMetrics(strings.NewReader(tc.text), nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.Want, got, cmp.AllowUnexported(Sample{}), cmp.Comparer(func(a, b float64) bool {
				return a == b || (math.IsNaN(a) && math.IsNaN(b))
			})); diff != "" {
				t.Errorf("parseMetrics (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiffAPI(t *testing.T) {
	before := APICounts{
		{resource: "POST labforge.dev/labclaims", code: "201"}:    10,
		{resource: "PUT coordination.k8s.io/leases", code: "200"}: 4,
	}
	after := APICounts{
		{resource: "POST labforge.dev/labclaims", code: "201"}:                  13,
		{resource: "PUT labforge.dev/labenvironments", code: "200"}:             2,
		{resource: "PUT labforge.dev/labenvironments", code: "409"}:             1,
		{resource: "APPLY secrets", code: "200"}:                                5,
		{resource: "PUT coordination.k8s.io/leases", code: "200"}:               6,
		{resource: "PATCH labforge.dev/labclaims/status", code: "200"}:          0,
		{resource: "DELETECOLLECTION kubevirt.io/virtualmachines", code: "200"}: 1,
	}
	got := DiffAPI(before, after)
	want := APIDelta{Mutating: 12, Leases: 2, Conflicts: 1, ByResource: map[string]float64{
		"POST labforge.dev/labclaims": 3, "PUT labforge.dev/labenvironments": 3, "APPLY secrets": 5,
		"PUT coordination.k8s.io/leases": 2, "DELETECOLLECTION kubevirt.io/virtualmachines": 1,
	}, Failed: map[string]float64{"PUT labforge.dev/labenvironments 409": 1}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(APIDelta{})); diff != "" {
		t.Errorf("diffAPI (-want +got):\n%s", diff)
	}
}

func TestProcessCPU(t *testing.T) {
	before := ReadCPU(map[string]int{})
	// Spin until the kernel has charged this process at least one tick more.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if s, err := procCPUSeconds(os.Getpid()); err != nil {
			t.Fatal(err)
		} else if s > before["bench"].seconds {
			break
		}
	}
	after := ReadCPU(map[string]int{"gone": 1 << 30})
	if _, ok := after["gone"]; ok {
		t.Errorf("a process that does not exist was read: %v", after)
	}
	used := CPUSince(before, after)
	if used["bench"] <= 0 {
		t.Errorf("the harness used %v s of CPU spinning, want more than 0", used["bench"])
	}

	// A process restarted in between (a new pid) counts from its start.
	got := CPUSince(map[string]ProcessCPU{"kube-apiserver": {pid: 10, seconds: 50}, "etcd": {pid: 11, seconds: 5}},
		map[string]ProcessCPU{"kube-apiserver": {pid: 12, seconds: 2}, "etcd": {pid: 11, seconds: 7}})
	if got["kube-apiserver"] != 2 || got["etcd"] != 2 {
		t.Errorf("cpuSince = %v, want kube-apiserver 2 (restarted) and etcd 2", got)
	}
}
