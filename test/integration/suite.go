// Package integration holds what the integration suites share: one real control plane
// (etcd, kube-apiserver with RBAC, kube-controller-manager) built by hack/ into bin/, with
// labforge's and KubeVirt's CRDs installed.
package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/devenv"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/simulator"
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir is where hack/build-controlplane.sh put the control-plane binaries: the
// LABFORGE_BIN_DIR the Makefile exports, else the repository's bin/.
func BinDir() string {
	if d := os.Getenv("LABFORGE_BIN_DIR"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin")
}

// CRDPaths are labforge's CRDs and the KubeVirt CRDs generated with their real schemas.
func CRDPaths() []string {
	root := RepoRoot()
	return []string{filepath.Join(root, "config", "crd", "bases"), filepath.Join(root, "config", "kubevirt")}
}

// StartControlPlane starts a control plane with every CRD installed. It fails, rather than
// skips, when the binaries are missing: `make test` builds them first.
func StartControlPlane(ctx context.Context) (*controlplane.ControlPlane, error) {
	return startControlPlane(ctx, controlplane.Options{})
}

// startControlPlane is StartControlPlane with opts, whose binaries and CRDs it sets.
func startControlPlane(ctx context.Context, opts controlplane.Options) (*controlplane.ControlPlane, error) {
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(BinDir(), b)); err != nil {
			return nil, fmt.Errorf("control-plane binary %s missing in %s: run `make controlplane` (make test does): %w", b, BinDir(), err)
		}
	}
	opts.BinDir, opts.CRDPaths = BinDir(), CRDPaths()
	return controlplane.Start(ctx, opts)
}

// StartSimulatedManager runs labforge's manager with every controller and a simulated VM
// backend against cfg, with the controllers' clock given, until the returned stop function
// is called (stop waits for the manager to exit). It returns the simulator too, so that a
// second operator can reach its labs (StartOperator).
func StartSimulatedManager(cfg *rest.Config, clk clock.PassiveClock) (stop func(), sim *simulator.Simulator, err error) {
	sim = simulator.New(simulator.Options{})
	stop, err = StartManager(context.Background(), cfg, manager.Options{Clock: clk, Simulator: sim})
	return stop, sim, err
}

// StartRealLabManager runs labforge's manager as `labforge dev` does: the simulated Nodes
// registered first and students given their addresses (devenv.SimulatedNodesHost), the
// simulator playing kube-proxy on them, and the first realLabAPIs labs at once with a real
// API (an etcd and a kube-apiserver each: use 1 or 2). opts completes as in StartManager;
// its Simulator and Host are set here. stop waits for the manager, and so for every lab
// API's processes, to end.
func StartRealLabManager(ctx context.Context, cfg *rest.Config, realLabAPIs int, opts manager.Options) (stop func(), sim *simulator.Simulator, err error) {
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		return nil, nil, err
	}
	if err := simulator.RegisterNodes(ctx, c); err != nil {
		return nil, nil, err
	}
	sim = simulator.New(simulator.Options{RealLabAPIs: realLabAPIs, BinDir: BinDir(), NodePorts: true})
	opts.Simulator, opts.Host = sim, devenv.SimulatedNodesHost()
	stop, err = StartManager(context.Background(), cfg, opts)
	return stop, sim, err
}

// StartOperator runs a second operator process's worth of controllers, with no VM backend
// of its own (a cluster has one KubeVirt), probing the labs of sim.
func StartOperator(cfg *rest.Config, clk clock.PassiveClock, sim *simulator.Simulator) (stop func(), err error) {
	return StartManager(context.Background(), cfg, manager.Options{Clock: clk, ProbeDialer: sim.Dialer()})
}

// StartManager runs labforge's manager with opts, completed with the suites' defaults (no
// health server, no metrics server unless opts.MetricsAddr names one, the default host network when opts.Host has no pod ranges,
// several managers per process, a 100ms probe interval when none is set), until ctx is cancelled or stop is called. stop waits for the
// manager to exit, whichever ended it.
func StartManager(ctx context.Context, cfg *rest.Config, opts manager.Options) (stop func(), err error) {
	if opts.MetricsAddr == "" {
		opts.MetricsAddr = "0"
	}
	opts.ProbeAddr = "0"
	if opts.Host.PodCIDRs == nil {
		opts.Host = devenv.LocalHost()
	}
	// Suites restart the manager, and some run two at once.
	opts.SkipControllerNameValidation = true
	// The embedded control plane has no namespace for the operator (its ownership key).
	opts.CreateOperatorNamespace = true
	if opts.ProbeInterval == 0 {
		// Simulated labs boot at once and answer the probe as soon as they run.
		opts.ProbeInterval = 100 * time.Millisecond
	}
	mgr, err := manager.New(cfg, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		<-done
	}, nil
}

// StartSimulator runs the simulated VM backend alone, in a manager with its own client,
// until stop is called (stop waits for it to exit). Operators started with
// ProbeDialer: sim.Dialer() probe its labs. A suite that wraps the operator's client
// (manager.Options.WrapClient) to count the operator's writes never sees the simulator's.
func StartSimulator(cfg *rest.Config, opts simulator.Options) (stop func(), sim *simulator.Simulator, err error) {
	managedBy := labels.SelectorFromSet(labels.Set{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue})
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  manager.NewScheme(),
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		GracefulShutdownTimeout: ptr.To(10 * time.Second),
		Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
		// As the operator's manager caches them: only labforge's VMs, VMIs and Secrets.
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				&kubevirtv1.VirtualMachine{}:         {Label: managedBy},
				&kubevirtv1.VirtualMachineInstance{}: {Label: managedBy},
				&corev1.Secret{}:                     {Label: managedBy},
				&corev1.Pod{}:                        {Label: managedBy, Transform: manager.PodSkeleton},
			},
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("creating the simulator's manager: %w", err)
	}
	sim = simulator.New(opts)
	if err := sim.SetupWithManager(mgr); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		<-done
	}, sim, nil
}

// OffsetClock is the real clock moved by an offset a test can change: it lets a claim
// expire without waiting, while everything else keeps real time.
type OffsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

// Now returns the real time plus the offset.
func (c *OffsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Since returns the time elapsed since t on this clock.
func (c *OffsetClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// Set sets the offset.
func (c *OffsetClock) Set(offset time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = offset
}

// WriteRecorder records the mutating requests (anything but GET, LIST and WATCH) sent
// through the rest.Configs it wraps: what a manager writes, counted at the client.
type WriteRecorder struct {
	mu     sync.Mutex
	writes []string
}

// Wrap returns a copy of cfg whose requests are recorded.
func (w *WriteRecorder) Wrap(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method != http.MethodGet && req.Method != http.MethodHead {
				w.mu.Lock()
				w.writes = append(w.writes, req.Method+" "+req.URL.Path)
				w.mu.Unlock()
			}
			return rt.RoundTrip(req)
		})
	})
	return out
}

// Writes returns the requests recorded so far, as "METHOD path", and forgets them.
func (w *WriteRecorder) Writes() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.writes
	w.writes = nil
	return out
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
