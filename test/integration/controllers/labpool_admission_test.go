package controllers_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/integration"
)

var _ = Describe("A pool admitting claims from some namespaces only", func() {
	It("counts as waiting only the claims of the namespaces it admits, also when a namespace stops being admitted", func(ctx context.Context) {
		const template, pool, label = "admit-count", "admit-count", "labforge.test/admit-count"
		admitted := map[string]string{label: "yes"}
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		p := integration.MakePool(pool, template).Replicas(0).MaxLabs(100).Obj()
		// No room for a lab: every claim the pool admits waits, and the count stays put.
		p.Spec.MaxLabs = 0
		p.Spec.ClaimNamespaceSelector = &metav1.LabelSelector{MatchLabels: admitted}
		Expect(k8s.Create(ctx, p)).To(Succeed())
		createNamespace(ctx, "students-admit-a", admitted)
		createNamespace(ctx, "students-admit-b", admitted)
		createNamespace(ctx, "students-admit-c", nil)
		Expect(k8s.Create(ctx, integration.MakeClaim("students-admit-a", "alice").Pool(pool).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakeClaim("students-admit-b", "bob").Pool(pool).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakeClaim("students-admit-c", "carol").Pool(pool).Obj())).To(Succeed())

		Eventually(claimCondition(ctx, "students-admit-c", "carol", labforgev1alpha1.ConditionStalled)).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "NamespaceNotAllowed")))
		Eventually(claimCondition(ctx, "students-admit-b", "bob", labforgev1alpha1.ConditionReady)).Should(HaveField("Reason", labforgev1alpha1.ReasonWaitingForLab))
		Eventually(poolStatus(ctx, pool)).Should(And(HaveField("WaitingClaims", int32(2)), HaveField("Replicas", int32(0)),
			HaveField("BoundReplicas", int32(0))))

		By("taking namespace b out of the pool's selector, and the pool looking again (its template changed)")
		var ns corev1.Namespace
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "students-admit-b"}, &ns)).To(Succeed())
		nsPatch := client.MergeFrom(ns.DeepCopy())
		delete(ns.Labels, label)
		Expect(k8s.Patch(ctx, &ns, nsPatch)).To(Succeed())
		var tmpl labforgev1alpha1.LabTemplate
		Expect(k8s.Get(ctx, client.ObjectKey{Name: template}, &tmpl)).To(Succeed())
		tmplPatch := client.MergeFrom(tmpl.DeepCopy())
		tmpl.Spec.Description = "Edited to wake the pool, not its claims."
		Expect(k8s.Patch(ctx, &tmpl, tmplPatch)).To(Succeed())

		Eventually(poolStatus(ctx, pool)).Should(HaveField("WaitingClaims", int32(1)), "bob's claim still counts as waiting")
		Consistently(poolStatus(ctx, pool)).WithTimeout(2 * time.Second).Should(And(HaveField("WaitingClaims", int32(1)), HaveField("Replicas", int32(0))))

		for _, c := range []client.Object{integration.MakeClaim("students-admit-a", "alice").Pool(pool).Obj(), integration.MakeClaim("students-admit-b", "bob").Pool(pool).Obj(),
			integration.MakeClaim("students-admit-c", "carol").Pool(pool).Obj()} {
			Expect(k8s.Delete(ctx, c)).To(Succeed())
		}
		Expect(k8s.Delete(ctx, p)).To(Succeed())
		Expect(k8s.Delete(ctx, &tmpl)).To(Succeed())
	})
})
