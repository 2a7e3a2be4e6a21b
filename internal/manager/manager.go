// Package manager builds labforge's controller manager: the scheme, the cache settings and
// every controller. cmd/manager (the shipped operator) and `labforge dev` both use it, so a
// local run exercises exactly the code that ships.
package manager

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"sigs.k8s.io/controller-runtime/pkg/client"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/controller/labclaim"
	"github.com/labforge/labforge/internal/controller/labenvironment"
	"github.com/labforge/labforge/internal/controller/labpool"
	"github.com/labforge/labforge/internal/controller/labtemplate"
	"github.com/labforge/labforge/internal/controller/orphans"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/index"
	"github.com/labforge/labforge/internal/labclient"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/internal/solution"
	"github.com/labforge/labforge/internal/ssa"
)

// Options configures the manager.
type Options struct {
	// MetricsAddr is where Prometheus metrics are served; "0" turns them off.
	MetricsAddr string
	// MetricsFilter, when set, serves metrics over HTTPS (a self-signed certificate) behind
	// the filter it provides. The deployed operator (cmd/manager) sets controller-runtime's
	// filters.WithAuthenticationAndAuthorization: only callers the API server authenticates
	// (TokenReview) and authorizes for "get /metrics" (SubjectAccessReview) are answered.
	// Unset, metrics are plain HTTP: labforge dev and the benchmarks, on localhost. It is a
	// function rather than a switch so that only cmd/manager links k8s.io/apiserver's
	// authentication stack (and its tracing and gRPC dependencies).
	MetricsFilter func(c *rest.Config, httpClient *http.Client) (metricsserver.Filter, error)
	// ProbeAddr is where /healthz and /readyz are served; "0" turns them off.
	ProbeAddr string
	// PprofAddr is where Go's /debug/pprof profiles are served; "" or "0" turns them off.
	// Profiles show what the operator spends its CPU on; serve them on localhost only.
	PprofAddr string
	// LeaderElection makes only one of several replicas act at a time.
	LeaderElection bool
	// LeaderElectionNamespace holds the leader election Lease; empty means the namespace
	// the manager runs in.
	LeaderElectionNamespace string
	// Host is what the admin says about the host cluster (the flags); New adds what the
	// host's API says (hostcluster.Discover) and refuses to build a manager when the two
	// together do not say enough.
	Host hostcluster.Config
	// SkipControllerNameValidation allows several managers in one process (tests that
	// restart a manager or run two at once); controller-runtime refuses duplicate
	// controller names otherwise, because they would share metrics.
	SkipControllerNameValidation bool
	// OperatorNamespace is where the operator runs: the only namespace allowed to reach a
	// lab's API from inside the host cluster.
	OperatorNamespace string
	// CreateOperatorNamespace creates OperatorNamespace when it does not exist: for
	// `labforge dev`, `labforge operator` and the tests, whose control plane has no
	// namespace for the operator. The shipped manager runs in its namespace and never
	// creates it.
	CreateOperatorNamespace bool
	// ProbeInterval is how often a booting lab is asked whether its bootstrap finished.
	ProbeInterval time.Duration
	// ProbePool sizes the readiness probe's own workers and bounds one probe (Timeout);
	// zero values take labprobe's defaults (decision 55).
	ProbePool labprobe.PoolOptions
	// Simulator, when set, runs this simulated VM backend in the manager and points the
	// readiness probe at it: for labforge dev and tests only, never in production. It is
	// an interface so that the shipped manager (cmd/manager) does not link the simulator
	// (internal/simulator); `labforge dev`, `labforge operator` and the tests wire it.
	Simulator SimulatedBackend
	// ProbeDialer, when set, is how the readiness probe reaches lab APIs (a second
	// manager in a test reaches the labs of another manager's simulator through it).
	ProbeDialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// ClientQPS and ClientBurst bound the operator's requests to the API server. Zero keeps
	// what cfg says, or DefaultClientQPS and DefaultClientBurst when cfg says nothing
	// (client-go's own default, 5 requests a second, would throttle a pool of a hundred
	// labs to minutes: each lab costs about 30 writes).
	ClientQPS   float32
	ClientBurst int
	// Clock is the controllers' clock; the real one if nil. Tests move a fake one to make
	// claims expire without waiting.
	Clock clock.PassiveClock
	// WrapClient, when set, wraps the client every controller (and a Simulator run in this
	// manager) reads and writes through. For tests only, never in production: the crash
	// suite counts the operator's writes and stops the manager after one of them, and
	// makes the pool controller's reads lag behind its writes.
	WrapClient func(client.Client) client.Client
	// LabConfig, when set, is how the claim controller reaches a lab's own API to expose
	// its Services, in place of labclient.Config with the probe's dialer. For tests only,
	// never in production: a suite stands a plain control plane in for a lab's API.
	LabConfig labclaim.LabConfigFunc
	// SolutionWatchTimeout bounds each watch the solution checks keep in a lab (how long a
	// revoked read access can go unnoticed); zero means solution.DefaultWatchTimeout.
	SolutionWatchTimeout time.Duration
	// SolutionLabConfig, when set, replaces how the solution checks reach a lab's API.
	// For tests only, never in production: a suite stands a plain control plane in for a
	// lab.
	SolutionLabConfig solution.ConfigFunc
	// WrapProber, when set, wraps the readiness probe of the LabEnvironment controller.
	// For tests only, never in production: a suite checks which labs' TLS clients the
	// probe still holds.
	WrapProber func(labprobe.Prober) labprobe.Prober
}

