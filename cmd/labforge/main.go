// Command labforge is labforge's developer command. `labforge dev` runs the whole platform
// locally on an embedded control plane, in the foreground.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/labforge/labforge/internal/devenv"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/simulator"
)

const usage = `labforge is labforge's developer command.

Usage:
  labforge dev [flags]        run labforge locally on an embedded control plane until Ctrl-C
  labforge operator [flags]   run the operator with simulated VMs against an existing API
                              server (benchmarks and fault tests start, kill and restart it)
  labforge preflight [flags]  check a host cluster before installing labforge: KubeVirt,
                              bridge binding, ranges, NodePorts, CNI caveats (OK/WARN/FAIL;
                              exits 1 when a check fails)

Run "labforge <command> -h" for the flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "dev":
		os.Exit(dev(os.Args[2:]))
	case "operator":
		os.Exit(operator(os.Args[2:]))
	case "preflight":
		os.Exit(preflightCmd(os.Args[2:]))
	default:
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
}

func dev(args []string) int {
	fs := flag.NewFlagSet("labforge dev", flag.ExitOnError)
	opts := devenv.Options{Out: os.Stdout}
	fs.StringVar(&opts.StateDir, "state-dir", ".labforge", "Directory for the lock, the control plane's state and logs, and the kubeconfig.")
	fs.StringVar(&opts.BinDir, "bin-dir", defaultBinDir(), "Directory holding etcd, kube-apiserver and kube-controller-manager (make controlplane builds them).")
	fs.StringVar(&opts.MetricsAddr, "metrics-bind-address", "0", `Address of the manager's metrics endpoint, plain HTTP without authentication (keep it on localhost; the deployed operator, cmd/manager, serves HTTPS to authorized callers only); "0" turns it off.`)
	fs.DurationVar(&opts.BootDelay, "boot-delay", 3*time.Second, "How long a simulated VM takes to boot (0 boots at once).")
	var logToStderr bool
	fs.BoolVar(&logToStderr, "log-to-stderr", false, "Write the operator's logs to stderr instead of <state-dir>/operator.log.")
	fs.IntVar(&opts.CPUAllocationRatio, "cpu-allocation-ratio", simulator.DefaultCPUAllocationRatio, "KubeVirt's cpuAllocationRatio the simulated launcher pods are rendered with.")
	fs.IntVar(&opts.RealLabAPIs, "real-lab-apis", 2, "How many labs at once get a real API server (an etcd and a kube-apiserver each, about 300 MiB) that a student's kubeconfig works against; 0 gives every lab the light simulated API, which answers only the operator's readiness probe.")
	zapOpts := zap.Options{Development: true}
	zapOpts.BindFlags(fs)
	_ = fs.Parse(args)
	if logToStderr {
		ctrl.SetLogger(manager.WithoutBodies(zap.New(zap.UseFlagOptions(&zapOpts))))
	} else {
		opts.Logs = func(w io.Writer) {
			ctrl.SetLogger(manager.WithoutBodies(zap.New(zap.UseFlagOptions(&zapOpts), zap.WriteTo(w))))
		}
	}

	if err := devenv.Run(ctrl.SetupSignalHandler(), opts); err != nil {
		fmt.Fprintf(os.Stderr, "labforge dev: %v\n", err)
		return 1
	}
	return 0
}

// operator runs the same manager as `labforge dev` (every controller and the simulated VM
// backend) against the API server of --kubeconfig, as its own process: what the benchmarks
// measure and what the fault tests kill.
func operator(args []string) int {
	fs := flag.NewFlagSet("labforge operator", flag.ExitOnError)
	var kubeconfig string
	var bootDelay time.Duration
	// Against a dev control plane, which has no namespace for the operator's ownership key.
	opts := manager.Options{Host: devenv.LocalHost(), CreateOperatorNamespace: true}
	var qps float64
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Kubeconfig of the API server to run against (required).")
	fs.DurationVar(&bootDelay, "boot-delay", 0, "How long a simulated VM takes to boot (0 boots at once).")
	var cpuRatio int
	fs.IntVar(&cpuRatio, "cpu-allocation-ratio", simulator.DefaultCPUAllocationRatio, "KubeVirt's cpuAllocationRatio the simulated launcher pods are rendered with.")
	fs.StringVar(&opts.MetricsAddr, "metrics-bind-address", "0", `Address of the manager's metrics endpoint, plain HTTP without authentication (keep it on localhost; the deployed operator, cmd/manager, serves HTTPS to authorized callers only); "0" turns it off.`)
	fs.StringVar(&opts.ProbeAddr, "health-probe-bind-address", "0", `Address of /healthz and /readyz; "0" turns them off.`)
	fs.StringVar(&opts.PprofAddr, "pprof-bind-address", "0", `Address of Go's /debug/pprof profiles; "0" turns them off.`)
	fs.BoolVar(&opts.LeaderElection, "leader-elect", false, "Elect a leader among several operators.")
	fs.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "kube-system", "Namespace of the leader election Lease.")
	fs.StringVar(&opts.OperatorNamespace, "operator-namespace", manager.DefaultOperatorNamespace, "Namespace of the operator: it holds the ownership key Secret (created with the namespace when missing).")
	fs.Float64Var(&qps, "kube-api-qps", manager.DefaultClientQPS, "Requests per second the operator may send to the API server.")
	fs.IntVar(&opts.ClientBurst, "kube-api-burst", manager.DefaultClientBurst, "Requests the operator may send at once above --kube-api-qps.")
	fs.DurationVar(&opts.ProbeInterval, "probe-interval", 100*time.Millisecond, "How often a booting lab is asked whether its bootstrap finished.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(fs)
	_ = fs.Parse(args)
	opts.ClientQPS = float32(qps)
	ctrl.SetLogger(manager.WithoutBodies(zap.New(zap.UseFlagOptions(&zapOpts))))
	// As the deployed operator does (cmd/manager).
	manager.ApplySoftMemoryLimit()
	manager.ApplyGCPercent()
	if kubeconfig == "" {
		fmt.Fprintln(os.Stderr, "labforge operator: --kubeconfig is required")
		return 2
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintf(os.Stderr, "labforge operator: %v\n", err)
		return 1
	}
	opts.Simulator = simulator.New(simulator.Options{BootDelay: bootDelay, CPUAllocationRatio: cpuRatio})
	mgr, err := manager.New(cfg, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "labforge operator: %v\n", err)
		return 1
	}
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		fmt.Fprintf(os.Stderr, "labforge operator: %v\n", err)
		return 1
	}
	return 0
}

// defaultBinDir is the directory of this executable: `make build` puts labforge next to
// the control-plane binaries in bin/.
func defaultBinDir() string {
	exe, err := os.Executable()
	if err != nil {
		return "bin"
	}
	return filepath.Dir(exe)
}
