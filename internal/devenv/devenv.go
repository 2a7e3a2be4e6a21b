// Package devenv runs labforge locally: a real control plane from bin/, labforge's and
// KubeVirt's CRDs, and the manager with every controller, in the foreground until the
// context ends. It is what `labforge dev` (and `make dev`) runs.
package devenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/labforge/labforge/config"
	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/simulator"
)

// Options configures a local run.
type Options struct {
	// StateDir holds the lock, the control plane's state and logs, and the kubeconfig.
	StateDir string
	// BinDir holds etcd, kube-apiserver and kube-controller-manager.
	BinDir string
	// MetricsAddr is where the manager serves metrics, over plain HTTP (a local run);
	// "0" turns them off.
	MetricsAddr string
	// BootDelay is how long a simulated VM takes to boot.
	BootDelay time.Duration
	// CPUAllocationRatio is KubeVirt's cpuAllocationRatio the simulated launcher pods are
	// rendered with; zero means KubeVirt's default, 10.
	CPUAllocationRatio int
	// RealLabAPIs is how many labs at once get a real API server (an etcd and a
	// kube-apiserver each, with the lab's CA) that students' kubeconfigs work against;
	// the others answer only the operator's readiness probe.
	RealLabAPIs int
	// Out receives the short "try this" text.
	Out io.Writer
	// Logs, when set, is called once the state directory is locked with the file the
	// operator's logs should go to (LogPath), so that they do not bury the "try this" text.
	Logs func(io.Writer)
}

// LogPath is where Run writes the operator's logs when Options.Logs is set.
func LogPath(stateDir string) string { return filepath.Join(stateDir, "operator.log") }

// KubeconfigPath is where Run writes the admin kubeconfig once the API server is ready.
func KubeconfigPath(stateDir string) string { return filepath.Join(stateDir, "kubeconfig") }

// Run starts everything and blocks until ctx is done, then stops every process it started.
// A second Run on the same state directory fails at once while the first one runs.
func Run(ctx context.Context, opts Options) (err error) {
	unlock, closeLog, err := prepareState(&opts)
	if err != nil {
		return err
	}
	defer unlock()
	defer closeLog()

	cp, err := startControlPlane(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := cp.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stopping the control plane: %w", stopErr))
		}
	}()
	mgr, err := newManager(ctx, cp, opts)
	if err != nil {
		return err
	}
	printTour(opts)
	// The kubeconfig comes last: once it exists, everything above is done and said.
	kubeconfig := KubeconfigPath(opts.StateDir)
	data, err := os.ReadFile(cp.KubeconfigPath())
	if err != nil {
		return fmt.Errorf("reading the admin kubeconfig: %w", err)
	}
	if err := os.WriteFile(kubeconfig, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", kubeconfig, err)
	}
	// A kubeconfig left behind would point at a dead API server.
	defer os.Remove(kubeconfig)
	log := ctrl.Log.WithName("dev")
	log.Info("Starting the manager")
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("running the manager: %w", err)
	}
	log.Info("Stopping")
	return nil
}

// prepareState creates and locks the state directory (opts.StateDir becomes absolute)
// and opens the operator's log when opts.Logs asks for one.
func prepareState(opts *Options) (unlock, closeLog func(), err error) {
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("creating state dir: %w", err)
	}
	// Paths are printed for another terminal: make them absolute.
	if opts.StateDir, err = filepath.Abs(opts.StateDir); err != nil {
		return nil, nil, fmt.Errorf("resolving the state dir: %w", err)
	}
	if unlock, err = lock(opts.StateDir); err != nil {
		return nil, nil, err
	}
	closeLog = func() {}
	if opts.Logs != nil {
		f, err := os.OpenFile(LogPath(opts.StateDir), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			unlock()
			return nil, nil, fmt.Errorf("opening the operator's log: %w", err)
		}
		closeLog = func() { f.Close() }
		opts.Logs(f)
	}
	return unlock, closeLog, nil
}

