// Package reliability_test runs labforge's operator as a real process against a real
// control plane and hurts it: its leader killed in the middle of a burst, the API server
// restarted under it, a hundred labs scanned for a credential that is not unique or that
// leaks into a status, an event or a log line. `make test` runs each story once;
// `make test-reliability` (LABFORGE_RELIABILITY=1) runs the longer variants.
package reliability_test

import (
	"context"
	"os"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/test/integration"
)

func TestReliability(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "reliability")
}

var (
	cp          *controlplane.ControlPlane
	k8s         client.WithWatch
	labforgeBin string
	// long is set by `make test-reliability`: more rounds, more labs.
	long = os.Getenv("LABFORGE_RELIABILITY") == "1"
)

var _ = BeforeSuite(func(ctx context.Context) {
	var err error
	labforgeBin, err = integration.BuildLabforge(ctx, GinkgoT().TempDir())
	Expect(err).NotTo(HaveOccurred())
	s := integration.SetUpSuite(integration.SuiteOptions{Quiet: true})
	cp, k8s = s.ControlPlane, s.Client
	SetDefaultEventuallyTimeout(2 * time.Minute)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
}, NodeTimeout(10*time.Minute))

// startOperator runs `labforge operator` against the suite's control plane, logging to a
// file of the spec, and stops it when the spec ends.
func startOperator(logName string, args ...string) *integration.OperatorProcess {
	p, err := integration.StartOperatorProcess(labforgeBin, cp.KubeconfigPath(),
		GinkgoT().TempDir()+"/"+logName, args...)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		p.Stop()
		if CurrentSpecReport().Failed() {
			if log, err := os.ReadFile(p.LogPath); err == nil {
				AddReportEntry(logName, string(log))
			}
		}
	})
	return p
}
