package main

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

// sample is one line of the Prometheus text exposition format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// metricSet is a scrape: every sample of the names kept.
type metricSet []sample

// parseMetrics reads the Prometheus text format (version 0.0.4), keeping the samples whose
// metric name keep accepts (nil keeps all). It needs no third-party parser: the format's
// sample lines are `name{label="value",...} value [timestamp]`.
func parseMetrics(r io.Reader, keep func(name string) bool) (metricSet, error) {
	var out metricSet
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
		out = append(out, sample{name: name, labels: labels, value: v})
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

// sum adds the values of the samples named name whose labels include match.
func (m metricSet) sum(name string, match map[string]string) float64 {
	total := 0.0
	for _, s := range m {
		if s.name == name && labelsMatch(s.labels, match) {
			total += s.value
		}
	}
	return total
}

// by sums the samples named name by the values of the labels keys, joined with a space.
func (m metricSet) by(name string, keys ...string) map[string]float64 {
	out := map[string]float64{}
	for _, s := range m {
		if s.name != name {
			continue
		}
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = s.labels[k]
		}
		out[strings.Join(parts, " ")] += s.value
	}
	return out
}

func labelsMatch(labels, match map[string]string) bool {
	for k, v := range match {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// mutatingVerbs are the verbs of apiserver_request_total that change state. APPLY is how
// the API server reports a server-side apply PATCH.
var mutatingVerbs = map[string]bool{"POST": true, "PUT": true, "PATCH": true, "APPLY": true, "DELETE": true, "DELETECOLLECTION": true}

// apiCounts is the API server's mutating request counters: "VERB group/resource[/sub]" and
// the response code, to count.
type apiCounts map[apiKey]float64

type apiKey struct {
	resource string // "VERB group/resource[/subresource]"
	code     string
}

// scrapeAPIServer reads the API server's apiserver_request_total for mutating verbs,
// with the administrator's credentials.
func scrapeAPIServer(ctx context.Context, client rest.Interface) (apiCounts, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	body, err := client.Get().AbsPath("/metrics").SetHeader("Accept", "text/plain; version=0.0.4").Stream(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's /metrics: %w", err)
	}
	defer body.Close()
	set, err := parseMetrics(body, func(name string) bool { return name == "apiserver_request_total" })
	if err != nil {
		return nil, fmt.Errorf("parsing the API server's /metrics: %w", err)
	}
	out := apiCounts{}
	for _, s := range set {
		verb := s.labels["verb"]
		if !mutatingVerbs[verb] || s.labels["dry_run"] != "" {
			continue
		}
		res := s.labels["resource"]
		if g := s.labels["group"]; g != "" {
			res = g + "/" + res
		}
		if sub := s.labels["subresource"]; sub != "" {
			res += "/" + sub
		}
		out[apiKey{resource: verb + " " + res, code: s.labels["code"]}] += s.value
	}
	return out, nil
}

// apiDelta is what happened between two scrapes.
type apiDelta struct {
	mutating, leases, conflicts float64
	byResource                  map[string]float64
	// failed counts the requests answered with an error, by "VERB resource code".
	failed map[string]float64
}

func diffAPI(before, after apiCounts) apiDelta {
	d := apiDelta{byResource: map[string]float64{}, failed: map[string]float64{}}
	for k, v := range after {
		n := v - before[k]
		if n <= 0 {
			continue
		}
		d.byResource[k.resource] += n
		if k.code >= "300" {
			d.failed[k.resource+" "+k.code] += n
		}
		if strings.Contains(k.resource, " coordination.k8s.io/leases") {
			d.leases += n
			continue
		}
		d.mutating += n
		if k.code == "409" {
			d.conflicts += n
		}
	}
	return d
}

// operatorMetrics is a scrape of the operator's /metrics.
type operatorMetrics struct {
	at  time.Time
	set metricSet
}

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

func uncompressed() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableCompression = true
	return t
}

// scrapeOperator reads the operator's metrics endpoint at addr.
func scrapeOperator(ctx context.Context, addr string) (operatorMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return operatorMetrics{}, err
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := metricsHTTP.Do(req)
	if err != nil {
		return operatorMetrics{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return operatorMetrics{}, fmt.Errorf("operator /metrics: %s", resp.Status)
	}
	set, err := parseMetrics(resp.Body, func(name string) bool { return operatorMetricNames[name] })
	if err != nil {
		return operatorMetrics{}, fmt.Errorf("parsing the operator's /metrics: %w", err)
	}
	return operatorMetrics{at: time.Now(), set: set}, nil
}

// reconciles is controller_runtime_reconcile_total by "controller result".
func (m operatorMetrics) reconciles() map[string]float64 {
	return m.set.by("controller_runtime_reconcile_total", "controller", "result")
}

// reconcilesOf is the total of one controller's reconciles.
func (m operatorMetrics) reconcilesOf(controller string) float64 {
	return m.set.sum("controller_runtime_reconcile_total", map[string]string{"controller": controller})
}

// requests is the operator's client requests by "METHOD code".
func (m operatorMetrics) requests() map[string]float64 {
	return m.set.by("rest_client_requests_total", "method", "code")
}

// cpu is the operator process's CPU time so far, in seconds, and its garbage collections.
func (m operatorMetrics) cpu() (seconds, gcs float64) {
	return m.set.sum("process_cpu_seconds_total", nil), m.set.sum("go_gc_duration_seconds_count", nil)
}

// busy says whether any controller has queued or running work.
func (m operatorMetrics) busy() bool {
	return m.set.sum("workqueue_depth", nil) > 0 || m.set.sum("controller_runtime_active_workers", nil) > 0
}

// subtract returns a - b per key, dropping zeros.
func subtract(a, b map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range a {
		if d := v - b[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// add adds b into a.
func add(a, b map[string]float64) {
	for k, v := range b {
		a[k] += v
	}
}

// sameCounts says whether two counter maps hold the same values.
func sameCounts(a, b map[string]float64) bool {
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
