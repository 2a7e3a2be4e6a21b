package hostile_test

import (
	"context"
	"sort"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/integration"
)

// labsOfTemplate lists the names of the labs of template, in any state.
func labsOfTemplate(ctx context.Context, template string) func(Gomega) []string {
	return func(g Gomega) []string {
		var envs labforgev1alpha1.LabEnvironmentList
		g.Expect(k8s.List(ctx, &envs)).To(Succeed())
		names := []string{}
		for _, e := range envs.Items {
			if e.Spec.TemplateRef.Name == template {
				names = append(names, e.Name)
			}
		}
		sort.Strings(names)
		return names
	}
}

// setClaims sets the template's spec.claims, as an admin would.
func setClaims(ctx context.Context, template string, claims labforgev1alpha1.TemplateClaims) {
	GinkgoHelper()
	Eventually(func(g Gomega) {
		var t labforgev1alpha1.LabTemplate
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: template}, &t)).To(Succeed())
		t.Spec.Claims = claims
		g.Expect(k8s.Update(ctx, &t)).To(Succeed())
	}).Should(Succeed())
}

var _ = Describe("A namespace editor claiming a template directly", func() {
	It("is refused until the template admits the namespace, and boots no lab meanwhile", func(ctx context.Context) {
		const ns = "students-closed"
		Expect(k8s.Create(ctx, integration.MakeTemplate("closed").Obj())).To(Succeed())
		mallory := student(ctx, "mallory-closed", ns)
		Expect(mallory.Create(ctx, integration.MakeClaim(ns, "lab").Template("closed").Obj())).To(Succeed())

		By("a template that says nothing about claims admits none")
		refusal := func(msg string) types.GomegaMatcher {
			return And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "NamespaceNotAllowed"), HaveField("Message", msg))
		}
		none := "LabTemplate closed admits claims from no namespace (spec.claims.namespaceSelector is unset)"
		Eventually(claimCondition(ctx, mallory, ns, "lab", "Ready")).Should(refusal(none))
		Expect(claimCondition(ctx, mallory, ns, "lab", "Stalled")(Default)).To(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "NamespaceNotAllowed"), HaveField("Message", none)))
		Consistently(labsOfTemplate(ctx, "closed")).Should(BeEmpty())

		By("a selector that admits other namespaces still refuses, and the claim gets one Warning event in all")
		setClaims(ctx, "closed", labforgev1alpha1.TemplateClaims{
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"classroom": "k8s-101"}}})
		Eventually(claimCondition(ctx, mallory, ns, "lab", "Ready")).Should(
			refusal("LabTemplate closed does not admit claims from namespace students-closed"))
		Consistently(labsOfTemplate(ctx, "closed")).Should(BeEmpty())
		Expect(eventReasons(ctx, k8s, ns, "lab")(Default)).To(Equal([]string{"Warning/NamespaceNotAllowed"}))

		By("labelling the namespace into the classroom admits the claim, which gets its lab")
		Eventually(func(g Gomega) {
			var n corev1.Namespace
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: ns}, &n)).To(Succeed())
			n.Labels["classroom"] = "k8s-101"
			g.Expect(k8s.Update(ctx, &n)).To(Succeed())
		}).Should(Succeed())
		Eventually(claimCondition(ctx, mallory, ns, "lab", "Ready"), "2m").Should(HaveField("Status", metav1.ConditionTrue))
		Expect(labsOfTemplate(ctx, "closed")(Default)).To(Equal([]string{getClaim(ctx, ns, "lab").Status.Lab}))
		Expect(meta.FindStatusCondition(getClaim(ctx, ns, "lab").Status.Conditions, "Stalled")).To(BeNil())
	})

	It("waits beyond the template's caps, in line, and is served when a lab frees", func(ctx context.Context) {
		const ns = "students-capped"
		t := integration.MakeTemplate("capped").Obj()
		t.Spec.Claims = labforgev1alpha1.TemplateClaims{NamespaceSelector: &metav1.LabelSelector{}, MaxBooting: 1, MaxLabs: 1}
		Expect(k8s.Create(ctx, t)).To(Succeed())
		carol := student(ctx, "carol-capped", ns)

		By("two claims in quick succession on caps of 1")
		Expect(carol.Create(ctx, integration.MakeClaim(ns, "a-first").Template("capped").Obj())).To(Succeed())
		Expect(carol.Create(ctx, integration.MakeClaim(ns, "b-second").Template("capped").Obj())).To(Succeed())
		Eventually(func(g Gomega) string { return getClaim(ctx, ns, "a-first").Status.Lab }).ShouldNot(BeEmpty())
		first := getClaim(ctx, ns, "a-first").Status.Lab
		Eventually(claimCondition(ctx, carol, ns, "b-second", "Ready")).Should(And(
			HaveField("Status", metav1.ConditionUnknown), HaveField("Reason", "WaitingForLab"),
			HaveField("Message", "Waiting for a lab of LabTemplate capped: its claims hold 1 of at most 1 labs (spec.claims.maxLabs); number 1 in line")))
		Expect(getClaim(ctx, ns, "b-second").Status.QueuePosition).To(Equal(int32(1)))
		Consistently(labsOfTemplate(ctx, "capped")).Should(Equal([]string{first}))
		Eventually(claimCondition(ctx, carol, ns, "a-first", "Ready"), "2m").Should(HaveField("Status", metav1.ConditionTrue))
		Expect(getClaim(ctx, ns, "b-second").Status.Lab).To(BeEmpty())

		By("releasing the first claim's lab")
		Expect(carol.Delete(ctx, getClaim(ctx, ns, "a-first"))).To(Succeed())
		Eventually(claimCondition(ctx, carol, ns, "b-second", "Ready"), "2m").Should(HaveField("Status", metav1.ConditionTrue))
		second := getClaim(ctx, ns, "b-second").Status.Lab
		Expect(second).NotTo(Equal(first))
		Expect(labsOfTemplate(ctx, "capped")(Default)).To(Equal([]string{second}))
		Expect(getClaim(ctx, ns, "b-second").Status.QueuePosition).To(BeZero())
	})
})

var _ = Describe("An object-count ResourceQuota on LabClaims", func() {
	It("refuses a namespace's claim beyond the count, as docs/operations.md says", func(ctx context.Context) {
		const ns = "students-quota"
		dave := student(ctx, "dave-quota", ns)
		Expect(k8s.Create(ctx, &corev1.ResourceQuota{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "labclaims"},
			Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"count/labclaims.labforge.dev": resource.MustParse("1")}},
		})).To(Succeed())
		// kube-controller-manager's quota controller must have counted the namespace first;
		// until then the API server refuses every claim there.
		Eventually(func(g Gomega) corev1.ResourceList {
			var q corev1.ResourceQuota
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "labclaims"}, &q)).To(Succeed())
			return q.Status.Used
		}).Should(HaveKey(corev1.ResourceName("count/labclaims.labforge.dev")))

		Expect(dave.Create(ctx, integration.MakeClaim(ns, "one").Pool("no-such-pool").Obj())).To(Succeed())
		err := dave.Create(ctx, integration.MakeClaim(ns, "two").Pool("no-such-pool").Obj())
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "creating a second claim: %v", err)
		Expect(err.Error()).To(Equal(`labclaims.labforge.dev "two" is forbidden: exceeded quota: labclaims, ` +
			`requested: count/labclaims.labforge.dev=1, used: count/labclaims.labforge.dev=1, limited: count/labclaims.labforge.dev=1`))
	})
})
