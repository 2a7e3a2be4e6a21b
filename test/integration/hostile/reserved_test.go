package hostile_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

// world is what a student has from labforge, to check later that nothing of it moved.
type world struct {
	claimStatus   labforgev1alpha1.LabClaimStatus
	env           labforgev1alpha1.LabEnvironment
	kubeconfig    corev1.Secret
	accessService corev1.Service
}

func worldOf(ctx context.Context, g Gomega, ns, claim string) world {
	var w world
	var c labforgev1alpha1.LabClaim
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: claim}, &c)).To(Succeed())
	w.claimStatus = c.Status
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: c.Status.Lab}, &w.env)).To(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: claim + "-kubeconfig"}, &w.kubeconfig)).To(Succeed())
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(c.Status.Lab), Name: lab.APIService}, &w.accessService)).To(Succeed())
	return w
}

// expectSameWorld checks that nothing a student was given changed: the claim's status, the
// lab's binding, labels and annotations, the kubeconfig Secret (not even rewritten) and the
// ports.
func expectSameWorld(g Gomega, got, want world) {
	g.Expect(got.claimStatus.Lab).To(Equal(want.claimStatus.Lab))
	g.Expect(got.claimStatus.SSH).To(Equal(want.claimStatus.SSH))
	g.Expect(got.claimStatus.ExpiresAt.Equal(want.claimStatus.ExpiresAt)).To(BeTrue())
	g.Expect(meta.IsStatusConditionTrue(got.claimStatus.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue())
	g.Expect(got.env.UID).To(Equal(want.env.UID))
	g.Expect(got.env.Spec).To(Equal(want.env.Spec))
	g.Expect(got.env.Labels).To(Equal(want.env.Labels))
	g.Expect(got.env.Annotations).To(Equal(want.env.Annotations))
	g.Expect(got.kubeconfig.ResourceVersion).To(Equal(want.kubeconfig.ResourceVersion))
	g.Expect(got.accessService.Spec.Ports).To(Equal(want.accessService.Spec.Ports))
}

var _ = Describe("A claim dressed up with labforge's reserved labels and annotations", func() {
	It("gets a lab of its own, leaves the other student's lab, Secrets and claim alone, and passes none of it on", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("reserved").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("reserved", "reserved").Replicas(2).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakeTemplate("decoy").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("decoy", "decoy").Replicas(1).Obj())).To(Succeed())
		alice := student(ctx, "alice", "students-alice")
		mallory := student(ctx, "mallory", "students-mallory")

		Expect(alice.Create(ctx, integration.MakeClaim("students-alice", "lab").Pool("reserved").Obj())).To(Succeed())
		Eventually(claimCondition(ctx, alice, "students-alice", "lab", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		alicesWorld := worldOf(ctx, Default, "students-alice", "lab")
		alicesLab := alicesWorld.claimStatus.Lab

		By("claiming, under the same name, with every reserved key pointing at Alice's lab, another pool and a failed boot")
		spoof := integration.MakeClaim("students-mallory", "lab").Pool("reserved").Obj()
		spoof.Labels = map[string]string{
			labforgev1alpha1.LabelEnvironment:      alicesLab,
			labforgev1alpha1.LabelPool:             "decoy",
			labforgev1alpha1.LabelTemplate:         "decoy",
			labforgev1alpha1.LabelPrefix + "claim": "alice",
			labforgev1alpha1.LabelManagedBy:        labforgev1alpha1.ManagedByValue,
		}
		spoof.Annotations = map[string]string{
			"labforge.dev/lab":                   alicesLab,
			"labforge.dev/expires-at":            "2099-01-01T00:00:00Z",
			"labforge.dev/template-generation":   "99",
			simulator.BootstrapFailureAnnotation: "mallory was here",
			"kubernetes.io/egress-bandwidth":     "1k",
		}
		Expect(mallory.Create(ctx, spoof)).To(Succeed())
		Eventually(claimCondition(ctx, mallory, "students-mallory", "lab", "Ready")).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "LabReady")))

		m := getClaim(ctx, "students-mallory", "lab")
		Expect(m.Status.Lab).NotTo(Equal(alicesLab))
		Expect(m.Status.Lab).To(MatchRegexp(`^reserved-\d+$`), "served from the pool the spec names, not the label's")
		Expect(m.Status.ExpiresAt.Sub(m.Status.BoundTime.Time)).To(Equal(2*time.Hour), "the template's default, not the annotation's 2099")
		Expect(m.Labels).To(Equal(spoof.Labels), "the student's own metadata is left as written")
		Expect(m.Annotations).To(Equal(spoof.Annotations))

		By("binding Mallory's own lab, built and labelled from the pool alone, and booting it despite the failure annotation")
		var env labforgev1alpha1.LabEnvironment
		Expect(k8s.Get(ctx, client.ObjectKey{Name: m.Status.Lab}, &env)).To(Succeed())
		Expect(env.Spec.ClaimRef).To(Equal(&labforgev1alpha1.ClaimReference{Namespace: "students-mallory", Name: "lab", UID: m.UID}))
		Expect(env.Spec.PoolRef).To(Equal(&labforgev1alpha1.LocalObjectReference{Name: "reserved"}))
		Expect(env.Labels).To(Equal(map[string]string{
			labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue,
			labforgev1alpha1.LabelPool:      "reserved",
			labforgev1alpha1.LabelTemplate:  "reserved",
		}))
		Expect(env.Annotations).To(BeEmpty())
		Expect(meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue())

		By("writing Mallory's Secrets into her namespace only, with labforge's metadata alone")
		var kubeconfig corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students-mallory", Name: "lab-kubeconfig"}, &kubeconfig)).To(Succeed())
		Expect(kubeconfig.Labels).To(Equal(map[string]string{
			labforgev1alpha1.LabelManagedBy:                  labforgev1alpha1.ManagedByValue,
			labforgev1alpha1.LabelPrefix + "claim":           "lab",
			labforgev1alpha1.LabelPrefix + "claim-namespace": "students-mallory",
		}))
		var key corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: manager.DefaultOperatorNamespace, Name: ownership.KeySecret}, &key)).To(Succeed())
		prover, err := ownership.NewProver(key.Data[ownership.KeySecretKey])
		Expect(err).NotTo(HaveOccurred())
		Expect(kubeconfig.Annotations).To(Equal(map[string]string{
			"labforge.dev/expires-at":        m.Status.ExpiresAt.UTC().Format(time.RFC3339),
			"labforge.dev/lab":               m.Status.Lab,
			"labforge.dev/lab-namespace-uid": string(env.Status.NamespaceUID),
			"labforge.dev/server":            m.Status.APIServerURL,
			"labforge.dev/proof":             prover.Proof(ownership.ClaimSecret("students-mallory", "lab-kubeconfig", m.Name, m.UID)),
		}))
		Expect(kubeconfig.Data["value"]).NotTo(Equal(alicesWorld.kubeconfig.Data["value"]))

		By("carrying none of the claim's keys and values on anything in Mallory's lab namespace")
		carried := map[string]string{}
		for k, v := range spoof.Labels {
			if k != labforgev1alpha1.LabelManagedBy { // labforge's own value, on all of its objects
				carried[k] = v
			}
		}
		for k, v := range spoof.Annotations {
			carried[k] = v
		}
		labNS := lab.Namespace(m.Status.Lab)
		var objects []client.Object
		var ns corev1.Namespace
		Expect(k8s.Get(ctx, client.ObjectKey{Name: labNS}, &ns)).To(Succeed())
		objects = append(objects, &ns, &env, &kubeconfig)
		for _, list := range []client.ObjectList{
			&corev1.SecretList{}, &corev1.ConfigMapList{}, &corev1.ServiceList{}, &networkingv1.NetworkPolicyList{},
			&corev1.ResourceQuotaList{}, &corev1.LimitRangeList{}, &kubevirtv1.VirtualMachineList{}, &kubevirtv1.VirtualMachineInstanceList{},
		} {
			Expect(k8s.List(ctx, list, client.InNamespace(labNS))).To(Succeed())
			Expect(meta.EachListItem(list, func(o runtime.Object) error {
				objects = append(objects, o.(client.Object))
				return nil
			})).To(Succeed())
		}
		Expect(len(objects)).To(BeNumerically(">=", 12), "the lab namespace looks empty")
		for _, o := range objects {
			for k, v := range carried {
				Expect(o.GetLabels()).NotTo(HaveKeyWithValue(k, v), "%T %s carries the claim's label %s", o, o.GetName(), k)
				Expect(o.GetAnnotations()).NotTo(HaveKeyWithValue(k, v), "%T %s carries the claim's annotation %s", o, o.GetName(), k)
			}
			if vm, ok := o.(*kubevirtv1.VirtualMachine); ok {
				Expect(vm.Spec.Template.ObjectMeta.Annotations).NotTo(HaveKey("kubernetes.io/egress-bandwidth"), "VM %s got the claim's bandwidth", vm.Name)
			}
		}

		By("ignoring the keys silently: the claim's one event is the usual one")
		Eventually(eventReasons(ctx, k8s, "students-mallory", "lab")).Should(Equal([]string{"Normal/HandedOver"}))

		By("leaving Alice's claim, lab, Secret and ports exactly as they were")
		Consistently(func(g Gomega) {
			expectSameWorld(g, worldOf(ctx, g, "students-alice", "lab"), alicesWorld)
			g.Expect(eventReasons(ctx, k8s, "students-mallory", "lab")(g)).To(Equal([]string{"Normal/HandedOver"}))
		}).Should(Succeed())
		Expect(poolStatus(ctx, k8s, "decoy")(Default)).To(HaveField("BoundReplicas", int32(0)))
	})
})

