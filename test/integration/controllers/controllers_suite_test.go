// Package controllers_test runs labforge's manager, with every controller, against a real
// control plane and checks what people see happen.
package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

var (
	cp          *controlplane.ControlPlane
	k8s         client.Client
	stopManager func()
	// sim is the first manager's simulated VM backend: the cluster's one "KubeVirt".
	sim *simulator.Simulator
	// clk is the controllers' clock: real time, moved forward by the expiry story.
	clk = &integration.OffsetClock{}
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "labforge controllers")
}

var _ = BeforeSuite(func(ctx context.Context) {
	s := integration.SetUpSuite(integration.SuiteOptions{})
	cp, k8s = s.ControlPlane, s.Client
	var err error
	stopManager, sim, err = integration.StartSimulatedManager(cp.RESTConfig(), clk)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() {
		if stopManager != nil {
			stopManager()
		}
	})
}, NodeTimeout(2*time.Minute))