// startControlPlane starts a clean control plane with labforge's and KubeVirt's CRDs: a
// dev run is a demo, not a database.
func startControlPlane(ctx context.Context, opts Options) (*controlplane.ControlPlane, error) {
	cpDir := filepath.Join(opts.StateDir, "controlplane")
	if err := os.RemoveAll(cpDir); err != nil {
		return nil, fmt.Errorf("clearing the previous run's state: %w", err)
	}
	crdDir := filepath.Join(opts.StateDir, "crds")
	if err := writeCRDs(crdDir); err != nil {
		return nil, err
	}
	ctrl.Log.WithName("dev").Info("Starting the control plane", "binDir", opts.BinDir, "stateDir", opts.StateDir)
	cp, err := controlplane.Start(ctx, controlplane.Options{
		BinDir:   opts.BinDir,
		StateDir: cpDir,
		CRDPaths: []string{crdDir},
	})
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	return cp, nil
}

// newManager registers the simulated Nodes (students reach labs at their addresses, so
// the operator must find them when it starts) and builds the manager with every
// controller and the simulated VM backend.
func newManager(ctx context.Context, cp *controlplane.ControlPlane, opts Options) (ctrl.Manager, error) {
	c, err := client.New(cp.RESTConfig(), client.Options{})
	if err != nil {
		return nil, err
	}
	if err := simulator.RegisterNodes(ctx, c); err != nil {
		return nil, err
	}
	return manager.New(cp.RESTConfig(), manager.Options{
		MetricsAddr: opts.MetricsAddr,
		ProbeAddr:   "0",
		Host:        SimulatedNodesHost(),
		// A fresh control plane has no namespace for the operator's ownership key.
		CreateOperatorNamespace: true,
		// A simulated lab answers as soon as it boots; probing often keeps the demo snappy.
		ProbeInterval: 200 * time.Millisecond,
		Simulator: simulator.New(simulator.Options{
			BootDelay: opts.BootDelay, CPUAllocationRatio: opts.CPUAllocationRatio,
			RealLabAPIs: opts.RealLabAPIs, BinDir: opts.BinDir, NodePorts: true,
		}),
	})
}

// printTour prints the short "try this" text.
func printTour(opts Options) {
	if opts.Out == nil {
		return
	}
	logs := "Operator logs go to stderr."
	if opts.Logs != nil {
		logs = "Operator logs are in " + LogPath(opts.StateDir) + "."
	}
	fmt.Fprintf(opts.Out, `
labforge is running on a local control plane, with simulated VMs (the first %d labs with
a real API server). It starts empty every run (nothing is kept), and its kubeconfig is
removed when it stops. In another terminal:

  export KUBECONFIG=%s
  kubectl apply -f config/samples/
  kubectl wait --for=condition=Ready labpool/broken-dns
  kubectl apply -f config/samples/student/
  kubectl get labforge

%s Control-plane logs are in %s.
Press Ctrl-C to stop everything.

`, opts.RealLabAPIs, KubeconfigPath(opts.StateDir), logs, filepath.Join(opts.StateDir, "controlplane", "logs"))
}

// writeCRDs writes the embedded CRDs into dir for the control plane to install.
func writeCRDs(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return fs.WalkDir(config.CRDs, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := config.CRDs.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, strings.ReplaceAll(path, "/", "_")), data, 0o600)
	})
}

// lock takes an exclusive lock on stateDir/lock, recording this process's pid in it. The
// kernel drops the lock when the process dies, so a crashed run never blocks the next.
func lock(stateDir string) (func(), error) {
	path := filepath.Join(stateDir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(f)
		f.Close()
		pid := strings.TrimSpace(string(holder))
		if _, convErr := strconv.Atoi(pid); convErr != nil {
			pid = "unknown"
		}
		return nil, fmt.Errorf("another labforge dev is already running with state dir %s (pid %s): stop it first, or pass another --state-dir", stateDir, pid)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() {
		_ = f.Truncate(0)
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
