// Package labapi_test runs labforge with the simulated guest backed by a real lab API (an
// etcd and a kube-apiserver per lab, started with the lab's own CA) and checks what a
// student does with the kubeconfig a claim hands over.
package labapi_test

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

var (
	k8s client.Client
	sim *simulator.Simulator
)

func TestLabAPI(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(90 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "labforge real lab API")
}

var _ = BeforeSuite(func(ctx context.Context) {
	s := integration.SetUpSuite(integration.SuiteOptions{})
	k8s = s.Client
	sim = simulator.New(simulator.Options{RealLabAPIs: 1, BinDir: integration.BinDir()})
	stop, err := integration.StartManager(context.Background(), s.ControlPlane.RESTConfig(), manager.Options{Simulator: sim})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stop)
}, NodeTimeout(2*time.Minute))

func claimReady(ctx context.Context, ns, name string) func(Gomega) metav1.ConditionStatus {
	return func(g Gomega) metav1.ConditionStatus {
		var c labforgev1alpha1.LabClaim
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &c)).To(Succeed())
		cond := meta.FindStatusCondition(c.Status.Conditions, "Ready")
		g.Expect(cond).NotTo(BeNil())
		return cond.Status
	}
}

// studentConfig is the rest.Config of the kubeconfig the claim handed over, dialling
// through the simulator's network.
func studentConfig(ctx context.Context, ns, secret string) *rest.Config {
	GinkgoHelper()
	var s corev1.Secret
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: secret}, &s)).To(Succeed())
	cfg, err := clientcmd.RESTConfigFromKubeConfig(s.Data["value"])
	Expect(err).NotTo(HaveOccurred())
	return cfg
}

func alive(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

var _ = Describe("A student with a real lab API", func() {
	It("lists the lab's nodes and creates objects in it with the claim's kubeconfig; the lab's processes go with the claim", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("real").Version("v1.36.3").PodCIDR("10.200.0.0/16").Workers(1).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("real", "real").Replicas(0).MaxLabs(10).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "students"}})).To(Succeed())
		claim := integration.MakeClaim("students", "alice").Pool("real").Obj()
		Expect(k8s.Create(ctx, claim)).To(Succeed())
		Eventually(claimReady(ctx, "students", "alice")).Should(Equal(metav1.ConditionTrue))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		ns := lab.Namespace(claim.Status.Lab)
		pids := sim.RealLabPIDs(ns)
		Expect(pids).To(HaveKey("etcd"))
		Expect(pids).To(HaveKey("kube-apiserver"))

		By("listing the lab's two Nodes, Ready, at their VMs' addresses")
		cfg := studentConfig(ctx, "students", claim.Status.KubeconfigSecretName)
		cfg.Host = "https://" + lab.APIServiceHost(claim.Status.Lab, lab.DefaultClusterDomain) + ":6443"
		cfg.Dial = sim.Dialer()
		student, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		vmAddress := map[string]string{}
		for _, vm := range []string{lab.ControlPlaneVM, lab.WorkerVM(1)} {
			var vmi kubevirtv1.VirtualMachineInstance
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: vm}, &vmi)).To(Succeed())
			vmAddress[vm] = vmi.Status.Interfaces[0].IP
		}
		nodes, err := student.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		Expect(err).NotTo(HaveOccurred())
		got := map[string]string{}
		for _, n := range nodes.Items {
			Expect(n.Status.Conditions).To(ContainElement(And(HaveField("Type", corev1.NodeReady), HaveField("Status", corev1.ConditionTrue))))
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					got[n.Name] = a.Address
				}
			}
		}
		Expect(got).To(Equal(vmAddress))

		By("creating a ConfigMap in the lab as its cluster-admin")
		_, err = student.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "hello"}, Data: map[string]string{"from": "alice"}}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())

		By("finding the bootstrap's marker and the operator's access, as the bootstrap wrote them")
		marker, err := student.CoreV1().ConfigMaps(lab.MarkerNamespace).Get(ctx, lab.MarkerConfigMap, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(marker.Data).To(Equal(map[string]string{lab.MarkerPhase: lab.MarkerPhaseComplete}))
		_, err = student.RbacV1().RoleBindings(lab.MarkerNamespace).Get(ctx, "labforge-bootstrap-marker-reader", metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())

		By("refusing a client certificate of another CA, and one of the lab's CA in no group")
		other, err := pki.NewCA("kubernetes", time.Now(), time.Hour, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(withClientCert(cfg, other, []string{"kubeadm:cluster-admins"}, func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		})).To(Satisfy(apierrors.IsUnauthorized))
		var pkiSecret corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: lab.PKISecret}, &pkiSecret)).To(Succeed())
		labCA, err := pki.ParseKeyPair(pkiSecret.Data[lab.PKICACert], pkiSecret.Data[lab.PKICAKey])
		Expect(err).NotTo(HaveOccurred())
		Expect(withClientCert(cfg, labCA, nil, func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		})).To(Satisfy(apierrors.IsForbidden))

		By("stopping the lab's etcd and kube-apiserver when the claim is deleted")
		Expect(k8s.Delete(ctx, claim)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))
		}).Should(BeTrue())
		Eventually(func() []int {
			var left []int
			for _, pid := range pids {
				if alive(pid) {
					left = append(left, pid)
				}
			}
			return left
		}).Should(BeEmpty())
		Expect(sim.RealLabPIDs(ns)).To(BeNil())
	})
})

// withClientCert runs f with cfg's server and trust but a client certificate for
// "intruder" in groups, signed by signer.
func withClientCert(cfg *rest.Config, signer *pki.KeyPair, groups []string, f func(kubernetes.Interface) error) error {
	GinkgoHelper()
	now := time.Now()
	cert, err := signer.IssueClient("intruder", groups, now.Add(-pki.ClockSkew), now.Add(time.Hour), nil)
	Expect(err).NotTo(HaveOccurred())
	key, err := cert.KeyPEM()
	Expect(err).NotTo(HaveOccurred())
	c := rest.CopyConfig(cfg)
	c.CertData, c.KeyData = cert.CertPEM(), key
	cs, err := kubernetes.NewForConfig(c)
	Expect(err).NotTo(HaveOccurred())
	return f(cs)
}
