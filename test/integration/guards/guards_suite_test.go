// Package guards_test checks that a lab's guards (its quota, limit range and network
// policies) stay exactly as labforge renders them, on the real control plane: edits by
// hand, widening ones included, are put back on the next pass, and with the lab-guards
// admission policy of config/policy installed nobody but the operator's service account
// may write them at all, while the operator, running as that service account with
// config/rbac/role.yaml, still builds, repairs and tears labs down.
package guards_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

// operatorUser is the operator's service account: the one user
// config/policy/lab-guards.yaml lets through.
const operatorUser = integration.OperatorUser

var (
	cp *controlplane.ControlPlane
	// k8s is the administrator's client.
	k8s client.Client
	sim *simulator.Simulator
	// operatorConfig reaches the control plane as the operator's service account.
	operatorConfig *rest.Config
	// stopOperator stops the operator the suite runs.
	stopOperator func()
)

func TestGuards(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	SetDefaultConsistentlyDuration(3 * time.Second)
	RunSpecs(t, "labforge lab guards")
}

var _ = BeforeSuite(func(ctx context.Context) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	cp, err = integration.StartControlPlane(context.Background())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	k8s, err = client.New(cp.RESTConfig(), client.Options{Scheme: manager.NewScheme()})
	Expect(err).NotTo(HaveOccurred())

	// The operator's identity and its roles, as config/default installs them.
	operatorConfig, err = integration.InstallOperatorAccount(ctx, k8s, cp.RESTConfig())
	Expect(err).NotTo(HaveOccurred())

	// KubeVirt (simulated) is another component with its own identity.
	stopSim, s, err := integration.StartSimulator(cp.RESTConfig(), simulator.Options{})
	Expect(err).NotTo(HaveOccurred())
	sim = s
	DeferCleanup(stopSim)
	startOperator(nil)
	DeferCleanup(func() { stopOperator() })
}, NodeTimeout(2*time.Minute))

// startOperator runs the operator as its service account, its requests recorded by rec
// when rec is not nil.
func startOperator(rec *integration.WriteRecorder) {
	cfg := operatorConfig
	if rec != nil {
		cfg = rec.Wrap(cfg)
	}
	stop, err := integration.StartManager(context.Background(), cfg, manager.Options{ProbeDialer: sim.Dialer()})
	Expect(err).NotTo(HaveOccurred())
	stopOperator = stop
}

// as returns an administrator's client that acts as user, a member of system:masters:
// RBAC lets it do anything, an admission policy does not.
func as(user string) client.Client {
	c, err := integration.ClientAs(cp.RESTConfig(), user, "system:masters")
	Expect(err).NotTo(HaveOccurred())
	return c
}