// SimulatedBackend is a VM backend that runs inside the manager in place of KubeVirt
// (internal/simulator's Simulator), with the lab APIs it serves.
type SimulatedBackend interface {
	// SetupWithManager registers the backend's controllers and servers with mgr.
	SetupWithManager(mgr ctrl.Manager) error
	// Dialer is how the operator's readiness probe reaches the labs the backend serves.
	Dialer() func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client rate limits when neither the options nor the rest config set one. The API server
// protects itself with priority and fairness; these only keep a runaway loop in check.
const (
	DefaultClientQPS   = 200
	DefaultClientBurst = 400
)

// DefaultOperatorNamespace is where the operator runs when nothing else says so.
const DefaultOperatorNamespace = "labforge-system"

// LeaderElectionID is the name of the leader election Lease.
const LeaderElectionID = "labforge.labforge.dev"

// NewScheme returns a scheme with every kind labforge reads or writes: the built-in
// kinds, labforge's own, and KubeVirt's.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(labforgev1alpha1.AddToScheme(s))
	utilruntime.Must(kubevirtv1.AddToScheme(s))
	return s
}

// New returns a manager with every labforge controller registered, not yet started.
func New(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	cfg = rateLimited(cfg, opts)
	mgr, err := ctrl.NewManager(cfg, managerOptions(opts))
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	host, err := discoverHost(cfg, opts.Host)
	if err != nil {
		return nil, err
	}
	if err := host.Watch(mgr); err != nil {
		return nil, fmt.Errorf("watching the host cluster: %w", err)
	}
	// Every index, before any controller lists by one.
	if err := index.Setup(context.Background(), mgr.GetFieldIndexer()); err != nil {
		return nil, err
	}
	if opts.OperatorNamespace == "" {
		opts.OperatorNamespace = DefaultOperatorNamespace
	}
	prover, err := loadProver(cfg, opts)
	if err != nil {
		return nil, err
	}
	prober, err := setUpProber(mgr, host, opts)
	if err != nil {
		return nil, err
	}
	if err := setUpControllers(mgr, host, prover, prober, opts); err != nil {
		return nil, err
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding the readiness check: %w", err)
	}
	return mgr, nil
}

// managerOptions are controller-runtime's options for the manager opts describe.
func managerOptions(opts Options) ctrl.Options {
	return ctrl.Options{
		Scheme:                  NewScheme(),
		Metrics:                 metricsOptions(opts),
		HealthProbeBindAddress:  opts.ProbeAddr,
		PprofBindAddress:        opts.PprofAddr,
		LeaderElection:          opts.LeaderElection,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
		// Lets a new leader take over at once when the old one exits cleanly.
		LeaderElectionReleaseOnCancel: true,
		NewClient:                     newClient(opts.WrapClient),
		Controller: config.Controller{
			SkipNameValidation: &opts.SkipControllerNameValidation,
			// controller-runtime v0.24.1's priority queue can deadlock on shutdown
			// (kubernetes-sigs/controller-runtime#3538, fixed after this release). The
			// claim and lab controllers use it through internal/claimsfirst, which
			// works around that (decision 91); the others keep the plain queue.
			UsePriorityQueue: ptr.To(false),
		},
		Cache: cacheOptions(),
	}
}

