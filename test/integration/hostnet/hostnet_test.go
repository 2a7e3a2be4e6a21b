// Package hostnet_test runs labforge against a real control plane whose host facts
// (Nodes, ServiceCIDRs) the stories create, move and delete, as kubelets and admins do on
// a real host: the operator refuses to run without them, keeps every lab's policies in
// step with them, and gives students the address of the node their lab runs on.
package hostnet_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

var (
	cp  *controlplane.ControlPlane
	k8s client.Client
)

func TestHostNetwork(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(20 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "labforge host network")
}

var _ = BeforeSuite(func(_ context.Context) {
	s := integration.SetUpSuite(integration.SuiteOptions{})
	cp, k8s = s.ControlPlane, s.Client
}, NodeTimeout(2*time.Minute))

// newManager builds a manager told nothing of the host but what config says. sim is an
// interface: a nil *simulator.Simulator in it would not be nil.
func newManager(config hostcluster.Config, sim manager.SimulatedBackend) (ctrl.Manager, error) {
	return manager.New(cp.RESTConfig(), manager.Options{
		MetricsAddr: "0", ProbeAddr: "0", SkipControllerNameValidation: true, CreateOperatorNamespace: true,
		ProbeInterval: 100 * time.Millisecond, Host: config, Simulator: sim,
	})
}

// createNode creates a Node as a kubelet would register it: pod ranges in its spec (as
// kube-controller-manager's node IPAM sets them), addresses in its status.
func createNode(ctx context.Context, name string, podCIDRs []string, addresses ...corev1.NodeAddress) {
	GinkgoHelper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR = podCIDRs[0]
	}
	Expect(k8s.Create(ctx, n)).To(Succeed())
	n.Status.Addresses = addresses
	Expect(k8s.Status().Update(ctx, n)).To(Succeed())
}

func internalIP(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a}
}

// egressExceptions returns the IPv4 ranges a lab's internet egress rule leaves out: the
// rule of lab-isolation whose first peer is 0.0.0.0/0.
func egressExceptions(ctx context.Context, env string) func(Gomega) []string {
	return func(g Gomega) []string {
		p := &networkingv1.NetworkPolicy{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(env), Name: render.PolicyIsolation}, p)).To(Succeed())
		for _, r := range p.Spec.Egress {
			if len(r.To) > 0 && r.To[0].IPBlock != nil && r.To[0].IPBlock.CIDR == "0.0.0.0/0" {
				return r.To[0].IPBlock.Except
			}
		}
		g.Expect(p.Spec.Egress).To(ContainElement(HaveField("To", ContainElement(HaveField("IPBlock.CIDR", "0.0.0.0/0")))),
			"lab-isolation has no IPv4 internet egress rule")
		return nil
	}
}

func policyVersions(ctx context.Context, env string) map[string]string {
	GinkgoHelper()
	var list networkingv1.NetworkPolicyList
	Expect(k8s.List(ctx, &list, client.InNamespace(lab.Namespace(env)))).To(Succeed())
	out := map[string]string{}
	for _, p := range list.Items {
		out[p.Name] = p.ResourceVersion
	}
	Expect(out).To(HaveLen(2))
	return out
}

