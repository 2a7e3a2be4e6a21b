// Command labforge is labforge's developer command. `labforge dev` runs the whole platform
// locally on an embedded control plane, in the foreground.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/labforge/labforge/internal/devenv"
)

const usage = `labforge is labforge's developer command.

Usage:
  labforge dev [flags]   run labforge locally on an embedded control plane until Ctrl-C

Run "labforge dev -h" for the flags.
`

func main() {
	if len(os.Args) < 2 || os.Args[1] != "dev" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	os.Exit(dev(os.Args[2:]))
}

func dev(args []string) int {
	fs := flag.NewFlagSet("labforge dev", flag.ExitOnError)
	opts := devenv.Options{Out: os.Stdout}
	fs.StringVar(&opts.StateDir, "state-dir", ".labforge", "Directory for the lock, the control plane's state and logs, and the kubeconfig.")
	fs.StringVar(&opts.BinDir, "bin-dir", defaultBinDir(), "Directory holding etcd, kube-apiserver and kube-controller-manager (make controlplane builds them).")
	fs.StringVar(&opts.MetricsAddr, "metrics-bind-address", "0", `Address of the manager's metrics endpoint; "0" turns it off.`)
	fs.DurationVar(&opts.BootDelay, "boot-delay", 3*time.Second, "How long a simulated VM takes to boot (0 boots at once).")
	zapOpts := zap.Options{Development: true}
	zapOpts.BindFlags(fs)
	_ = fs.Parse(args)
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := devenv.Run(ctrl.SetupSignalHandler(), opts); err != nil {
		fmt.Fprintf(os.Stderr, "labforge dev: %v\n", err)
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