var _ = Describe("A claim reaching into another namespace", func() {
	It("has no field to do it with: a namespace, a Secret or a lab of its choosing is refused or dropped, and it is served in its own namespace", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("reach").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("reach", "reach").Replicas(2).Obj())).To(Succeed())
		bob := student(ctx, "bob", "students-bob")
		eve := student(ctx, "eve", "students-eve")
		Expect(bob.Create(ctx, integration.MakeClaim("students-bob", "mine").Pool("reach").Obj())).To(Succeed())
		Eventually(claimCondition(ctx, bob, "students-bob", "mine", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		bobsWorld := worldOf(ctx, Default, "students-bob", "mine")

		reach := func() *unstructured.Unstructured {
			return &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "labforge.dev/v1alpha1", "kind": "LabClaim",
				"metadata": map[string]any{"namespace": "students-eve", "name": "reach"},
				"spec": map[string]any{
					"poolRef":             map[string]any{"name": "reach", "namespace": "students-bob"},
					"ssh":                 map[string]any{"authorizedKeys": []any{integration.StudentKey}},
					"kubeconfigSecretRef": map[string]any{"namespace": "students-bob", "name": "mine-kubeconfig"},
					"lab":                 bobsWorld.claimStatus.Lab,
				},
				"status": map[string]any{
					"lab": bobsWorld.claimStatus.Lab, "kubeconfigSecretName": "mine-kubeconfig",
					"boundTime": "2020-01-01T00:00:00Z", "expiresAt": "2099-01-01T00:00:00Z",
				},
			}}
		}

		By("being refused under strict field validation, naming every field that does not exist")
		err := eve.Create(ctx, reach(), client.FieldValidation("Strict"))
		Expect(apierrors.IsBadRequest(err)).To(BeTrue(), "got %v", err)
		Expect(err.Error()).To(And(
			ContainSubstring(`unknown field "spec.poolRef.namespace"`),
			ContainSubstring(`unknown field "spec.kubeconfigSecretRef"`),
			ContainSubstring(`unknown field "spec.lab"`)))
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: "students-eve", Name: "reach"}, &labforgev1alpha1.LabClaim{}))).To(BeTrue())

		By("having the fields dropped, and the status it wrote ignored, when validation is lax")
		Expect(eve.Create(ctx, reach(), client.FieldValidation("Ignore"))).To(Succeed())
		stored := &unstructured.Unstructured{}
		stored.SetGroupVersionKind(labforgev1alpha1.GroupVersion.WithKind("LabClaim"))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students-eve", Name: "reach"}, stored)).To(Succeed())
		Expect(stored.Object["spec"]).To(Equal(map[string]any{
			"poolRef": map[string]any{"name": "reach"},
			"ssh":     map[string]any{"authorizedKeys": []any{integration.StudentKey}},
		}))

		By("serving Eve a lab of her own, with her Secret in her namespace")
		Eventually(claimCondition(ctx, eve, "students-eve", "reach", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		e := getClaim(ctx, "students-eve", "reach")
		Expect(e.Status.Lab).NotTo(Equal(bobsWorld.claimStatus.Lab))
		Expect(e.Status.KubeconfigSecretName).To(Equal("reach-kubeconfig"))
		Expect(e.Status.ExpiresAt.Sub(e.Status.BoundTime.Time)).To(Equal(2 * time.Hour))
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students-eve", Name: "reach-kubeconfig"}, &corev1.Secret{})).To(Succeed())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: "students-bob", Name: "reach-kubeconfig"}, &corev1.Secret{}))).To(BeTrue())
		Consistently(func(g Gomega) { expectSameWorld(g, worldOf(ctx, g, "students-bob", "mine"), bobsWorld) }).Should(Succeed())
	})
})