// setUpProber registers the simulated VM backend, if any, and returns the readiness probe
// the lab controller asks: the real one, pointed at the simulated labs when there are.
func setUpProber(mgr ctrl.Manager, host *hostcluster.Host, opts Options) (labprobe.Prober, error) {
	if opts.Simulator != nil {
		if err := opts.Simulator.SetupWithManager(mgr); err != nil {
			return nil, fmt.Errorf("setting up the simulated VM backend: %w", err)
		}
	}
	var prober labprobe.Prober = &labprobe.HTTPSProber{Dialer: labDialer(opts), ClusterDomain: host.Network().ClusterDomain, Timeout: opts.ProbePool.Timeout}
	if opts.WrapProber != nil {
		prober = opts.WrapProber(prober)
	}
	return prober, nil
}

// setUpChecks adds the evaluator of the claims' solution checks, which reads claimed labs
// through labclient as the probe reaches them (unless a test stands in a lab).
func setUpChecks(mgr ctrl.Manager, host *hostcluster.Host, opts Options) (*solution.Evaluator, error) {
	config := opts.SolutionLabConfig
	if config == nil {
		config = solution.LabConfig(mgr.GetClient(), labclient.Options{ClusterDomain: host.Network().ClusterDomain, Dial: labDialer(opts)})
	}
	checks := solution.NewEvaluator(config)
	checks.WatchTimeout = opts.SolutionWatchTimeout
	checks.Log = mgr.GetLogger().WithName("solution")
	if err := mgr.Add(checks); err != nil {
		return nil, fmt.Errorf("adding the solution checks: %w", err)
	}
	return checks, nil
}

// labDialer is how the operator connects to a lab's API, for the probe and for
// labclient alike: the given dialer, else the simulated labs' when there are (the
// operator's real code runs against them: only the dialer differs), else nil (a
// net.Dialer).
func labDialer(opts Options) labclient.Dialer {
	switch {
	case opts.ProbeDialer != nil:
		return opts.ProbeDialer
	case opts.Simulator != nil:
		return opts.Simulator.Dialer()
	}
	return nil
}

// setUpControllers registers every labforge controller with mgr.
func setUpControllers(mgr ctrl.Manager, host *hostcluster.Host, prover *ownership.Prover, prober labprobe.Prober, opts Options) error {
	if err := (&labtemplate.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder(labtemplate.ControllerName),
		Host:     host,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the %s controller: %w", labtemplate.ControllerName, err)
	}
	if err := (&labenvironment.Reconciler{
		Client:            mgr.GetClient(),
		APIReader:         mgr.GetAPIReader(),
		Recorder:          mgr.GetEventRecorder(labenvironment.ControllerName),
		Applier:           ssa.NewApplier(mgr.GetClient(), "labforge-"+labenvironment.ControllerName),
		Prober:            prober,
		ProbePool:         opts.ProbePool,
		Host:              host,
		OperatorNamespace: opts.OperatorNamespace,
		Prover:            prover,
		ProbeInterval:     opts.ProbeInterval,
		Clock:             opts.Clock,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the %s controller: %w", labenvironment.ControllerName, err)
	}
	if err := (&labpool.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder(labpool.ControllerName),
		Clock:    opts.Clock,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the %s controller: %w", labpool.ControllerName, err)
	}
	checks, err := setUpChecks(mgr, host, opts)
	if err != nil {
		return err
	}
	if err := (&labclaim.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  mgr.GetEventRecorder(labclaim.ControllerName),
		Applier:   ssa.NewApplier(mgr.GetClient(), "labforge-"+labclaim.ControllerName),
		Host:      host,
		Clock:     opts.Clock,
		Prover:    prover,
		LabConfig: labConfig(opts.LabConfig, host, labDialer(opts)),
		Checks:    checks,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the %s controller: %w", labclaim.ControllerName, err)
	}
	if err := (&orphans.Reconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Prover:    prover,
		Recorder:  mgr.GetEventRecorder(orphans.ControllerName),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the %s controllers: %w", orphans.ControllerName, err)
	}
	return nil
}

// labConfig is how the operator reaches a claimed lab's own API: as the probe does (the
// lab's CA, the operator's credential, the probe's dialer), unless a test says otherwise.
func labConfig(override labclaim.LabConfigFunc, host *hostcluster.Host, dial labclient.Dialer) labclaim.LabConfigFunc {
	if override != nil {
		return override
	}
	return func(env string, pki *corev1.Secret) (*rest.Config, error) {
		return labclient.Config(env, labprobe.CredentialsFromSecret(pki),
			labclient.Options{ClusterDomain: host.Network().ClusterDomain, Dial: dial})
	}
}

// metricsOptions serves metrics as opts ask. Secure metrics follow the kubebuilder v4
// layout: HTTPS behind controller-runtime's authentication and authorization filter,
// HTTP/2 off (the HTTP/2 rapid-reset and stream-cancellation advisories,
// CVE-2023-44487 and CVE-2023-39325, which kubebuilder's scaffold also guards against).
// The filter's TokenReviews and SubjectAccessReviews are granted by
// config/rbac/metrics_auth_role.yaml, not by the controllers' role.
func metricsOptions(opts Options) metricsserver.Options {
	m := metricsserver.Options{BindAddress: opts.MetricsAddr}
	if opts.MetricsFilter != nil {
		m.SecureServing = true
		m.FilterProvider = opts.MetricsFilter
		m.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }}
	}
	return m
}

