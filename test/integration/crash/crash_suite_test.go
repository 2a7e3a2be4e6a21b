// Package crash_test checks that labforge survives its own death: a manager stopped right
// after any one of its writes, a restart with claims in every state, and a pool controller
// whose reads lag behind its writes. Each story runs the real manager against a real
// control plane; the simulated VM backend runs in a manager of its own, so that the
// operator's writes, which the stories count and cut short, are the operator's alone.
//
// LABFORGE_RELIABILITY=1 (make test-reliability) runs the long variants: a crash after
// every write of a cold and a warm claim, where the default run crashes after a spread
// subset of them.
package crash_test

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

var (
	cp  *controlplane.ControlPlane
	k8s client.WithWatch
	// clk is every operator's clock: real time, moved forward by the restart story so
	// that a claim's expiry is due the moment the new manager starts.
	clk = &integration.OffsetClock{}
	// backend is the cluster's one "KubeVirt": the simulated VM backend, in a manager of
	// its own.
	backend = &simBackend{}
)

// reliability says whether the long variants run (make test-reliability).
func reliability() bool { return os.Getenv("LABFORGE_RELIABILITY") == "1" }

func TestCrash(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	SetDefaultConsistentlyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "labforge crashes, restarts and lagging caches")
}

var _ = BeforeSuite(func(_ context.Context) {
	s := integration.SetUpSuite(integration.SuiteOptions{})
	cp, k8s = s.ControlPlane, s.Client
	backend.start()
	DeferCleanup(backend.stop)
}, NodeTimeout(2*time.Minute))

// simBackend is the simulated VM backend the stories share; the restart story stops it
// for a while (a lab then stays booting) and starts a new one.
type simBackend struct {
	mu     sync.Mutex
	sim    *simulator.Simulator
	stopFn func()
}

func (b *simBackend) start() {
	stop, sim, err := integration.StartSimulator(cp.RESTConfig(), simulator.Options{})
	Expect(err).NotTo(HaveOccurred())
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sim, b.stopFn = sim, stop
}

func (b *simBackend) stop() {
	b.mu.Lock()
	stop := b.stopFn
	b.stopFn = nil
	b.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// current is the running simulator, whose labs an operator started now probes.
func (b *simBackend) current() *simulator.Simulator {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sim
}

// operator is one operator process's worth of manager: every labforge controller, no VM
// backend, its client wrapped by a recorder that counts its writes and can crash it.
type operator struct {
	rec  *recorder
	stop func()
}

// startOperator starts a fresh operator: a new manager with a new cache, a new apply
// cache and new pool expectations, as a restarted process has. wrap, when given, wraps
// the client beneath the recorder (the lagging reads of the lag story).
func startOperator(wrap func(client.Client) client.Client) *operator {
	ctx, cancel := context.WithCancel(context.Background())
	rec := newRecorder(cancel)
	wrapClient := rec.wrap
	if wrap != nil {
		wrapClient = func(c client.Client) client.Client { return rec.wrap(wrap(c)) }
	}
	stop, err := integration.StartManager(ctx, cp.RESTConfig(), manager.Options{
		Clock: clk, ProbeDialer: backend.current().Dialer(), WrapClient: wrapClient,
	})
	Expect(err).NotTo(HaveOccurred())
	return &operator{rec: rec, stop: stop}
}

func createNamespace(ctx context.Context, name string) {
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})).To(Succeed())
}

// getClaim reads a claim from the API server.
func getClaim(ctx context.Context, g Gomega, ns, name string) *labforgev1alpha1.LabClaim {
	var c labforgev1alpha1.LabClaim
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &c)).To(Succeed())
	return &c
}

func poolStatus(ctx context.Context, name string) func(Gomega) labforgev1alpha1.LabPoolStatus {
	return func(g Gomega) labforgev1alpha1.LabPoolStatus {
		var p labforgev1alpha1.LabPool
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &p)).To(Succeed())
		return p.Status
	}
}
