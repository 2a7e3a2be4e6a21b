// Package recorder is what the bench harness measures, from outside the operator: the API
// server's and the operator's Prometheus counters (metrics.go), every process's CPU time and
// memory from /proc (cpu.go), and the moments the harness's own watches saw claims, labs,
// VMs and pools change (trackers.go). It knows nothing of scenarios or of the report.
package recorder

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
)

// Sample is one line of the Prometheus text exposition format.
type Sample struct {
	// Name is the metric's name.
	Name string
	// Labels are the sample's labels.
	Labels map[string]string
	// Value is the sample's value.
	Value float64
}

// MetricSet is a scrape: every sample of the names kept.
type MetricSet []Sample

// ParseMetrics reads the Prometheus text format (version 0.0.4), keeping the samples whose
// metric name keep accepts (nil keeps all). It needs no third-party parser: the format's
// sample lines are `name{label="value",...} value [timestamp]`.
func ParseMetrics(r io.Reader, keep func(name string) bool) (MetricSet, error) {
	var out MetricSet
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ \t")
		if end < 0 {
			return nil, fmt.Errorf("metrics line %d: no value: %q", lineNo, line)
		}
		name := line[:end]
		if keep != nil && !keep(name) {
			continue
		}
		rest := line[end:]
		labels := map[string]string{}
		if rest[0] == '{' {
			var err error
			if labels, rest, err = parseLabels(rest[1:]); err != nil {
				return nil, fmt.Errorf("metrics line %d: %w", lineNo, err)
			}
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics line %d: no value: %q", lineNo, line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %d: value: %w", lineNo, err)
		}
		out = append(out, Sample{Name: name, Labels: labels, Value: v})
	}
	return out, sc.Err()
}

// parseLabels parses `a="x",b="y"}` and returns the labels and what follows the brace.
func parseLabels(s string) (map[string]string, string, error) {
	labels := map[string]string{}
	for {
		s = strings.TrimLeft(s, " ,")
		if s == "" {
			return nil, "", fmt.Errorf("unterminated label set")
		}
		if s[0] == '}' {
			return labels, s[1:], nil
		}
		eq := strings.IndexByte(s, '=')
		if eq < 0 || len(s) < eq+2 || s[eq+1] != '"' {
			return nil, "", fmt.Errorf("malformed label in %q", s)
		}
		key := strings.TrimSpace(s[:eq])
		s = s[eq+2:]
		var b strings.Builder
		closed := false
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					b.WriteByte('\n')
				default:
					b.WriteByte(s[i])
				}
				continue
			}
			if c == '"' {
				s = s[i+1:]
				closed = true
				break
			}
			b.WriteByte(c)
		}
		if !closed {
			return nil, "", fmt.Errorf("unterminated label value for %q", key)
		}
		labels[key] = b.String()
	}
}

// Sum adds the values of the samples named name whose labels include match.
func (m MetricSet) Sum(name string, match map[string]string) float64 {
	total := 0.0
	for _, s := range m {
		if s.Name == name && labelsMatch(s.Labels, match) {
			total += s.Value
		}
	}
	return total
}

// By sums the samples named name by the values of the labels keys, joined with a space.
func (m MetricSet) By(name string, keys ...string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m {
		if s.Name != name {
			continue
		}
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = s.Labels[k]
		}
		out[strings.Join(parts, " ")] += s.Value
	}
	return out
}

// labelsMatch says whether labels include every label of match.
func labelsMatch(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// MutatingVerbs are the verbs of apiserver_request_total that change state. APPLY is how
// the API server reports a server-side apply PATCH.
var MutatingVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "APPLY": true, "DELETE": true, "DELETECOLLECTION": true}

// APICounts is the API server's mutating request counters: "VERB group/resource[/sub]" and
// the response code, to count.
type APICounts map[apiKey]float64

// apiKey identifies one counter of apiserver_request_total.
type apiKey struct {
	resource string // "VERB group/resource[/subresource]"
	code     string
}

// ScrapeAPIServer reads the API server's apiserver_request_total for mutating verbs,
// with the administrator's credentials.
func ScrapeAPIServer(ctx context.Context, client rest.Interface) (APICounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	body, err := client.Get().AbsPath("/metrics").SetHeader("Accept", "text/plain; version=0.0.4").Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's /metrics: %w", err)
	}
	defer body.Close()
	set, err := ParseMetrics(body, func(name string) bool { return name == "apiserver_request_total" })
	if err != nil {
		return nil, fmt.Errorf("parsing the API server's /metrics: %w", err)
	}
	out := APICounts{}
	for _, s := range set {
		verb := s.Labels["verb"]
		if !MutatingVerbs[verb] || s.Labels["dry_run"] != "" {
			continue
		}
		res := s.Labels["resource"]
		if g := s.Labels["group"]; g != "" {
			res = g + "/" + res
		}
		if sub := s.Labels["subresource"]; sub != "" {
			res += "/" + sub
		}
		out[apiKey{resource: verb + " " + res, code: s.Labels["code"]}] += s.Value
	}
	return out, nil
}

