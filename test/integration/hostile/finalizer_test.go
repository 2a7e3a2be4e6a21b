package hostile_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/controller/labclaim"
)

var _ = Describe("A student who strips labforge's finalizer from a claim and deletes it", func() {
	It("does not keep the lab: a lab whose claim is gone is deleted all the same", func(ctx context.Context) {
		Expect(k8s.Create(ctx, newTemplate("strip"))).To(Succeed())
		Expect(k8s.Create(ctx, newPool("strip", "strip", 1))).To(Succeed())
		grace := student(ctx, "grace", "students-grace")
		Expect(grace.Create(ctx, newClaim("students-grace", "keep", "strip"))).To(Succeed())
		Eventually(claimCondition(ctx, grace, "students-grace", "keep", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		held := getClaim(ctx, "students-grace", "keep")
		Expect(held.Finalizers).To(ContainElement(labclaim.Finalizer))

		By("removing the finalizer and deleting the claim before the operator can put it back")
		Eventually(func(g Gomega) {
			var c labforgev1alpha1.LabClaim
			err := grace.Get(ctx, client.ObjectKeyFromObject(held), &c)
			if apierrors.IsNotFound(err) {
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			if len(c.Finalizers) > 0 {
				c.Finalizers = nil
				g.Expect(grace.Update(ctx, &c)).To(Succeed())
			}
			// Only the claim as she left it may go: if the operator put its finalizer
			// back first, the delete conflicts and she tries again.
			err = grace.Delete(ctx, &c, client.Preconditions{ResourceVersion: &c.ResourceVersion})
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(apierrors.IsNotFound(grace.Get(ctx, client.ObjectKeyFromObject(held), &c))).To(BeTrue())
		}).Should(Succeed())

		By("deleting the lab the claim held, and giving the pool its capacity back")
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: held.Status.Lab}, &labforgev1alpha1.LabEnvironment{}))
		}).WithTimeout(60e9).Should(BeTrue())
		Eventually(poolStatus(ctx, k8s, "strip")).Should(HaveField("BoundReplicas", int32(0)))
	})
})
