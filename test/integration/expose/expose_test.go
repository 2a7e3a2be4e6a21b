// Package expose_test runs labforge with a real lab API (the simulated guest backed by an
// etcd and a kube-apiserver with the lab's own CA) on a host whose NodePort range is five
// fifteen ports, and checks what happens to the Services a student creates in the lab: the
// NodePort and LoadBalancer ones become host NodePorts, listed on the claim, within the
// template's cap, the lab's quota and the host's range, without a retry storm.
package expose_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

var (
	k8s client.Client
	sim *simulator.Simulator
	// writes records the operator's own requests that change something.
	writes = &integration.WriteRecorder{}
)

func TestExpose(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(90 * time.Second)
	SetDefaultEventuallyPollingInterval(100 * time.Millisecond)
	RunSpecs(t, "labforge exposed lab Services")
}

var _ = BeforeSuite(func(ctx context.Context) {
	// Fifteen NodePorts: a claim's SSH and API take two, its student's Services some, and
	// the admin's Service of a story the rest.
	s := integration.SetUpSuite(integration.SuiteOptions{NodePortRange: "30000-30014"})
	k8s = s.Client
	// As labforge dev runs: students reach a lab at the simulated node that runs its
	// control plane, where the simulator plays kube-proxy. The writes recorded are the
	// manager's; the stories count those of the claim and of its lab's Services and
	// policies, which the simulator never writes.
	stop, simulated, err := integration.StartRealLabManager(ctx, writes.Wrap(s.ControlPlane.RESTConfig()), 1, manager.Options{})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stop)
	sim = simulated
}, NodeTimeout(2*time.Minute))

// exposureWrites returns the operator's recorded writes of LabClaims and of the Services
// and NetworkPolicies in the lab namespace ns (events aside; the pool builds its next lab
// meanwhile), and forgets every recorded write.
func exposureWrites(ns string) func() []string {
	return func() []string {
		var out []string
		for _, w := range writes.Writes() {
			inLab := strings.Contains(w, "/namespaces/"+ns+"/services") || strings.Contains(w, "/namespaces/"+ns+"/networkpolicies")
			if inLab || strings.Contains(w, "/labclaims") {
				out = append(out, w)
			}
		}
		return out
	}
}

func getClaim(ctx context.Context, g Gomega, key client.ObjectKey) *labforgev1alpha1.LabClaim {
	c := &labforgev1alpha1.LabClaim{}
	g.Expect(k8s.Get(ctx, key, c)).To(Succeed())
	return c
}

// exposedCondition returns the claim's ServicesExposed condition as "Status/Reason", or ""
// when it has none.
func exposedCondition(ctx context.Context, key client.ObjectKey) func(Gomega) string {
	return func(g Gomega) string {
		c := meta.FindStatusCondition(getClaim(ctx, g, key).Status.Conditions, labforgev1alpha1.ConditionServicesExposed)
		if c == nil {
			return ""
		}
		return string(c.Status) + "/" + c.Reason
	}
}

func nodePortService(name string, nodePorts ...int32) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name,
			// Hostile metadata: none of it may reach the host.
			Labels:      map[string]string{labforgev1alpha1.LabelManagedBy: "student", labforgev1alpha1.LabelEnvironment: "another-lab"},
			Annotations: map[string]string{"service.beta.kubernetes.io/external-traffic": "OnlyLocal"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": name}},
	}
	for i, np := range nodePorts {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: fmt.Sprintf("port-%d", i), Protocol: corev1.ProtocolTCP, Port: int32(8080 + i), TargetPort: intstr.FromInt32(int32(8080 + i)), NodePort: np})
	}
	return svc
}