var _ = Describe("The host's facts", Ordered, func() {
	It("are discovered from a v1.36 API server, which serves ServiceCIDRs and makes its own", func(ctx context.Context) {
		facts, err := hostcluster.Discover(ctx, k8s)
		Expect(err).NotTo(HaveOccurred())
		Expect(facts.ServiceCIDRAPI).To(BeTrue())
		Expect(facts.ServiceCIDRs).To(Equal([]netip.Prefix{netip.MustParsePrefix(controlplane.DefaultServiceCIDR)}))
		Expect(facts.PodCIDRs).To(BeEmpty())
		Expect(facts.Nodes).To(BeEmpty())
		Expect(facts.KubernetesServiceIPs).To(BeEmpty(), "read only where ServiceCIDR is absent")
		own := &networkingv1.ServiceCIDR{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "kubernetes"}, own)).To(Succeed())
		Expect(own.Spec.CIDRs).To(Equal([]string{controlplane.DefaultServiceCIDR}))
	})

	It("must be known, or the operator refuses to start and names the flags to set", func() {
		_, err := newManager(hostcluster.Config{}, nil)
		Expect(err).To(MatchError("the host cluster is not known well enough to run labs: " +
			"the host's pod ranges are unknown: no Node has spec.podCIDRs (a CNI with its own IPAM, such as Calico or Cilium's cluster-pool, does not use them); set --host-pod-cidrs\n" +
			"students could not be given an address: --host-public-address is not set and no Node has an address of type InternalIP (--node-address-type)"))

		By("the shipped binary, which exits with that error")
		bin := filepath.Join(GinkgoT().TempDir(), "manager")
		build := exec.Command("go", "build", "-o", bin, "./cmd/manager")
		build.Dir = integration.RepoRoot()
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "%s", out)
		run := exec.Command(bin, "--metrics-bind-address=0", "--health-probe-bind-address=0")
		run.Env = append(os.Environ(), "KUBECONFIG="+cp.KubeconfigPath())
		out, err = run.CombinedOutput()
		var exit *exec.ExitError
		Expect(errors.As(err, &exit)).To(BeTrue(), "the manager ran: %v\n%s", err, out)
		Expect(exit.ExitCode()).To(Equal(1))
		Expect(string(out)).To(And(ContainSubstring("Failed to create the manager"),
			ContainSubstring("set --host-pod-cidrs"), ContainSubstring("--host-public-address is not set")))

		By("being told what the API cannot say")
		_, err = newManager(hostcluster.Config{PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}, PublicAddress: "labs.example.com"}, nil)
		Expect(err).NotTo(HaveOccurred())
	})

	var sim *simulator.Simulator
	var stopManager func()
	const env = "hostnet-lab"
	AfterAll(func() {
		if stopManager != nil {
			stopManager()
		}
	})

	It("reach every lab's policies as nodes and ServiceCIDRs come and go, and nothing else is written", func(ctx context.Context) {
		// The simulated KubeVirt registers its own nodes (internal/simulator), which are
		// host nodes like any other: their addresses are blocked too.
		simNodes := []string{"127.0.0.11/32", "127.0.0.12/32", "127.0.0.13/32"}
		createNode(ctx, "node-1", []string{"10.244.1.0/24"}, internalIP("192.168.1.11"), corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.11"})
		sim = simulator.New(simulator.Options{})
		mgr, err := newManager(hostcluster.Config{}, sim)
		Expect(err).NotTo(HaveOccurred())
		mctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- mgr.Start(mctx) }()
		// The next story's claim is served by the same operator.
		stopManager = func() { cancel(); <-done }

		Expect(k8s.Create(ctx, integration.MakeTemplate("hostnet").Workers(0).AdmitClaimsFrom("students").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, &labforgev1alpha1.LabEnvironment{
			ObjectMeta: metav1.ObjectMeta{Name: env},
			Spec:       labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "hostnet"}},
		})).To(Succeed())
		Eventually(egressExceptions(ctx, env)).Should(Equal([]string{"10.244.1.0/24", "10.96.0.0/16", simNodes[0], simNodes[1], simNodes[2], "169.254.0.0/16", "192.168.1.11/32", "203.0.113.11/32"}))
		Eventually(func(g Gomega) {
			e := &labforgev1alpha1.LabEnvironment{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: env}, e)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(e.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue())
		}).Should(Succeed())

		By("a node's heartbeat and labels, which change no fact")
		before := policyVersions(ctx, env)
		n := &corev1.Node{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "node-1"}, n)).To(Succeed())
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
		Expect(k8s.Status().Update(ctx, n)).To(Succeed())
		n.Labels = map[string]string{"topology.kubernetes.io/zone": "a"}
		Expect(k8s.Update(ctx, n)).To(Succeed())
		Consistently(func() map[string]string { return policyVersions(ctx, env) }).WithTimeout(2 * time.Second).Should(Equal(before))

		By("a node joining")
		createNode(ctx, "node-2", []string{"10.244.2.0/24"}, internalIP("192.168.1.12"))
		Eventually(egressExceptions(ctx, env)).Should(Equal([]string{"10.244.1.0/24", "10.244.2.0/24", "10.96.0.0/16", simNodes[0], simNodes[1], simNodes[2], "169.254.0.0/16", "192.168.1.11/32", "192.168.1.12/32", "203.0.113.11/32"}))
		after := policyVersions(ctx, env)
		changed := []string{}
		for name, rv := range after {
			if before[name] != rv {
				changed = append(changed, name)
			}
		}
		slices.Sort(changed)
		// Node addresses and pod ranges are in the student ingress rule's exceptions too.
		Expect(changed).To(Equal([]string{render.PolicyControlPlaneAccess, render.PolicyIsolation}))

		By("a service range added")
		extra := &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "extra"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.112.0.0/16"}}}
		Expect(k8s.Create(ctx, extra)).To(Succeed())
		Eventually(egressExceptions(ctx, env)).Should(ContainElement("10.112.0.0/16"))

		By("a node leaving")
		Expect(k8s.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}})).To(Succeed())
		Eventually(egressExceptions(ctx, env)).Should(Equal([]string{"10.112.0.0/16", "10.244.2.0/24", "10.96.0.0/16", simNodes[0], simNodes[1], simNodes[2], "169.254.0.0/16", "192.168.1.12/32"}))

		By("the service range removed")
		Expect(k8s.Delete(ctx, extra)).To(Succeed())
		// kube-controller-manager's service-cidr controller, which this control plane does
		// not run, lets a range go once no Service holds an address in it: its finalizer
		// is taken off here. Until then the range stays blocked.
		Eventually(func(g Gomega) {
			err := k8s.Get(ctx, client.ObjectKeyFromObject(extra), extra)
			if apierrors.IsNotFound(err) {
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			extra.Finalizers = nil
			g.Expect(k8s.Update(ctx, extra)).To(Succeed())
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(extra), extra)).To(MatchError(ContainSubstring("not found")))
		}).Should(Succeed())
		Eventually(egressExceptions(ctx, env)).Should(Equal([]string{"10.244.2.0/24", "10.96.0.0/16", simNodes[0], simNodes[1], simNodes[2], "169.254.0.0/16", "192.168.1.12/32"}))
	}, NodeTimeout(90*time.Second))

	It("give a student the address of the node the lab's control plane runs on, and a kubeconfig that works there", func(ctx context.Context) {
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "students"}})).To(Succeed())
		claim := &labforgev1alpha1.LabClaim{
			ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: "alice"},
			Spec: labforgev1alpha1.LabClaimSpec{
				TemplateRef: &labforgev1alpha1.LocalObjectReference{Name: "hostnet"},
				SSH:         labforgev1alpha1.SSHAccess{AuthorizedKeys: []string{integration.StudentKey}},
			},
		}
		Expect(k8s.Create(ctx, claim)).To(Succeed())
		var labName string
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
			g.Expect(claim.Status.Lab).NotTo(BeEmpty())
			labName = claim.Status.Lab
		}).Should(Succeed())
		vmi := &kubevirtv1.VirtualMachineInstance{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(labName), Name: lab.ControlPlaneVM}, vmi)).To(Succeed())
			g.Expect(vmi.Status.NodeName).NotTo(BeEmpty())
		}).Should(Succeed())

		// The simulator names the node a VMI runs on; where no Node of that name exists,
		// the claim waits for one with an address, and says so.
		node := &corev1.Node{}
		address := "192.168.7.7"
		switch err := k8s.Get(ctx, client.ObjectKey{Name: vmi.Status.NodeName}, node); {
		case apierrors.IsNotFound(err):
			By("the claim waiting for node " + vmi.Status.NodeName + " to have an address")
			Eventually(func(g Gomega) metav1.Condition {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
				c := meta.FindStatusCondition(claim.Status.Conditions, labforgev1alpha1.ConditionReady)
				g.Expect(c).NotTo(BeNil())
				return *c
			}).Should(And(HaveField("Status", metav1.ConditionUnknown), HaveField("Reason", "NodeAddressUnknown"),
				HaveField("Message", "Node "+vmi.Status.NodeName+", which runs the lab's control plane, has no InternalIP address (the operator's --node-address-type); the claim waits for one")))
			createNode(ctx, vmi.Status.NodeName, nil, internalIP(address))
		case err != nil:
			Fail(err.Error())
		default:
			By("node " + node.Name + " made by the simulator")
			a, ok := hostcluster.Node{Name: node.Name, Addresses: node.Status.Addresses}.Address(corev1.NodeInternalIP)
			Expect(ok).To(BeTrue(), "node %s has no InternalIP", node.Name)
			address = a
		}

		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
			g.Expect(meta.IsStatusConditionTrue(claim.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue())
		}).WithTimeout(30 * time.Second).Should(Succeed())
		st := claim.Status
		Expect(st.SSH.Host).To(Equal(address))
		Expect(st.SSH.Command).To(Equal("ssh -p " + strconv.Itoa(int(st.SSH.Port)) + " ubuntu@" + address))
		svc := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(labName), Name: lab.APIService}, svc)).To(Succeed())
		Expect(svc.Spec.ExternalTrafficPolicy).To(Equal(corev1.ServiceExternalTrafficPolicyLocal))
		var apiNodePort int32
		for _, p := range svc.Spec.Ports {
			if p.Name == render.PortAPI {
				apiNodePort = p.NodePort
			}
		}
		server := "https://" + net.JoinHostPort(address, strconv.Itoa(int(apiNodePort)))
		Expect(st.APIServerURL).To(Equal(server))

		secret := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students", Name: render.KubeconfigSecretName("alice")}, secret)).To(Succeed())
		Expect(secret.Annotations).To(HaveKeyWithValue(render.AnnotationServer, server))
		kubeconfig, err := clientcmd.Load(secret.Data[render.KubeconfigKey])
		Expect(err).NotTo(HaveOccurred())
		cluster := kubeconfig.Clusters[kubeconfig.Contexts[kubeconfig.CurrentContext].Cluster]
		fqdn := "lab-api." + lab.Namespace(labName) + ".svc.cluster.local"
		Expect(cluster.Server).To(Equal(server))
		Expect(cluster.TLSServerName).To(Equal(fqdn))

		By("client-go reaching the lab API at the node's address, checking the certificate for the Service's name")
		restCfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data[render.KubeconfigKey])
		Expect(err).NotTo(HaveOccurred())
		// The node's NodePort, as kube-proxy would forward it, is the simulated lab API:
		// every other address is refused.
		dial := sim.Dialer()
		restCfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr != net.JoinHostPort(address, strconv.Itoa(int(apiNodePort))) {
				return nil, &net.OpError{Op: "dial", Net: network, Err: net.UnknownNetworkError("not the lab's node port")}
			}
			return dial(ctx, network, net.JoinHostPort(fqdn, strconv.Itoa(lab.APIPort)))
		}
		cs, err := kubernetes.NewForConfig(restCfg)
		Expect(err).NotTo(HaveOccurred())
		marker, err := cs.CoreV1().ConfigMaps(lab.MarkerNamespace).Get(ctx, lab.MarkerConfigMap, metav1.GetOptions{})
		Expect(err).NotTo(HaveOccurred())
		Expect(marker.Data).To(HaveKeyWithValue(lab.MarkerPhase, lab.MarkerPhaseComplete))
	}, NodeTimeout(90*time.Second))
})
