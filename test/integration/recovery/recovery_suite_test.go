// Package recovery_test tells the stories of labforge surviving what happens to a real
// cluster: a restore that drops owner references and finalizers, objects left behind by
// owners that are gone, and deletions in every order (a template or pool under running
// labs, a claim while its lab boots, a lab namespace deleted by hand, an uninstall with
// claims present). Each story runs against a real control plane, whose
// kube-controller-manager garbage-collects and deletes namespaces, with labforge's manager
// stopped and started as an operator process would be.
package recovery_test

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
	cp  *controlplane.ControlPlane
	k8s client.Client
	// clk is the controllers' clock (real time; no story here moves it).
	clk = &integration.OffsetClock{}
	// stopRunning stops the manager now running, nil when none runs.
	stopRunning func()
	// sim is the simulated VM backend of the last manager started with one.
	sim *simulator.Simulator
)

func TestRecovery(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	SetDefaultConsistentlyDuration(2 * time.Second)
	SetDefaultConsistentlyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "labforge recovery")
}

var _ = BeforeSuite(func(ctx context.Context) {
	s := integration.SetUpSuite(integration.SuiteOptions{})
	cp, k8s = s.ControlPlane, s.Client
	startManager()
	DeferCleanup(stopManager)
}, NodeTimeout(2*time.Minute))

// startManager starts labforge's manager, with the simulated VM backend, as a fresh
// process would: empty caches, no memory of what the last one applied.
func startManager() {
	GinkgoHelper()
	Expect(stopRunning).To(BeNil(), "a manager is already running")
	stop, s, err := integration.StartSimulatedManager(cp.RESTConfig(), clk)
	Expect(err).NotTo(HaveOccurred())
	stopRunning, sim = stop, s
}

// startOperatorWithoutVMs starts labforge's controllers with no VM backend at all: VMs are
// created but never run, so every lab stays provisioning (KubeVirt down, or very slow).
func startOperatorWithoutVMs() {
	GinkgoHelper()
	Expect(stopRunning).To(BeNil(), "a manager is already running")
	stop, err := integration.StartOperator(cp.RESTConfig(), clk, simulator.New(simulator.Options{}))
	Expect(err).NotTo(HaveOccurred())
	stopRunning = stop
}

// stopManager stops the manager now running and waits for it to exit.
func stopManager() {
	if stopRunning != nil {
		stopRunning()
		stopRunning = nil
	}
}

// restartManager is an operator restart: the old process exits, a new one starts.
func restartManager() {
	GinkgoHelper()
	stopManager()
	startManager()
}
