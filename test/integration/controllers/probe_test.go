package controllers_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

// stallingLabs is a lab API that accepts TCP and never finishes a TLS handshake, as a
// student with root in a lab handed over while booting can make it. It counts the
// connections it was given and those the operator gave up.
type stallingLabs struct {
	ln               net.Listener
	mu               sync.Mutex
	accepted, closed int
	conns            []net.Conn
}

func newStallingLabs() *stallingLabs {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	s := &stallingLabs{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.accepted++
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go func() {
				_, _ = io.Copy(io.Discard, c) // the ClientHello, never answered
				s.mu.Lock()
				s.closed++
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

func (s *stallingLabs) counts() (accepted, closed int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.closed
}

func (s *stallingLabs) stop() {
	_ = s.ln.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
}

// hostileLab is a lab API whose student minted, with the lab's CA key they hold as root
// on its control plane, a serving certificate with hostile names.
type hostileLab struct {
	ln    net.Listener
	names []string
}

func newHostileLab(ctx context.Context, env string, names []string) *hostileLab {
	var (
		mu   sync.Mutex
		cert *tls.Certificate
	)
	getCert := func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		mu.Lock()
		defer mu.Unlock()
		if cert != nil {
			return cert, nil
		}
		var s corev1.Secret
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(env), Name: lab.PKISecret}, &s); err != nil {
			return nil, err
		}
		ca, err := pki.ParseKeyPair(s.Data[lab.PKICACert], s.Data[lab.PKICAKey])
		if err != nil {
			return nil, err
		}
		now := time.Now()
		kp, err := ca.IssueServing("kube-apiserver", names, nil, now.Add(-pki.ClockSkew), now.Add(time.Hour), nil)
		if err != nil {
			return nil, err
		}
		key, err := kp.KeyPEM()
		if err != nil {
			return nil, err
		}
		c, err := tls.X509KeyPair(kp.CertPEM(), key)
		if err != nil {
			return nil, err
		}
		cert = &c
		return cert, nil
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12})
	Expect(err).NotTo(HaveOccurred())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer func() { _ = c.Close() }()
				_ = c.(*tls.Conn).Handshake()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return &hostileLab{ln: ln, names: names}
}

var _ = Describe("The lab readiness probe", Ordered, func() {
	var (
		stalls  *stallingLabs
		hostile *hostileLab
	)
	hostileNames := []string{"\x1b[31mpwned\x1b[0m\r\nReady=True\x07", strings.Repeat("a", 10<<10)}

	BeforeAll(func(ctx context.Context) {
		stalls = newStallingLabs()
		hostile = newHostileLab(context.Background(), "probe-hostile", hostileNames)
		DeferCleanup(func() {
			stalls.stop()
			_ = hostile.ln.Close()
		})
		stopManager()
		sim = simulator.New(simulator.Options{})
		labs := sim.Dialer()
		dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			switch {
			case strings.HasPrefix(addr, "lab-api.lab-probe-stall-"):
				return d.DialContext(ctx, network, stalls.ln.Addr().String())
			case strings.HasPrefix(addr, "lab-api.lab-probe-hostile."):
				return d.DialContext(ctx, network, hostile.ln.Addr().String())
			}
			return labs(ctx, network, addr)
		}
		var err error
		stopManager, err = integration.StartManager(context.Background(), cp.RESTConfig(), manager.Options{
			Clock: clk, Simulator: sim, ProbeDialer: dial,
			// Fewer workers than stalling labs; slow slots for all of them, and a deadline
			// no probe reaches while the test runs: a stall ends only if the operator
			// gives it up.
			ProbePool: labprobe.PoolOptions{Workers: 2, SlowSlots: 16, Timeout: 30 * time.Minute},
		})
		Expect(err).NotTo(HaveOccurred())
		t := integration.MakeTemplate("probe").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj()
		t.Spec.Workers.Count = 0
		Expect(k8s.Create(ctx, t)).To(Succeed())
	})

	AfterAll(func(ctx context.Context) {
		// The next stories get the suite's usual manager, and none of these labs.
		var list labforgev1alpha1.LabEnvironmentList
		Expect(k8s.List(ctx, &list)).To(Succeed())
		for i := range list.Items {
			if strings.HasPrefix(list.Items[i].Name, "probe-") {
				Expect(client.IgnoreNotFound(k8s.Delete(ctx, &list.Items[i]))).To(Succeed())
			}
		}
		stopManager()
		var err error
		stopManager, sim, err = integration.StartSimulatedManager(cp.RESTConfig(), clk)
		Expect(err).NotTo(HaveOccurred())
	})

	It("builds and readies another lab while more labs than it has workers stall TLS", func(ctx context.Context) {
		const stalling = 9 // more than the lab controller's 8 reconcile workers and the probe's 2
		for i := range stalling {
			Expect(k8s.Create(ctx, newEnvironment("probe-stall-"+string(rune('a'+i)), "probe"))).To(Succeed())
		}
		By("holding a stalled TLS handshake with every stalling lab at once")
		Eventually(func() int { n, _ := stalls.counts(); return n }).WithTimeout(2 * time.Minute).Should(Equal(stalling))

		Expect(k8s.Create(ctx, newEnvironment("probe-healthy", "probe"))).To(Succeed())
		Eventually(envCondition(ctx, "probe-healthy", labforgev1alpha1.ConditionReady)).WithTimeout(2 * time.Minute).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "LabReady")))

		By("never having had to end a stall: no reconcile worker and no probe worker waited for one")
		accepted, closed := stalls.counts()
		Expect([]int{accepted, closed}).To(Equal([]int{stalling, 0}))
		for i := range stalling {
			var env labforgev1alpha1.LabEnvironment
			Expect(k8s.Get(ctx, client.ObjectKey{Name: "probe-stall-" + string(rune('a'+i))}, &env)).To(Succeed())
			c := meta.FindStatusCondition(env.Status.Conditions, labforgev1alpha1.ConditionAPIReachable)
			Expect(c).NotTo(BeNil())
			Expect(*c).To(And(HaveField("Status", metav1.ConditionUnknown), HaveField("Reason", "Probing"),
				HaveField("Message", "The operator is asking the lab API whether its bootstrap finished")), env.Name)
			Expect(meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeFalse())
		}
	})

	It("puts a hostile certificate's names into the lab's condition sanitised", func(ctx context.Context) {
		Expect(k8s.Create(ctx, newEnvironment("probe-hostile", "probe"))).To(Succeed())
		prefix := "lab probe-hostile: reaching the lab API at " + lab.APIServiceHost("probe-hostile", lab.DefaultClusterDomain) +
			":6443: tls: failed to verify certificate: x509: certificate is valid for [31mpwned[0m Ready=True, "
		want := prefix + strings.Repeat("a", lab.MarkerMaxMessageLength-len(prefix))
		Eventually(envCondition(ctx, "probe-hostile", labforgev1alpha1.ConditionAPIReachable)).WithTimeout(time.Minute).Should(And(
			HaveField("Status", metav1.ConditionUnknown), HaveField("Reason", "Unreachable"), HaveField("Message", want)))
		Eventually(envCondition(ctx, "probe-hostile", labforgev1alpha1.ConditionReady)).Should(And(
			HaveField("Status", metav1.ConditionUnknown), HaveField("Reason", "Bootstrapping")))
	})
})