// discoverHost reads the host's facts straight from the API server (the cache has not
// started) and returns the Host they and the admin's flags describe, or the error that
// names the flag to set.
func discoverHost(cfg *rest.Config, config hostcluster.Config) (*hostcluster.Host, error) {
	c, err := client.New(cfg, client.Options{Scheme: NewScheme()})
	if err != nil {
		return nil, fmt.Errorf("creating a client for host discovery: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), discoveryTimeout)
	defer cancel()
	facts, err := hostcluster.Discover(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("discovering the host cluster: %w", err)
	}
	host, err := hostcluster.NewHost(config, facts)
	if err != nil {
		return nil, fmt.Errorf("the host cluster is not known well enough to run labs: %w", err)
	}
	return host, nil
}

// loadProver reads the operator's ownership key from its namespace, making it the first
// time (ownership.LoadOrCreateKey), straight from the API server: the cache has not
// started, and caches only labforge's Secrets anyway.
func loadProver(cfg *rest.Config, opts Options) (*ownership.Prover, error) {
	c, err := client.New(cfg, client.Options{Scheme: NewScheme()})
	if err != nil {
		return nil, fmt.Errorf("creating a client to read the ownership key: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), discoveryTimeout)
	defer cancel()
	if opts.CreateOperatorNamespace {
		// Read first: an operator bounded by config/policy may not create a namespace
		// outside lab-*, even one that exists already (admission runs before the
		// store would answer AlreadyExists).
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: opts.OperatorNamespace}}
		err := c.Get(ctx, client.ObjectKeyFromObject(ns), ns)
		if apierrors.IsNotFound(err) {
			err = c.Create(ctx, ns)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("creating the operator's namespace %s: %w", opts.OperatorNamespace, err)
		}
	}
	key, err := ownership.LoadOrCreateKey(ctx, c, opts.OperatorNamespace, nil)
	if err != nil {
		return nil, err
	}
	return ownership.NewProver(key)
}

// discoveryTimeout bounds the startup's reads of the host's Nodes and ServiceCIDRs.
const discoveryTimeout = 30 * time.Second

// newClient returns controller-runtime's own client constructor, wrapped by wrap when set.
func newClient(wrap func(client.Client) client.Client) client.NewClientFunc {
	if wrap == nil {
		return client.New
	}
	return func(cfg *rest.Config, options client.Options) (client.Client, error) {
		c, err := client.New(cfg, options)
		if err != nil {
			return nil, err
		}
		return wrap(c), nil
	}
}

// rateLimited returns a copy of cfg with the client rate limits opts ask for (see
// Options.ClientQPS).
func rateLimited(cfg *rest.Config, opts Options) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	switch {
	case opts.ClientQPS > 0:
		cfg.QPS = opts.ClientQPS
	case cfg.QPS == 0:
		cfg.QPS = DefaultClientQPS
	}
	switch {
	case opts.ClientBurst > 0:
		cfg.Burst = opts.ClientBurst
	case cfg.Burst == 0:
		cfg.Burst = DefaultClientBurst
	}
	return cfg
}
