package simulator

import "sigs.k8s.io/controller-runtime/pkg/client"

// Hooks for the tests of package simulator_test, which run the simulator against a real
// control plane (and cannot live in this package: internal/manager imports it).

// SetClientWrapper wraps the manager's client before s uses it; call before SetupWithManager.
func SetClientWrapper(s *Simulator, wrap func(client.Client) client.Client) { s.wrapClient = wrap }

// ListenAddr is the lab API listener's address, "" while not listening.
func ListenAddr(s *Simulator) string { return s.labs.listenAddr() }

// ServedLabs is the number of labs whose API s serves.
func ServedLabs(s *Simulator) int { return s.labs.count() }

// PendingWrites is the number of s's writes not yet seen in its cache.
func PendingWrites(s *Simulator) int { return s.pending.Len() }

// BootPhases are the VMI phases to Running.
var BootPhases = bootPhases
