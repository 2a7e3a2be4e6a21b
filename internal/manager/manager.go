// Package manager builds labforge's controller manager: the scheme, the cache settings and
// every controller. cmd/manager (the shipped operator) and `labforge dev` both use it, so a
// local run exercises exactly the code that ships.
package manager

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/controller/labtemplate"
	"github.com/labforge/labforge/internal/hostcluster"
)

// Options configures the manager.
type Options struct {
	// MetricsAddr is where Prometheus metrics are served; "0" turns them off.
	MetricsAddr string
	// ProbeAddr is where /healthz and /readyz are served; "0" turns them off.
	ProbeAddr string
	// LeaderElection makes only one of several replicas act at a time.
	LeaderElection bool
	// LeaderElectionNamespace holds the leader election Lease; empty means the namespace
	// the manager runs in.
	LeaderElectionNamespace string
	// Host is what the operator knows of the host cluster's network.
	Host hostcluster.Network
	// SkipControllerNameValidation allows several managers in one process (tests that
	// restart a manager or run two at once); controller-runtime refuses duplicate
	// controller names otherwise, because they would share metrics.
	SkipControllerNameValidation bool
}

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
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  NewScheme(),
		Metrics:                 metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:  opts.ProbeAddr,
		LeaderElection:          opts.LeaderElection,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
		// Lets a new leader take over at once when the old one exits cleanly.
		LeaderElectionReleaseOnCancel: true,
		Controller:                    config.Controller{SkipNameValidation: &opts.SkipControllerNameValidation},
		Cache: cache.Options{
			// managedFields are never read by labforge and are most of the bytes of many
			// objects: dropping them keeps the cache small at thousands of labs.
			DefaultTransform: cache.TransformStripManagedFields(),
		},
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	if err := (&labtemplate.Reconciler{
		Client:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder(labtemplate.ControllerName),
		Host:     opts.Host,
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the %s controller: %w", labtemplate.ControllerName, err)
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding the health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, fmt.Errorf("adding the readiness check: %w", err)
	}
	return mgr, nil
}