var _ = Describe("A student exposes Services of their lab", func() {
	It("gets host NodePorts for NodePort and LoadBalancer Services, within the cap, the quota and the host's range, and loses them with the Service and the claim", func(ctx context.Context) {
		tmpl := integration.MakeTemplate("expose").Workers(0).Obj()
		tmpl.Spec.Network.MaxExposedServices = 3
		Expect(k8s.Create(ctx, tmpl)).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("expose", "expose").Replicas(1).MaxLabs(2).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "students"}})).To(Succeed())
		// The warm lab is the one with the real API (the simulator gives one lab a real API).
		Eventually(func(g Gomega) bool {
			pool := &labforgev1alpha1.LabPool{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "expose"}, pool)).To(Succeed())
			return meta.IsStatusConditionTrue(pool.Status.Conditions, labforgev1alpha1.ConditionReady)
		}).Should(BeTrue())
		key := client.ObjectKey{Namespace: "students", Name: "alice"}
		Expect(k8s.Create(ctx, integration.MakeClaim(key.Namespace, key.Name).Pool("expose").Obj())).To(Succeed())
		Eventually(func(g Gomega) bool {
			return meta.IsStatusConditionTrue(getClaim(ctx, g, key).Status.Conditions, labforgev1alpha1.ConditionReady)
		}).Should(BeTrue())
		claim := getClaim(ctx, Default, key)
		env, ns := claim.Status.Lab, lab.Namespace(claim.Status.Lab)
		host := claim.Status.SSH.Host
		Expect(sim.RealLabPIDs(ns)).To(HaveKey("kube-apiserver"))

		By("writing nothing while the lab has nothing to expose")
		// The watch of the lab lists it, wakes the claim, and finds only the lab's
		// ClusterIP Service "kubernetes".
		writes.Writes()
		Consistently(exposureWrites(ns), 3*time.Second, 200*time.Millisecond).Should(BeEmpty())
		Expect(claim.Status.Exposed).To(BeEmpty())
		Expect(exposedCondition(ctx, key)(Default)).To(BeEmpty())
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.PolicyExposedServices}, &networkingv1.NetworkPolicy{})).
			To(Satisfy(apierrors.IsNotFound))

		cfg, err := clientcmd.RESTConfigFromKubeConfig(secretData(ctx, key.Namespace, claim.Status.KubeconfigSecretName))
		Expect(err).NotTo(HaveOccurred())
		cfg.Host = "https://" + lab.APIServiceHost(env, lab.DefaultClusterDomain) + ":6443"
		cfg.Dial = sim.Dialer()
		student, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		services := student.CoreV1().Services("default")

		By("exposing a NodePort Service and a LoadBalancer Service the student creates")
		_, err = services.Create(ctx, nodePortService("web", 30080), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		shop := nodePortService("shop", 30443)
		shop.Spec.Type = corev1.ServiceTypeLoadBalancer
		shop.Spec.LoadBalancerIP = "203.0.113.7" // the student's wish, never the host's
		_, err = services.Create(ctx, shop, metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(exposedCondition(ctx, key)).Should(Equal("True/Exposed"))
		claim = getClaim(ctx, Default, key)
		Expect(claim.Status.Exposed).To(HaveLen(2))
		hostPorts := map[string]int32{}
		for _, p := range claim.Status.Exposed {
			hostPorts[p.Service] = p.NodePort
			Expect(p.NodePort).To(BeNumerically(">=", 30000))
			Expect(p.NodePort).To(BeNumerically("<=", 30014))
			Expect(p.Address).To(Equal(net.JoinHostPort(host, strconv.Itoa(int(p.NodePort)))))
			Expect(p.Protocol).To(Equal(corev1.ProtocolTCP))
		}
		Expect(claim.Status.Exposed).To(ConsistOf(
			labforgev1alpha1.ExposedPort{Service: "default/web", Protocol: corev1.ProtocolTCP, LabNodePort: 30080, NodePort: hostPorts["default/web"],
				Address: net.JoinHostPort(host, strconv.Itoa(int(hostPorts["default/web"])))},
			labforgev1alpha1.ExposedPort{Service: "default/shop", Protocol: corev1.ProtocolTCP, LabNodePort: 30443, NodePort: hostPorts["default/shop"],
				Address: net.JoinHostPort(host, strconv.Itoa(int(hostPorts["default/shop"])))},
		))

		By("answering at the claim's address on each host NodePort, from the lab's Service")
		Expect(httpGet(host, hostPorts["default/web"])).To(Equal("service default/web\n"))
		Expect(httpGet(host, hostPorts["default/shop"])).To(Equal("service default/shop\n"))

		By("rendering the host Service from the node port alone, and opening exactly the lab node ports")
		hostWeb := &corev1.Service{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.ExposedServiceName("default", "web")}, hostWeb)).To(Succeed())
		Expect(hostWeb.Labels).To(HaveKeyWithValue(labforgev1alpha1.LabelEnvironment, env))
		Expect(hostWeb.Labels).To(HaveKeyWithValue(labforgev1alpha1.LabelManagedBy, labforgev1alpha1.ManagedByValue))
		Expect(hostWeb.Annotations).To(Equal(map[string]string{render.AnnotationLabService: "default/web"}))
		Expect(hostWeb.Spec.Type).To(Equal(corev1.ServiceTypeNodePort))
		Expect(hostWeb.Spec.Ports).To(HaveLen(1))
		Expect(hostWeb.Spec.Ports[0].TargetPort).To(Equal(intstr.FromInt32(30080)))
		Expect(hostWeb.Spec.Ports[0].Name).To(Equal("p0"))
		Expect(hostWeb.Spec.ExternalIPs).To(BeEmpty())
		Expect(hostWeb.Spec.LoadBalancerIP).To(BeEmpty())
		Expect(hostWeb.OwnerReferences).To(HaveLen(1))
		Expect(hostWeb.OwnerReferences[0].Kind).To(Equal("LabEnvironment"))
		Expect(hostWeb.OwnerReferences[0].Name).To(Equal(env))
		policy := &networkingv1.NetworkPolicy{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.PolicyExposedServices}, policy)).To(Succeed())
		Expect(policy.Spec.Ingress).To(HaveLen(1))
		Expect(policy.Spec.Ingress[0].Ports).To(Equal([]networkingv1.NetworkPolicyPort{
			{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(30080))},
			{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(30443))},
		}))

		By("giving the LoadBalancer Service the student's address, inside the lab")
		Eventually(func(g Gomega) []corev1.LoadBalancerIngress {
			got, err := services.Get(ctx, "shop", metav1.GetOptions{})
			g.Expect(err).NotTo(HaveOccurred())
			return got.Status.LoadBalancer.Ingress
		}).Should(ConsistOf(HaveField("IP", host)))
		Eventually(integration.Events(ctx, k8s, "LabClaim", key.Namespace, key.Name)).Should(ContainElement(
			fmt.Sprintf("Normal/ServiceExposed: Service default/web of the lab is exposed on %s/TCP", net.JoinHostPort(host, strconv.Itoa(int(hostPorts["default/web"]))))))

		By("refusing a Service the lab's services.nodeports quota has no room for, and one beyond the cap, once, not in a loop")
		// 2 (SSH, API) + 1 (web) + 1 (shop) + 9 > 2*(2+3).
		wide := make([]int32, 9)
		for i := range wide {
			wide[i] = int32(30200 + i)
		}
		_, err = services.Create(ctx, nodePortService("wide", wide...), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(exposedCondition(ctx, key)).Should(Equal("False/NodePortQuotaExceeded"))
		_, err = services.Create(ctx, nodePortService("zeta", 30300), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(exposedMessage(ctx, key)).Should(Equal("2 of 4 NodePort and LoadBalancer Services of the lab are exposed. " +
			"Service default/wide is not exposed: the lab's services.nodeports quota has no room for its 9 ports; " +
			"Service default/zeta is not exposed: the lab exposes at most 3 Services (its template's network.maxExposedServices)"))
		Eventually(integration.Events(ctx, k8s, "LabClaim", key.Namespace, key.Name)).Should(ContainElement(
			"Warning/NodePortQuotaExceeded: 2 of 3 NodePort and LoadBalancer Services of the lab are exposed. " +
				"Service default/wide is not exposed: the lab's services.nodeports quota has no room for its 9 ports"))
		writes.Writes()
		Consistently(exposureWrites(ns), 3*time.Second, 200*time.Millisecond).Should(BeEmpty())

		By("withdrawing a Service the student deletes, which makes room under the cap")
		Expect(services.Delete(ctx, "web", metav1.DeleteOptions{})).To(Succeed())
		Eventually(exposedServices(ctx, key)).Should(ConsistOf("default/shop", "default/zeta"))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.ExposedServiceName("default", "web")}, &corev1.Service{})).
			To(Satisfy(apierrors.IsNotFound))
		Eventually(integration.Events(ctx, k8s, "LabClaim", key.Namespace, key.Name)).Should(ContainElement(
			"Normal/ServiceWithdrawn: Service default/web of the lab is no longer exposed"))
		Eventually(func() error {
			_, err := httpGetErr(host, hostPorts["default/web"])
			return err
		}).Should(HaveOccurred())
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: render.PolicyExposedServices}, policy)).To(Succeed())
		Expect(policy.Spec.Ingress[0].Ports).To(Equal([]networkingv1.NetworkPolicyPort{
			{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(30300))},
			{Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(intstr.FromInt32(30443))},
		}))

		By("refusing a Service the host's NodePort range has no room for, once, and exposing it when a Service goes")
		Expect(services.Delete(ctx, "wide", metav1.DeleteOptions{})).To(Succeed())
		Eventually(exposedCondition(ctx, key)).Should(Equal("True/Exposed"))
		// Another tenant of the host takes every port left: 15 - 4.
		other := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "other-tenant"},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "other"}}}
		for i := range 11 {
			other.Spec.Ports = append(other.Spec.Ports, corev1.ServicePort{Name: fmt.Sprintf("p%d", i), Port: int32(80 + i)})
		}
		Expect(k8s.Create(ctx, other)).To(Succeed())
		_, err = services.Create(ctx, nodePortService("pair", 30100, 30101), metav1.CreateOptions{})
		Expect(err).NotTo(HaveOccurred())
		Eventually(exposedCondition(ctx, key)).Should(Equal("False/NodePortsExhausted"))
		writes.Writes()
		Consistently(exposureWrites(ns), 3*time.Second, 200*time.Millisecond).Should(BeEmpty())
		Expect(exposedServices(ctx, key)(Default)).To(ConsistOf("default/shop", "default/zeta"))
		Expect(k8s.Delete(ctx, other)).To(Succeed())
		Expect(services.Delete(ctx, "zeta", metav1.DeleteOptions{})).To(Succeed())
		Eventually(exposedServices(ctx, key)).Should(ConsistOf("default/shop", "default/pair", "default/pair"))
		Eventually(exposedCondition(ctx, key)).Should(Equal("True/Exposed"))

		By("removing every host Service with the claim")
		Expect(k8s.Delete(ctx, getClaim(ctx, Default, key))).To(Succeed())
		Eventually(func(g Gomega) []string {
			var list corev1.ServiceList
			g.Expect(k8s.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{render.LabelExposed: "true"})).To(Succeed())
			var names []string
			for _, s := range list.Items {
				names = append(names, s.Name)
			}
			return names
		}).Should(BeEmpty())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))
		}).Should(BeTrue())
	})
})

