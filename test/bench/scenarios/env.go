package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/yaml"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/test/bench/recorder"
	"github.com/labforge/labforge/test/bench/report"
	"github.com/labforge/labforge/test/integration"
)

// studentNamespace is where the harness creates its claims; every pool admits it.
const studentNamespace = "students"

// Harness is what every scenario shares: where the binaries are and where output goes.
type Harness struct {
	// LabforgeBin is the `labforge` binary run as the operator.
	LabforgeBin string
	// OutDir receives images.
	OutDir string
	// LogRoot receives one directory of logs per scenario.
	LogRoot string
	// BootDelay is the simulated VMs' boot delay (0: they run at once).
	BootDelay time.Duration
	// Profile, when not zero, is how long a CPU profile of the operator each window takes
	// from its start (in the scenario's log directory).
	Profile time.Duration
	// Audit, when set, has kube-apiserver keep an audit log of every write in the
	// scenario's log directory (AuditLogFile).
	Audit bool
	// Log receives progress lines.
	Log io.Writer
}

// AuditLogFile is the audit log a scenario's kube-apiserver writes in its log directory
// when the harness's audit is set.
const AuditLogFile = "audit.log"

// auditPolicy records every write's metadata (who, what, which object, when received and
// when answered, the response code), never a body: the objects include Secrets.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch", "delete", "deletecollection"]
- level: None
`

// auditArgs writes the audit policy into dir and returns the kube-apiserver flags that
// log by it to dir/AuditLogFile. The log is written in batches, so that no request waits
// on the file; it still costs kube-apiserver CPU, which a run's figures then include.
func auditArgs(dir string) ([]string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o644); err != nil {
		return nil, err
	}
	return []string{
		"--audit-policy-file=" + policy,
		"--audit-log-path=" + filepath.Join(dir, AuditLogFile),
		"--audit-log-format=json",
		"--audit-log-mode=batch",
		"--audit-log-maxsize=1024",
	}, nil
}

func (h *Harness) logf(format string, args ...any) {
	fmt.Fprintf(h.Log, "   %s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// env is one scenario's world: a fresh control plane, the operator as a child process,
// the harness's client and its watches.
type env struct {
	h *Harness
	// r is the scenario's result; close adds what the operator's logs tell.
	r      *report.ScenarioResult
	name   string
	logDir string
	cp     *controlplane.ControlPlane
	cpLog  *os.File
	c      client.Client
	// apiREST reads the API server's /metrics.
	apiREST rest.Interface
	// writes counts the harness's own mutating calls.
	writes   atomic.Int64
	op       *operator
	template *labforgev1alpha1.LabTemplate

	changed recorder.Notifier
	claims  *recorder.ClaimTracker
	labs    *recorder.LabTracker
	vms     *recorder.VMTracker
	pools   *recorder.PoolTracker

	cancelCache context.CancelFunc
	cacheDone   chan struct{}
	closeOnce   sync.Once

	// lastScrape holds each operator process's last metrics scrape, by generation, so that
	// a window spanning a kill still counts what the killed process did.
	scrapeMu   sync.Mutex
	lastScrape map[int]recorder.OperatorMetrics
	// workersUp records the operator processes whose controllers all started.
	workersUp map[int]bool
}

// startSettled opens a scenario: starts its environment, waits until the operator has
// settled on it (no reconcile for 2s, at most 2 minutes) and begins the measured window
// phase. The caller closes the environment, even when it returns an error.
func (h *Harness) startSettled(ctx context.Context, r *report.ScenarioResult, phase string) (*env, *window, error) {
	e, err := h.startEnv(ctx, r)
	if err != nil {
		return e, nil, err
	}
	if _, err := e.settle(ctx, 2*time.Second, 2*time.Minute, nil); err != nil {
		return e, nil, err
	}
	w, err := e.begin(ctx, phase)
	return e, w, err
}

// startEnv starts a control plane, installs the sample template and the student
// namespace, starts the harness's watches and the operator.
func (h *Harness) startEnv(ctx context.Context, r *report.ScenarioResult) (e *env, err error) {
	name := r.Name
	logDir := filepath.Join(h.LogRoot, name)
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	cpLog, err := os.Create(filepath.Join(logDir, "controlplane.log"))
	if err != nil {
		return nil, err
	}
	e = &env{h: h, r: r, name: name, logDir: logDir, lastScrape: map[int]recorder.OperatorMetrics{}, workersUp: map[int]bool{}}
	e.claims = recorder.NewClaimTracker(&e.changed)
	e.labs = recorder.NewLabTracker(&e.changed)
	e.vms = recorder.NewVMTracker(&e.changed)
	e.pools = recorder.NewPoolTracker(&e.changed)
	e.cpLog = cpLog
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(integration.BinDir(), b)); err != nil {
			return e, fmt.Errorf("control-plane binary %s missing in %s: run `make controlplane`: %w", b, integration.BinDir(), err)
		}
	}
	opts := controlplane.Options{BinDir: integration.BinDir(), CRDPaths: integration.CRDPaths(), Log: cpLog}
	if h.Audit {
		if opts.APIServerArgs, err = auditArgs(logDir); err != nil {
			return e, err
		}
	}
	e.cp, err = controlplane.Start(ctx, opts)
	if err != nil {
		return e, err
	}
	cfg := e.cp.RESTConfig()
	base, err := client.NewWithWatch(cfg, client.Options{Scheme: manager.NewScheme()})
	if err != nil {
		return e, err
	}
	e.c = interceptor.NewClient(base, e.countWrites())
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return e, err
	}
	e.apiREST = cs.Discovery().RESTClient()

	if err := e.startWatches(ctx, cfg); err != nil {
		return e, err
	}
	if err := e.c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: studentNamespace}}); err != nil {
		return e, fmt.Errorf("creating namespace %s: %w", studentNamespace, err)
	}
	if e.template, err = sampleTemplate(); err != nil {
		return e, err
	}
	// The sample admits no claim that names it; the fault scenario's claims do, one at a
	// time (the default caps never hold them back).
	e.template.Spec.Claims.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: studentNamespace}}
	if err := e.c.Create(ctx, e.template.DeepCopy()); err != nil {
		return e, fmt.Errorf("creating LabTemplate %s: %w", e.template.Name, err)
	}
	e.op = newOperator(h.LabforgeBin, e.cp.KubeconfigPath(), logDir, h.BootDelay)
	// scale reads the live heap through /debug/pprof.
	e.op.pprof = h.Profile > 0 || name == "scale"
	if _, err := e.op.start(ctx); err != nil {
		return e, err
	}
	if err := e.waitTemplateReady(ctx); err != nil {
		return e, err
	}
	return e, nil
}

// countWrites counts the harness's own writes, to tell them from the operator's.
func (e *env) countWrites() interceptor.Funcs {
	return interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			e.writes.Add(1)
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			e.writes.Add(1)
			return c.Update(ctx, obj, opts...)
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			e.writes.Add(1)
			return c.Patch(ctx, obj, patch, opts...)
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			e.writes.Add(1)
			return c.Delete(ctx, obj, opts...)
		},
	}
}

// startWatches starts one long-running informer per kind the harness times, before any
// scenario action, and waits until they have listed.
func (e *env) startWatches(ctx context.Context, cfg *rest.Config) error {
	c, err := cache.New(cfg, cache.Options{
		Scheme:           manager.NewScheme(),
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject:         map[client.Object]cache.ByObject{&labforgev1alpha1.LabClaim{}: {Namespaces: map[string]cache.Config{studentNamespace: {}}}},
	})
	if err != nil {
		return err
	}
	vmHandler, vmiHandler := e.vms.Handlers()
	for _, w := range []struct {
		obj     client.Object
		Handler toolscache.ResourceEventHandler
	}{
		{&labforgev1alpha1.LabClaim{}, e.claims.Handler()},
		{&labforgev1alpha1.LabEnvironment{}, e.labs.Handler()},
		{&labforgev1alpha1.LabPool{}, e.pools.Handler()},
		{&kubevirtv1.VirtualMachine{}, vmHandler},
		{&kubevirtv1.VirtualMachineInstance{}, vmiHandler},
	} {
		inf, err := c.GetInformer(ctx, w.obj)
		if err != nil {
			return err
		}
		if _, err := inf.AddEventHandler(w.Handler); err != nil {
			return err
		}
	}
	cacheCtx, cancel := context.WithCancel(context.Background())
	e.cancelCache, e.cacheDone = cancel, make(chan struct{})
	go func() {
		defer close(e.cacheDone)
		_ = c.Start(cacheCtx)
	}()
	syncCtx, syncCancel := context.WithTimeout(ctx, time.Minute)
	defer syncCancel()
	if !c.WaitForCacheSync(syncCtx) {
		return errors.New("the harness's watches did not sync within a minute")
	}
	return nil
}

// sampleTemplate reads config/samples/1-labtemplate.yaml, the template a newcomer applies,
// without its solution checks and exposed Services: the scenarios measure the claim path
// every lab has (issue 18 asked that it not get worse), and a check or an exposure watch
// would read the simulated light guest, which answers the bootstrap marker only, and
// count its refusals as the claim's cost.
func sampleTemplate() (*labforgev1alpha1.LabTemplate, error) {
	path := filepath.Join(integration.RepoRoot(), "config", "samples", "1-labtemplate.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	t := &labforgev1alpha1.LabTemplate{}
	if err := yaml.UnmarshalStrict(data, t); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	t.Spec.Checks = nil
	t.Spec.Network.MaxExposedServices = 0
	return t, nil
}

// vmsPerLab is the number of VMs of a lab of the sample template.
func (e *env) vmsPerLab() int { return 1 + int(e.template.Spec.Workers.Count) }

func (e *env) waitTemplateReady(ctx context.Context) error {
	return e.poll(ctx, 60*time.Second, "LabTemplate "+e.template.Name+" Ready", func() (bool, error) {
		t := &labforgev1alpha1.LabTemplate{}
		if err := e.c.Get(ctx, client.ObjectKeyFromObject(e.template), t); err != nil {
			return false, err
		}
		return meta.IsStatusConditionTrue(t.Status.Conditions, labforgev1alpha1.ConditionReady), nil
	})
}

// poolSpec is a pool the harness creates.
type poolSpec struct {
	name                         string
	replicas, maxBooting, maxLab int32
}

func (p poolSpec) params() map[string]any {
	return map[string]any{"replicas": p.replicas, "maxBooting": p.maxBooting, "maxLabs": p.maxLab}
}

// createPool creates a pool of the sample template admitting the student namespace.
func (e *env) createPool(ctx context.Context, p poolSpec) error {
	pool := &labforgev1alpha1.LabPool{
		ObjectMeta: metav1.ObjectMeta{Name: p.name},
		Spec: labforgev1alpha1.LabPoolSpec{
			TemplateRef: labforgev1alpha1.LocalObjectReference{Name: e.template.Name},
			Replicas:    p.replicas, MaxBooting: p.maxBooting, MaxLabs: p.maxLab,
			ClaimNamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: studentNamespace}},
			UpdateStrategy:         labforgev1alpha1.PoolUpdateStrategy{Type: labforgev1alpha1.RollingUpdate},
		},
	}
	if err := e.c.Create(ctx, pool); err != nil {
		return fmt.Errorf("creating LabPool %s: %w", p.name, err)
	}
	return nil
}

// waitPoolReady waits until the pool has n Ready unbound labs and nothing booting, as
// the harness's watch sees them, printing progress.
func (e *env) waitPoolReady(ctx context.Context, pool string, n int, timeout time.Duration) error {
	return e.waitFor(ctx, timeout, fmt.Sprintf("%d Ready labs in LabPool %s", n, pool), func() bool {
		o := e.labs.Occupancy(pool)
		return o.Count[recorder.LabReady] >= n && o.Count[recorder.LabBooting] == 0
	}, func() string { return e.describePool(pool) })
}

func (e *env) describePool(pool string) string {
	o := e.labs.Occupancy(pool)
	return fmt.Sprintf("pool %s: %d ready, %d booting, %d bound, %d failed, %d deleting",
		pool, o.Count[recorder.LabReady], o.Count[recorder.LabBooting], o.Count[recorder.LabBound], o.Count[recorder.LabFailed], o.Count[recorder.LabDeleting])
}

// newClaim is the sample claim (a generated key pair, one hour) on a pool or a template.
func newClaim(name, pool, template string) *labforgev1alpha1.LabClaim {
	c := &labforgev1alpha1.LabClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: studentNamespace, Name: name},
		Spec: labforgev1alpha1.LabClaimSpec{
			SSH:      labforgev1alpha1.SSHAccess{GenerateKeyPair: true},
			Duration: &metav1.Duration{Duration: time.Hour},
		},
	}
	if pool != "" {
		c.Spec.PoolRef = &labforgev1alpha1.LocalObjectReference{Name: pool}
	} else {
		c.Spec.TemplateRef = &labforgev1alpha1.LocalObjectReference{Name: template}
	}
	return c
}

// createClaim registers, stamps and creates one claim.
func (e *env) createClaim(ctx context.Context, name, pool, template string) *recorder.ClaimRec {
	r := e.claims.Register(name)
	c := newClaim(name, pool, template)
	e.claims.Stamp(r)
	err := e.c.Create(ctx, c)
	e.claims.Created(r, c.UID, err)
	return r
}

// deleteClaim releases a claim.
func (e *env) deleteClaim(ctx context.Context, name string) error {
	c := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: studentNamespace, Name: name}}
	return client.IgnoreNotFound(e.c.Delete(ctx, c))
}

// awaitReady waits for one claim's Ready, up to timeout; false when it did not come.
func (e *env) awaitReady(ctx context.Context, r *recorder.ClaimRec, timeout time.Duration) (bool, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.Ready():
		return true, nil
	case <-t.C:
		return false, nil
	case <-e.op.Failed():
		return false, e.op.failure()
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// waitFor waits until cond holds, waking on every watch event, failing after timeout, when
// the operator dies on its own, or when ctx ends. It prints progress every 10 s.
func (e *env) waitFor(ctx context.Context, timeout time.Duration, what string, cond func() bool, progress func() string) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	logTick := time.NewTicker(10 * time.Second)
	defer logTick.Stop()
	for {
		changed := e.changed.Changed()
		if cond() {
			return nil
		}
		select {
		case <-changed:
		case <-tick.C:
		case <-logTick.C:
			if progress != nil {
				e.h.logf("waiting for %s: %s", what, progress())
			}
		case <-deadline.C:
			msg := fmt.Sprintf("%s: not reached within %s", what, timeout)
			if progress != nil {
				msg += " (" + progress() + ")"
			}
			return errors.New(msg)
		case <-e.op.Failed():
			return e.op.failure()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// poll calls f every 50 ms until it says done, fails, or timeout passes.
func (e *env) poll(ctx context.Context, timeout time.Duration, what string, f func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		done, err := f()
		if err == nil && done {
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not reached within %s (last error: %v)", what, timeout, lastErr)
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-e.op.Failed():
			return e.op.failure()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// scrape reads the running operator's metrics and remembers them as its process's last.
func (e *env) scrape(ctx context.Context) (recorder.OperatorMetrics, int, error) {
	p := e.op.current()
	if p == nil {
		return recorder.OperatorMetrics{}, 0, errors.New("the operator is not running")
	}
	m, err := recorder.ScrapeOperator(ctx, p.addr)
	if err != nil {
		return m, p.gen, err
	}
	e.scrapeMu.Lock()
	e.lastScrape[p.gen] = m
	e.scrapeMu.Unlock()
	return m, p.gen, nil
}

// settle waits until the operator is idle: no queued or running reconciles, and reconcile
// counts unchanged for stable, while extra (if set) holds on the latest scrape. It returns
// the time the idle state was first seen.
func (e *env) settle(ctx context.Context, stable, timeout time.Duration, extra func(m recorder.OperatorMetrics) bool) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var since time.Time
	var last map[string]float64
	lastGen := -1
	nextLog := time.Now().Add(10 * time.Second)
	for {
		m, gen, err := e.scrape(ctx)
		if err != nil {
			return time.Time{}, fmt.Errorf("settling: %w", err)
		}
		counts := m.Reconciles()
		idle := !m.Busy() && e.workersStarted(m) && (extra == nil || extra(m))
		switch {
		case !idle:
			since = time.Time{}
		case since.IsZero() || gen != lastGen || !recorder.SameCounts(counts, last):
			since = m.At
		case m.At.Sub(since) >= stable:
			return since, nil
		}
		last, lastGen = counts, gen
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("the operator did not settle within %s (queued or running work: %v)", timeout, m.Busy())
		}
		if time.Now().After(nextLog) {
			e.h.logf("settling: operator busy=%v, reconciles so far: %s", m.Busy(), report.TopEntries(counts, 5))
			nextLog = time.Now().Add(10 * time.Second)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-e.op.Failed():
			return time.Time{}, e.op.failure()
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// workersStarted says whether every controller of the running operator has synced its
// caches and started its workers (controller-runtime logs "Starting workers" then): before
// that, an empty work queue means nothing, as the initial events are not queued yet.
func (e *env) workersStarted(m recorder.OperatorMetrics) bool {
	p := e.op.current()
	if p == nil {
		return false
	}
	e.scrapeMu.Lock()
	defer e.scrapeMu.Unlock()
	if e.workersUp[p.gen] {
		return true
	}
	controllers := map[string]bool{}
	for _, s := range m.Set {
		if s.Name == "controller_runtime_reconcile_total" {
			controllers[s.Labels["controller"]] = true
		}
	}
	up := len(controllers) > 0 && countInFile(p.log, "Starting workers") >= len(controllers)
	e.workersUp[p.gen] = up
	return up
}

// window is a measured phase in progress.
type window struct {
	name    string
	start   time.Time
	api     recorder.APICounts
	op      recorder.OperatorMetrics
	opGen   int
	harness int64
	cpu     map[string]recorder.ProcessCPU
}

// begin starts measuring a phase: the API server's counters, the operator's, the harness's,
// and the CPU time of every process.
func (e *env) begin(ctx context.Context, name string) (*window, error) {
	w := &window{name: name, harness: e.writes.Load()}
	var err error
	if e.op.current() == nil {
		// The operator is stopped: the window starts with its next process, from zero.
		w.opGen = e.op.nextGen()
	} else if w.op, w.opGen, err = e.scrape(ctx); err != nil {
		return nil, err
	}
	if w.api, err = recorder.ScrapeAPIServer(ctx, e.apiREST); err != nil {
		return nil, err
	}
	w.cpu = recorder.ReadCPU(e.cp.PIDs())
	w.start = time.Now()
	if p := e.op.current(); p != nil && p.pprofAddr != "" {
		go e.profileCPU(ctx, p.pprofAddr, name)
	}
	return w, nil
}

// profileCPU writes a CPU profile of the operator, taken from the start of window name,
// to the scenario's log directory (go tool pprof reads it with bin/labforge).
func (e *env) profileCPU(ctx context.Context, addr, name string) {
	path := filepath.Join(e.logDir, "cpu-"+strings.ReplaceAll(name, " ", "-")+".pprof")
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, int(e.h.Profile.Seconds()))
	if err := fetchTo(ctx, url, path); err != nil {
		e.h.logf("CPU profile of window %q: %v", name, err)
		return
	}
	e.h.logf("CPU profile of window %q: %s", name, path)
}

// fetchTo writes the body of a GET of url to path.
func fetchTo(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return os.WriteFile(path, body, 0o644)
}

// end finishes a phase and returns what was counted during it. When the operator was
// restarted within the phase, each process's counts are added up (a killed process's are
// those of its last scrape).
func (e *env) end(ctx context.Context, w *window) (report.APIWindow, error) {
	out := report.APIWindow{Name: w.name, Seconds: time.Since(w.start).Seconds(), CPUSeconds: recorder.CPUSince(w.cpu, recorder.ReadCPU(e.cp.PIDs()))}
	after, err := recorder.ScrapeAPIServer(ctx, e.apiREST)
	if err != nil {
		return out, err
	}
	d := recorder.DiffAPI(w.api, after)
	out.MutatingRequests, out.LeaseWrites, out.Conflicts, out.ByResource, out.Failed = d.Mutating, d.Leases, d.Conflicts, d.ByResource, d.Failed
	out.HarnessWrites = float64(e.writes.Load() - w.harness)
	if _, _, err := e.scrape(ctx); err != nil && e.op.current() != nil {
		return out, err
	}
	out.Reconciles, out.OperatorRequests = map[string]float64{}, map[string]float64{}
	e.scrapeMu.Lock()
	defer e.scrapeMu.Unlock()
	for gen, m := range e.lastScrape {
		switch {
		case gen < w.opGen:
			continue
		case gen == w.opGen:
			recorder.Add(out.Reconciles, recorder.Subtract(m.Reconciles(), w.op.Reconciles()))
			recorder.Add(out.OperatorRequests, recorder.Subtract(m.Requests(), w.op.Requests()))
		default:
			recorder.Add(out.Reconciles, m.Reconciles())
			recorder.Add(out.OperatorRequests, m.Requests())
		}
		cpu, gcs := m.CPU()
		if gen == w.opGen {
			cpu0, gcs0 := w.op.CPU()
			cpu, gcs = cpu-cpu0, gcs-gcs0
		}
		out.OperatorCPUSeconds += cpu
		out.OperatorGCs += gcs
	}
	return out, nil
}

// operatorWrites sums the operator's own mutating requests in a window.
func operatorWrites(w report.APIWindow) float64 {
	total := 0.0
	for k, v := range w.OperatorRequests {
		if method, _, _ := strings.Cut(k, " "); recorder.MutatingVerbs[method] {
			total += v
		}
	}
	return total
}

// close stops the operator, the watches and the control plane. It may be called more
// than once, and on a nil env.
func (e *env) close() {
	if e == nil {
		return
	}
	e.closeOnce.Do(e.doClose)
}

func (e *env) doClose() {
	if e.op != nil {
		if err := e.op.stop(10 * time.Second); err != nil {
			e.h.logf("stopping the operator: %v", err)
		}
		// client-go logs a request it held back for over a second: the operator's own
		// client-side rate limit, not the API server, was slowing it down.
		logs, _ := filepath.Glob(filepath.Join(e.logDir, "operator-*.log"))
		throttled := 0
		for _, l := range logs {
			throttled += countInFile(l, "client-side throttling")
		}
		e.r.Figures = append(e.r.Figures, report.NewFigure("operator log: requests held by client-side throttling over 1s", float64(throttled), "count").
			WithNote("client-go logs only waits over 1 s, so 0 does not mean the limit was never hit"))
	}
	if e.cancelCache != nil {
		e.cancelCache()
		<-e.cacheDone
	}
	if e.cp != nil {
		if err := e.cp.Stop(); err != nil {
			e.h.logf("stopping the control plane: %v", err)
		}
	}
	if e.cpLog != nil {
		_ = e.cpLog.Close()
	}
}
