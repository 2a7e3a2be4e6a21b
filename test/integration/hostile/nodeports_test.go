package hostile_test

import (
	"context"
	"fmt"
	"sort"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/controller/labclaim"
	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/test/integration"
)

// tinyNodePortRange has room for two labs: each claimed lab's API Service takes two
// ports, SSH and the lab API.
const tinyNodePortRange = "30000-30003"

// rangeFullMessage is the claim's Ready message while it waits for ports, with the API
// server's own words in the middle.
const rangeFullMessage = "The host cluster's NodePort range (kube-apiserver --service-node-port-range) has no 2 free ports for the lab's SSH and API " +
	"(Internal error occurred: failed to allocate a nodePort: range is full); the claim waits until another lab releases its ports"

var _ = Describe("A host whose NodePort range runs out", Ordered, func() {
	var (
		np  client.Client
		clk = &integration.OffsetClock{}
	)

	BeforeAll(func(ctx context.Context) {
		// The stories below prove that freed ports wake a waiting claim by waiting less
		// than the claim's own retry interval.
		Expect(labclaim.NodePortRetryInterval).To(BeNumerically(">", 30*time.Second))
		cp, err := controlplane.Start(context.Background(), controlplane.Options{
			BinDir: integration.BinDir(), CRDPaths: integration.CRDPaths(), NodePortRange: tinyNodePortRange,
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(cp.Stop)
		np, err = client.New(cp.RESTConfig(), client.Options{Scheme: manager.NewScheme()})
		Expect(err).NotTo(HaveOccurred())
		stop, _, err := integration.StartSimulatedManager(cp.RESTConfig(), clk)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)

		Expect(np.Create(ctx, integration.MakeTemplate("ports").Obj())).To(Succeed())
		Expect(np.Create(ctx, integration.MakePool("ports", "ports").Replicas(3).Obj())).To(Succeed())
		Expect(np.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "students"}})).To(Succeed())
	}, NodeTimeout(3*time.Minute))

	ready := func(ctx context.Context, name string) {
		GinkgoHelper()
		Eventually(claimCondition(ctx, np, "students", name, "Ready")).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "LabReady")))
	}
	claim := func(ctx context.Context, name string, duration time.Duration) {
		GinkgoHelper()
		c := integration.MakeClaim("students", name).Pool("ports").Obj()
		c.Spec.Duration = &metav1.Duration{Duration: duration}
		Expect(np.Create(ctx, c)).To(Succeed())
	}
	// ports returns the NodePorts of a claim's lab, from its status and its Service,
	// checking they agree and that its kubeconfig points at them.
	ports := func(ctx context.Context, name string) []int32 {
		GinkgoHelper()
		var c labforgev1alpha1.LabClaim
		Expect(np.Get(ctx, client.ObjectKey{Namespace: "students", Name: name}, &c)).To(Succeed())
		var svc corev1.Service
		Expect(np.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(c.Status.Lab), Name: lab.APIService}, &svc)).To(Succeed())
		var got []int32
		for _, p := range svc.Spec.Ports {
			got = append(got, p.NodePort)
			if p.Name == "api" {
				Expect(c.Status.APIServerURL).To(Equal(fmt.Sprintf("https://127.0.0.1:%d", p.NodePort)))
			}
		}
		Expect(c.Status.SSH.Port).To(BeElementOf(got))
		var secret corev1.Secret
		Expect(np.Get(ctx, client.ObjectKey{Namespace: "students", Name: name + "-kubeconfig"}, &secret)).To(Succeed())
		kubeconfig, err := clientcmd.Load(secret.Data["value"])
		Expect(err).NotTo(HaveOccurred())
		Expect(kubeconfig.Clusters[kubeconfig.Contexts[kubeconfig.CurrentContext].Cluster].Server).To(Equal(c.Status.APIServerURL))
		sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
		return got
	}
	// expectWaiting checks that a claim holds a Ready lab but waits for ports, quietly: one
	// Warning event, a status that stops changing, no ports shown.
	expectWaiting := func(ctx context.Context, name string) {
		GinkgoHelper()
		Eventually(claimCondition(ctx, np, "students", name, "Ready")).Should(And(
			HaveField("Status", metav1.ConditionUnknown), HaveField("Reason", "NodePortsExhausted"), HaveField("Message", rangeFullMessage)))
		Eventually(eventReasons(ctx, np, "students", name)).Should(ConsistOf("Normal/Bound", "Warning/NodePortsExhausted"))
		var c labforgev1alpha1.LabClaim
		Expect(np.Get(ctx, client.ObjectKey{Namespace: "students", Name: name}, &c)).To(Succeed())
		Expect(meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionBound)).To(BeTrue())
		Expect(c.Status.SSH).To(BeNil())
		Expect(c.Status.APIServerURL).To(BeEmpty())
		Expect(c.Status.ObservedGeneration).To(Equal(c.Generation))
		Consistently(func(g Gomega) {
			var now labforgev1alpha1.LabClaim
			g.Expect(np.Get(ctx, client.ObjectKeyFromObject(&c), &now)).To(Succeed())
			g.Expect(now.ResourceVersion).To(Equal(c.ResourceVersion), "the waiting claim's status keeps changing")
			g.Expect(eventReasons(ctx, np, "students", name)(g)).To(ConsistOf("Normal/Bound", "Warning/NodePortsExhausted"))
		}).Should(Succeed())
	}

	It("serves claims while ports last; the next one waits with a clear reason, once", func(ctx context.Context) {
		claim(ctx, "first", time.Hour)
		ready(ctx, "first")
		claim(ctx, "second", time.Hour)
		ready(ctx, "second")
		Expect(append(ports(ctx, "first"), ports(ctx, "second")...)).To(ConsistOf(int32(30000), int32(30001), int32(30002), int32(30003)))

		claim(ctx, "third", 2*time.Hour)
		expectWaiting(ctx, "third")
		expectNoSharedNodePorts(ctx, np)
	})

	It("hands a released claim's ports to the waiting one", func(ctx context.Context) {
		freed := ports(ctx, "first")
		Expect(np.Delete(ctx, &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: "first"}})).To(Succeed())
		// Within the default 30s, well before labclaim.NodePortRetryInterval: the freed
		// ports wake the waiting claim, it does not find them by polling.
		ready(ctx, "third")
		Expect(ports(ctx, "third")).To(Equal(freed))
		Expect(eventReasons(ctx, np, "students", "third")(Default)).To(ConsistOf("Normal/Bound", "Warning/NodePortsExhausted", "Normal/HandedOver"))
		expectNoSharedNodePorts(ctx, np)
	})

	It("hands an expired claim's ports to the waiting one", func(ctx context.Context) {
		claim(ctx, "fourth", 2*time.Hour)
		expectWaiting(ctx, "fourth")
		freed := ports(ctx, "second")

		By("moving the clock past the second claim's hour, but not the others' two")
		clk.Set(90 * time.Minute)
		DeferCleanup(func() { clk.Set(0) })
		second := &labforgev1alpha1.LabClaim{}
		Expect(np.Get(ctx, client.ObjectKey{Namespace: "students", Name: "second"}, second)).To(Succeed())
		patch := client.MergeFrom(second.DeepCopy())
		second.Annotations = map[string]string{"nudge": "1"}
		Expect(np.Patch(ctx, second, patch)).To(Succeed())
		Eventually(claimCondition(ctx, np, "students", "second", "Expired")).Should(HaveField("Status", metav1.ConditionTrue))

		ready(ctx, "fourth") // woken, not polled, as above
		Expect(ports(ctx, "fourth")).To(Equal(freed))
		expectNoSharedNodePorts(ctx, np)
		Expect(meta.IsStatusConditionTrue(getClaimFrom(ctx, np, "students", "third").Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue())
	})
})

// expectNoSharedNodePorts checks that no NodePort is in two Services, or twice in one.
func expectNoSharedNodePorts(ctx context.Context, c client.Client) {
	GinkgoHelper()
	var services corev1.ServiceList
	Expect(c.List(ctx, &services)).To(Succeed())
	owner := map[int32]string{}
	for _, svc := range services.Items {
		for _, p := range svc.Spec.Ports {
			if p.NodePort == 0 {
				continue
			}
			where := svc.Namespace + "/" + svc.Name + ":" + p.Name
			Expect(owner).NotTo(HaveKey(p.NodePort), "NodePort %d is in %s and %s", p.NodePort, owner[p.NodePort], where)
			owner[p.NodePort] = where
		}
	}
}

func getClaimFrom(ctx context.Context, c client.Client, ns, name string) *labforgev1alpha1.LabClaim {
	GinkgoHelper()
	var claim labforgev1alpha1.LabClaim
	Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &claim)).To(Succeed())
	return &claim
}
