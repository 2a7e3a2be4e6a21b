// Command manager is the labforge operator: it reconciles LabTemplates, LabPools,
// LabEnvironments and LabClaims on the cluster it runs in.
package main

import (
	"flag"
	"os"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"

	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/manager"
)

func envOr(key, fallback string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return fallback
}

func main() {
	var opts manager.Options
	var qps float64
	flag.StringVar(&opts.MetricsAddr, "metrics-bind-address", ":8443", `Address of the metrics endpoint; "0" turns it off.`)
	var secureMetrics bool
	flag.BoolVar(&secureMetrics, "metrics-secure", true, `Serve metrics over HTTPS, only to callers the API server authenticates and authorizes for "get /metrics" (config/rbac/metrics_reader_role.yaml); false serves plain HTTP to anyone who can connect.`)
	flag.StringVar(&opts.ProbeAddr, "health-probe-bind-address", ":8081", `Address of the /healthz and /readyz endpoints; "0" turns them off.`)
	flag.StringVar(&opts.PprofAddr, "pprof-bind-address", "0", `Address of Go's /debug/pprof profiles (CPU, heap); "0" turns them off. Keep it on localhost.`)
	flag.BoolVar(&opts.LeaderElection, "leader-elect", false, "Elect a leader, so that only one of several replicas acts at a time.")
	flag.StringVar(&opts.LeaderElectionNamespace, "leader-election-namespace", "", "Namespace of the leader election Lease (default: the manager's own).")
	flag.StringVar(&opts.OperatorNamespace, "operator-namespace", envOr("POD_NAMESPACE", manager.DefaultOperatorNamespace), "Namespace the operator runs in: the only one allowed to reach lab APIs from inside the cluster.")
	flag.Float64Var(&qps, "kube-api-qps", manager.DefaultClientQPS, "Requests per second the operator may send to the API server.")
	flag.IntVar(&opts.ClientBurst, "kube-api-burst", manager.DefaultClientBurst, "Requests the operator may send at once above --kube-api-qps.")
	flag.DurationVar(&opts.ProbeInterval, "probe-interval", 5*time.Second, "How often a booting lab is asked whether its bootstrap finished.")
	flag.IntVar(&opts.ProbePool.Workers, "probe-workers", labprobe.DefaultWorkers, "Booting labs whose API is asked at once; a probe holds a worker for at most 1s (docs/operations.md).")
	flag.IntVar(&opts.ProbePool.SlowSlots, "probe-slow-slots", labprobe.DefaultSlowSlots, "Probes of labs that did not answer within 1s that run at once; other labs never wait for them.")
	flag.DurationVar(&opts.ProbePool.Timeout, "probe-timeout", labprobe.DefaultTimeout, "Deadline of one probe of a lab's API (dial, TLS handshake, request, answer).")
	var host hostcluster.Flags
	host.Bind(flag.CommandLine)
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	opts.ClientQPS = float32(qps)
	if secureMetrics {
		opts.MetricsFilter = filters.WithAuthenticationAndAuthorization
	}
	ctrl.SetLogger(manager.WithoutBodies(zap.New(zap.UseFlagOptions(&zapOpts))))
	log := ctrl.Log.WithName("setup")
	if limit := manager.ApplySoftMemoryLimit(); limit > 0 {
		log.Info("Go soft memory limit set from the container's", "bytes", limit)
	}
	if percent := manager.ApplyGCPercent(); percent > 0 {
		log.Info("Go garbage-collection target set (GOGC unset)", "percent", percent)
	}
	var err error
	if opts.Host, err = host.Build(); err != nil {
		log.Error(err, "Invalid host cluster flags")
		os.Exit(1)
	}

	mgr, err := manager.New(ctrl.GetConfigOrDie(), opts)
	if err != nil {
		log.Error(err, "Failed to create the manager")
		os.Exit(1)
	}
	log.Info("Starting the manager")
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "Manager stopped with an error")
		os.Exit(1)
	}
}