var _ = Describe("A claim asking for longer than the template allows", func() {
	It("is refused without taking a lab, and an extension past the maximum later is refused visibly", func(ctx context.Context) {
		t := integration.MakeTemplate("short").Obj()
		t.Spec.Lifetime = labforgev1alpha1.Lifetime{Default: metav1.Duration{Duration: 30 * time.Minute}, Maximum: metav1.Duration{Duration: time.Hour}}
		Expect(k8s.Create(ctx, t)).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("short", "short").Replicas(1).Obj())).To(Succeed())
		Eventually(poolStatus(ctx, k8s, "short")).Should(HaveField("ReadyReplicas", int32(1)))
		frank := student(ctx, "frank", "students-frank")

		greedy := integration.MakeClaim("students-frank", "greedy").Pool("short").Obj()
		greedy.Spec.Duration = &metav1.Duration{Duration: 2 * time.Hour}
		Expect(frank.Create(ctx, greedy)).To(Succeed())
		Eventually(claimCondition(ctx, frank, "students-frank", "greedy", "Ready")).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "DurationTooLong"),
			HaveField("Message", "spec.duration 2h0m0s is longer than LabTemplate short allows (lifetime.maximum 1h0m0s)")))
		Eventually(claimCondition(ctx, frank, "students-frank", "greedy", "Stalled")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(eventReasons(ctx, k8s, "students-frank", "greedy")).Should(Equal([]string{"Warning/DurationTooLong"}))
		Consistently(func(g Gomega) {
			g.Expect(poolStatus(ctx, k8s, "short")(g)).To(And(HaveField("BoundReplicas", int32(0)), HaveField("ReadyReplicas", int32(1))))
			g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: "students-frank", Name: "greedy-kubeconfig"}, &corev1.Secret{}))).To(BeTrue())
			g.Expect(getClaim(ctx, "students-frank", "greedy").Status.Lab).To(BeEmpty())
		}).Should(Succeed())

		By("serving a claim within the maximum, then refusing its extension past it")
		modest := integration.MakeClaim("students-frank", "modest").Pool("short").Obj()
		modest.Spec.Duration = &metav1.Duration{Duration: 45 * time.Minute}
		Expect(frank.Create(ctx, modest)).To(Succeed())
		Eventually(claimCondition(ctx, frank, "students-frank", "modest", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		before := getClaim(ctx, "students-frank", "modest")
		Expect(before.Status.ExpiresAt.Sub(before.Status.BoundTime.Time)).To(Equal(45 * time.Minute))
		var kubeconfig corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students-frank", Name: "modest-kubeconfig"}, &kubeconfig)).To(Succeed())

		patch := client.MergeFrom(before.DeepCopy())
		extended := before.DeepCopy()
		extended.Spec.Duration = &metav1.Duration{Duration: 3 * time.Hour}
		Expect(frank.Patch(ctx, extended, patch)).To(Succeed())
		Eventually(func(g Gomega) int64 {
			return getClaim(ctx, "students-frank", "modest").Status.ObservedGeneration
		}).Should(Equal(extended.Generation))
		Consistently(func(g Gomega) {
			c := getClaim(ctx, "students-frank", "modest")
			g.Expect(c.Status.ExpiresAt.Equal(before.Status.ExpiresAt)).To(BeTrue(), "expiry moved to %v", c.Status.ExpiresAt)
			g.Expect(meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue())
			var s corev1.Secret
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&kubeconfig), &s)).To(Succeed())
			g.Expect(s.ResourceVersion).To(Equal(kubeconfig.ResourceVersion), "the kubeconfig was re-issued")
		}).Should(Succeed())
		refused := meta.FindStatusCondition(getClaim(ctx, "students-frank", "modest").Status.Conditions, labforgev1alpha1.ConditionExtensionRefused)
		Expect(refused).NotTo(BeNil())
		Expect(refused.Status).To(Equal(metav1.ConditionTrue))
		Expect(refused.Reason).To(Equal("DurationTooLong"))
		Expect(refused.Message).To(Equal("spec.duration 3h0m0s is longer than LabTemplate short allowed when the claim was bound (lifetime.maximum 1h0m0s); " +
			"the claim keeps its duration of 45m0s and expires at " + before.Status.ExpiresAt.UTC().Format(time.RFC3339)))
		Eventually(eventReasons(ctx, k8s, "students-frank", "modest")).Should(ContainElement("Warning/DurationTooLong"))

		By("clearing the refusal once the duration is within the maximum again")
		current := getClaim(ctx, "students-frank", "modest")
		back := current.DeepCopy()
		back.Spec.Duration = &metav1.Duration{Duration: 50 * time.Minute}
		Expect(frank.Patch(ctx, back, client.MergeFrom(current))).To(Succeed())
		Eventually(func() *metav1.Condition {
			return meta.FindStatusCondition(getClaim(ctx, "students-frank", "modest").Status.Conditions, labforgev1alpha1.ConditionExtensionRefused)
		}).Should(BeNil())
		Expect(getClaim(ctx, "students-frank", "modest").Status.ExpiresAt.Sub(before.Status.BoundTime.Time)).To(Equal(50 * time.Minute))
	})
})