// APIDelta is what happened between two scrapes.
type APIDelta struct {
	// Mutating counts the mutating requests, lease writes excluded; Leases counts those on
	// coordination.k8s.io leases; Conflicts the mutating requests answered 409.
	Mutating, Leases, Conflicts float64
	// ByResource counts every mutating request (lease writes included) by "VERB resource".
	ByResource map[string]float64
	// Failed counts the requests answered with an error, by "VERB resource code".
	Failed map[string]float64
}

// DiffAPI returns what the API server counted between the scrapes before and after.
func DiffAPI(before, after APICounts) APIDelta {
	d := APIDelta{ByResource: map[string]float64{}, Failed: map[string]float64{}}
	for k, v := range after {
		n := v - before[k]
		if n <= 0 {
			continue
		}
		d.ByResource[k.resource] += n
		if k.code >= "300" {
			d.Failed[k.resource+" "+k.code] += n
		}
		if strings.Contains(k.resource, " coordination.k8s.io/leases") {
			d.Leases += n
			continue
		}
		d.Mutating += n
		if k.code == "409" {
			d.Conflicts += n
		}
	}
	return d
}

// OperatorMetrics is a scrape of the operator's /metrics.
type OperatorMetrics struct {
	// At is when the scrape was read.
	At time.Time
	// Set holds the samples of operatorMetricNames.
	Set MetricSet
}

// operatorMetricNames are the operator's metrics the harness reads.
var operatorMetricNames = map[string]bool{
	"controller_runtime_reconcile_total":        true,
	"controller_runtime_active_workers":         true,
	"workqueue_depth":                           true,
	"rest_client_requests_total":                true,
	"process_resident_memory_bytes":             true,
	"go_memstats_heap_alloc_bytes":              true,
	"go_memstats_heap_inuse_bytes":              true,
	"go_memstats_sys_bytes":                     true,
	"process_cpu_seconds_total":                 true,
	"go_gc_duration_seconds_count":              true,
	"labforge_claim_binds_total":                true,
	"labforge_lab_boot_failures_total":          true,
	"controller_runtime_reconcile_errors_total": true,
}

// metricsHTTP reads the operator's metrics uncompressed: the harness polls them every
// 100 ms while it waits for the operator to be idle, and gzipping each answer cost the
// operator some 10 % of the CPU measured on the claim path (its CPU profile).
var metricsHTTP = &http.Client{Timeout: 10 * time.Second, Transport: uncompressed()}

// uncompressed is the default transport without gzip.
func uncompressed() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableCompression = true
	return t
}

// ScrapeOperator reads the operator's metrics endpoint at addr.
func ScrapeOperator(ctx context.Context, addr string) (OperatorMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return OperatorMetrics{}, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := metricsHTTP.Do(req)
	if err != nil {
		return OperatorMetrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return OperatorMetrics{}, fmt.Errorf("operator /metrics: %s", resp.Status)
	}
	set, err := ParseMetrics(resp.Body, func(name string) bool { return operatorMetricNames[name] })
	if err != nil {
		return OperatorMetrics{}, fmt.Errorf("parsing the operator's /metrics: %w", err)
	}
	return OperatorMetrics{At: time.Now(), Set: set}, nil
}

// Reconciles is controller_runtime_reconcile_total by "controller result".
func (m OperatorMetrics) Reconciles() map[string]float64 {
	return m.Set.By("controller_runtime_reconcile_total", "controller", "result")
}

// ReconcilesOf is the total of one controller's reconciles.
func (m OperatorMetrics) ReconcilesOf(controller string) float64 {
	return m.Set.Sum("controller_runtime_reconcile_total", map[string]string{"controller": controller})
}

// Requests is the operator's client requests by "METHOD code".
func (m OperatorMetrics) Requests() map[string]float64 {
	return m.Set.By("rest_client_requests_total", "method", "code")
}

// CPU is the operator process's CPU time so far, in seconds, and its garbage collections.
func (m OperatorMetrics) CPU() (seconds, gcs float64) {
	return m.Set.Sum("process_cpu_seconds_total", nil), m.Set.Sum("go_gc_duration_seconds_count", nil)
}

// Busy says whether any controller has queued or running work.
func (m OperatorMetrics) Busy() bool {
	return m.Set.Sum("workqueue_depth", nil) > 0 || m.Set.Sum("controller_runtime_active_workers", nil) > 0
}

// Subtract returns a - b per key, dropping zeros.
func Subtract(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// Add adds b into a.
func Add(a, b map[string]float64) {
	for k, v := range b {
		a[k] += v
	}
}

// SameCounts says whether two counter maps hold the same values.
func SameCounts(a, b map[string]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