// exposedServices lists the lab Services of the claim's status.exposed, one per port.
func exposedServices(ctx context.Context, key client.ObjectKey) func(Gomega) []string {
	return func(g Gomega) []string {
		var out []string
		for _, p := range getClaim(ctx, g, key).Status.Exposed {
			out = append(out, p.Service)
		}
		return out
	}
}

// exposedMessage returns the message of the claim's ServicesExposed condition.
func exposedMessage(ctx context.Context, key client.ObjectKey) func(Gomega) string {
	return func(g Gomega) string {
		c := meta.FindStatusCondition(getClaim(ctx, g, key).Status.Conditions, labforgev1alpha1.ConditionServicesExposed)
		g.Expect(c).NotTo(BeNil())
		return c.Message
	}
}

// httpGet returns the body of GET / at host:port, which must answer 200.
func httpGet(host string, port int32) string {
	GinkgoHelper()
	body, err := httpGetErr(host, port)
	Expect(err).NotTo(HaveOccurred())
	return body
}

func httpGetErr(host string, port int32) (string, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(host, strconv.Itoa(int(port))) + "/")
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET: %s", resp.Status)
	}
	return string(b), nil
}

func secretData(ctx context.Context, ns, name string) []byte {
	GinkgoHelper()
	var s corev1.Secret
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &s)).To(Succeed())
	return s.Data["value"]
}
