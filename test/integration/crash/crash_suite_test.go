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
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

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
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	cp, err = integration.StartControlPlane(context.Background())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	k8s, err = client.NewWithWatch(cp.RESTConfig(), client.Options{Scheme: manager.NewScheme()})
	Expect(err).NotTo(HaveOccurred())
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

// newTemplate returns a lab design of a control plane and one worker whose boot timeout
// outlasts the restart story's clock jump.
func newTemplate(name string) *labforgev1alpha1.LabTemplate {
	return &labforgev1alpha1.LabTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: labforgev1alpha1.LabTemplateSpec{
			KubernetesVersion: "v1.36.3",
			Image:             labforgev1alpha1.LabImage{ContainerDisk: "quay.io/containerdisks/ubuntu:22.04"},
			ControlPlane:      labforgev1alpha1.ControlPlaneSize{Cores: 2, Threads: 1, Memory: resource.MustParse("2Gi")},
			Workers:           labforgev1alpha1.WorkerSpec{Count: 1, NodeSize: labforgev1alpha1.NodeSize{Cores: 1, Threads: 1, Memory: resource.MustParse("1Gi")}},
			Network:           labforgev1alpha1.LabNetwork{PodCIDR: "10.200.0.0/16", ServiceCIDR: "10.201.0.0/16", TunnelPort: 8475},
			BootTimeout:       metav1.Duration{Duration: 2 * time.Hour},
		},
	}
}

func newPool(name, template string, replicas, maxLabs int32) *labforgev1alpha1.LabPool {
	return &labforgev1alpha1.LabPool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: labforgev1alpha1.LabPoolSpec{
			TemplateRef: labforgev1alpha1.LocalObjectReference{Name: template}, Replicas: replicas,
			MaxBooting: 5, MaxLabs: maxLabs, ClaimNamespaceSelector: &metav1.LabelSelector{},
			UpdateStrategy: labforgev1alpha1.PoolUpdateStrategy{Type: labforgev1alpha1.RollingUpdate},
		},
	}
}

const studentKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIlYq0c6HkW6u3uC9B3iJ9Xw2lqWlq3S0sJ7B2nL3f2m alice@laptop"

// newClaim returns a claim on a pool (pool set) or a template, with one key of the
// student's and a generated key pair.
func newClaim(ns, name, pool, template string, duration time.Duration) *labforgev1alpha1.LabClaim {
	c := &labforgev1alpha1.LabClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: labforgev1alpha1.LabClaimSpec{
			SSH:      labforgev1alpha1.SSHAccess{AuthorizedKeys: []string{studentKey}, GenerateKeyPair: true},
			Duration: &metav1.Duration{Duration: duration},
		},
	}
	if pool != "" {
		c.Spec.PoolRef = &labforgev1alpha1.LocalObjectReference{Name: pool}
	} else {
		c.Spec.TemplateRef = &labforgev1alpha1.LocalObjectReference{Name: template}
	}
	return c
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
