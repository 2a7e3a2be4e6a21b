// Package labapi_test runs labforge with the simulated guest backed by a real lab API (an
// etcd and a kube-apiserver per lab, started with the lab's own CA) and checks what a
// student does with the kubeconfig a claim hands over.
package labapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labclient"
	"github.com/labforge/labforge/internal/labprobe"
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
	// A range of its own: the simulator listens on the simulated nodes' addresses at every
	// node port, and the expose suite, which may run at the same time, uses 30000-30014.
	s := integration.SetUpSuite(integration.SuiteOptions{NodePortRange: "31000-31049"})
	k8s = s.Client
	var stop func()
	var err error
	stop, sim, err = integration.StartRealLabManager(ctx, s.ControlPlane.RESTConfig(), 1, manager.Options{})
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

// studentConfig is the rest.Config of the kubeconfig the claim handed over.
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

		By("listing the lab's two Nodes, Ready, at their VMs' addresses, through the API's NodePort on the control plane's node")
		var cpVMI kubevirtv1.VirtualMachineInstance
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: lab.ControlPlaneVM}, &cpVMI)).To(Succeed())
		nodeAddress := ""
		for _, n := range simulator.Nodes {
			if n.Name == cpVMI.Status.NodeName {
				nodeAddress = n.InternalIP
			}
		}
		Expect(nodeAddress).NotTo(BeEmpty())
		var access corev1.Service
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: lab.APIService}, &access)).To(Succeed())
		apiNodePort := nodePortOf(&access, lab.APIPort)
		Expect(claim.Status.APIServerURL).To(Equal(fmt.Sprintf("https://%s:%d", nodeAddress, apiNodePort)))
		cfg := studentConfig(ctx, "students", claim.Status.KubeconfigSecretName)
		Expect(cfg.Host).To(Equal(claim.Status.APIServerURL))
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
			Expect(n.Status.NodeInfo.KubeletVersion).To(Equal("v1.36.3"))
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

		By("dropping the API's NodePort on nodes that run no control plane (externalTrafficPolicy Local), and SSH")
		for _, n := range simulator.Nodes {
			if n.InternalIP != nodeAddress {
				other := rest.CopyConfig(cfg)
				other.Host = fmt.Sprintf("https://%s:%d", n.InternalIP, apiNodePort)
				oc, err := kubernetes.NewForConfig(other)
				Expect(err).NotTo(HaveOccurred())
				_, err = oc.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
				Expect(err).To(MatchError(ContainSubstring("connection reset by peer")))
			}
		}
		Expect(dialAndRead(nodeAddress, nodePortOf(&access, lab.SSHPort))).To(MatchError(ContainSubstring("connection reset by peer")))

		By("answering, on a host NodePort that reaches a lab Service's node port, as that Service")
		web, err := student.CoreV1().Services("default").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "web"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
				Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}}},
		}, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		labNodePort := web.Spec.Ports[0].NodePort
		exposed := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exposed-web",
				Labels: map[string]string{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{lab.LabelNode: lab.WorkerVM(1)},
				Ports: []corev1.ServicePort{{Port: labNodePort, TargetPort: intstr.FromInt32(labNodePort)}}},
		}
		Expect(k8s.Create(ctx, exposed)).To(Succeed())
		hostNodePort := exposed.Spec.Ports[0].NodePort
		for _, n := range simulator.Nodes {
			Eventually(func() (string, error) {
				return httpGet(fmt.Sprintf("http://%s:%d/", n.InternalIP, hostNodePort))
			}).Should(Equal("service default/web\n"))
		}
		By("resetting one that reaches no lab Service, and closing the port with the host Service")
		Expect(k8s.Delete(ctx, exposed)).To(Succeed())
		Eventually(func() error {
			_, err := httpGet(fmt.Sprintf("http://%s:%d/", nodeAddress, hostNodePort))
			return err
		}).Should(MatchError(ContainSubstring("connection refused")))

		By("letting the operator in with its own credential, through labclient and the simulator's dialer")
		var pkiSecret corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: lab.PKISecret}, &pkiSecret)).To(Succeed())
		opCfg, err := labclient.Config(claim.Status.Lab, labprobe.Credentials{
			CACertPEM:     pkiSecret.Data[lab.PKICACert],
			ClientCertPEM: pkiSecret.Data[lab.PKIOperatorCert],
			ClientKeyPEM:  pkiSecret.Data[lab.PKIOperatorKey],
		}, labclient.Options{Dial: sim.Dialer()})
		Expect(err).NotTo(HaveOccurred())
		operator, err := kubernetes.NewForConfig(opCfg)
		Expect(err).NotTo(HaveOccurred())
		marker, err = operator.CoreV1().ConfigMaps(lab.MarkerNamespace).Get(ctx, lab.MarkerConfigMap, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(marker.Data).To(HaveKeyWithValue(lab.MarkerPhase, lab.MarkerPhaseComplete))

		By("refusing a client certificate of another CA, and one of the lab's CA in no group")
		other, err := pki.NewCA("kubernetes", time.Now(), time.Hour, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(withClientCert(cfg, other, []string{"kubeadm:cluster-admins"}, func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		})).To(Satisfy(apierrors.IsUnauthorized))
		labCA, err := pki.ParseKeyPair(pkiSecret.Data[lab.PKICACert], pkiSecret.Data[lab.PKICAKey])
		Expect(err).NotTo(HaveOccurred())
		Expect(withClientCert(cfg, labCA, nil, func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			return err
		})).To(Satisfy(apierrors.IsForbidden))

		By("giving a lab over the limit the light guest, which answers only the bootstrap marker")
		bob := integration.MakeClaim("students", "bob").Pool("real").Obj()
		Expect(k8s.Create(ctx, bob)).To(Succeed())
		Eventually(claimReady(ctx, "students", "bob")).Should(Equal(metav1.ConditionTrue))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(bob), bob)).To(Succeed())
		Expect(sim.RealLabPIDs(lab.Namespace(bob.Status.Lab))).To(BeNil())
		light, err := kubernetes.NewForConfig(studentConfig(ctx, "students", bob.Status.KubeconfigSecretName))
		Expect(err).NotTo(HaveOccurred())
		_, err = light.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		Expect(err).To(Satisfy(apierrors.IsNotFound))
		Expect(k8s.Delete(ctx, bob)).To(Succeed())

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

func nodePortOf(svc *corev1.Service, target int) int32 {
	GinkgoHelper()
	for _, p := range svc.Spec.Ports {
		if p.TargetPort.IntValue() == target {
			return p.NodePort
		}
	}
	Fail(fmt.Sprintf("Service %s/%s has no port for %d", svc.Namespace, svc.Name, target))
	return 0
}

// httpGet returns the body of a GET of url.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, body)
	}
	return string(body), err
}

// dialAndRead connects to address:port and reads until the connection ends.
func dialAndRead(address string, port int32) error {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(address, strconv.Itoa(int(port))), 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(conn)
	return err
}

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
