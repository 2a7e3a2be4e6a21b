package integration

import (
	"context"

	. "github.com/onsi/ginkgo/v2" //nolint:revive // the suites' own style
	. "github.com/onsi/gomega"    //nolint:revive // the suites' own assertion style
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/manager"
)

// SuiteOptions says what a suite needs of its control plane.
type SuiteOptions struct {
	// NodePortRange is the API server's --service-node-port-range; empty is the default.
	NodePortRange string
	// Quiet leaves controller-runtime's logger alone: suites that run the operator as a
	// process, or no operator, have nothing of it to log.
	Quiet bool
}

// Suite is what every story of a suite shares: one real control plane with labforge's
// and KubeVirt's CRDs, and an administrator's client of it.
//
// The operator is not part of it: stories stop, restart, wrap and replace the operator
// (a crash after a write, a lagging cache, an operator without VMs), so each suite keeps
// its manager where its stories can reach it, with StartSimulatedManager and friends.
type Suite struct {
	// ControlPlane is the running control plane.
	ControlPlane *controlplane.ControlPlane
	// Client is the administrator's client, with watches, of labforge's scheme.
	Client client.WithWatch
}

// SetUpSuite starts the suite's control plane, for a Ginkgo BeforeSuite: it fails the
// suite when anything is missing and stops the control plane when the suite ends.
// Unless opts.Quiet, controller-runtime logs to GinkgoWriter (shown for failed specs).
func SetUpSuite(opts SuiteOptions) *Suite {
	GinkgoHelper()
	if !opts.Quiet {
		ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	}
	cp, err := startControlPlane(context.Background(), controlplane.Options{NodePortRange: opts.NodePortRange})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	c, err := client.NewWithWatch(cp.RESTConfig(), client.Options{Scheme: manager.NewScheme()})
	Expect(err).NotTo(HaveOccurred())
	return &Suite{ControlPlane: cp, Client: c}
}
