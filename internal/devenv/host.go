package devenv

import (
	"net/netip"

	"github.com/labforge/labforge/internal/hostcluster"
)

// LocalHost is the host configuration of `labforge dev`, of `labforge operator` (what the
// benchmarks run) and of the test suites: the embedded control plane has no kubelets, so
// no Node says its pod range, and students are on the same machine. 127.0.0.1 as a
// student address exists here only: the shipped manager discovers the host or refuses
// to start (hostcluster.Config.Network).
func LocalHost() hostcluster.Config {
	return hostcluster.Config{
		// kubeadm's and Flannel's usual pod range, and the embedded control plane's
		// --service-cluster-ip-range (internal/controlplane).
		PodCIDRs:      []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		ServiceCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.96.0.0/12")},
		PublicAddress: "127.0.0.1",
	}
}

// SimulatedNodesHost is the host configuration of `labforge dev`: LocalHost's ranges, but
// students reach a lab at the address of the simulated node (simulator.Nodes, on
// loopback) that runs its control plane, where the simulated kube-proxy listens, as on a
// host without an entry point. The Nodes must exist before the manager starts
// (simulator.RegisterNodes).
func SimulatedNodesHost() hostcluster.Config {
	h := LocalHost()
	h.PublicAddress = ""
	return h
}
