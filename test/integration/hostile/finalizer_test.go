package hostile_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/integration"
)

var _ = Describe("A student who holds her deleted claim with a finalizer of her own", func() {
	It("does not keep the lab: the lab goes when the claim's deletion starts", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("strip").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("strip", "strip").Replicas(1).Obj())).To(Succeed())
		grace := student(ctx, "grace", "students-grace")
		claim := integration.MakeClaim("students-grace", "keep").Pool("strip").Obj()
		claim.Finalizers = []string{"example.com/keep"}
		Expect(grace.Create(ctx, claim)).To(Succeed())
		Eventually(claimCondition(ctx, grace, "students-grace", "keep", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		held := getClaim(ctx, "students-grace", "keep")
		Expect(held.Finalizers).To(Equal([]string{"example.com/keep"}), "labforge adds no finalizer of its own")

		By("deleting the claim, which her finalizer holds")
		Expect(grace.Delete(ctx, held)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: held.Status.Lab}, &labforgev1alpha1.LabEnvironment{}))
		}).WithTimeout(60e9).Should(BeTrue())
		Eventually(poolStatus(ctx, k8s, "strip")).Should(HaveField("BoundReplicas", int32(0)))
		Expect(getClaim(ctx, "students-grace", "keep").DeletionTimestamp).NotTo(BeNil())

		By("letting the claim go once she removes her finalizer")
		Eventually(func(g Gomega) {
			var c labforgev1alpha1.LabClaim
			g.Expect(grace.Get(ctx, client.ObjectKeyFromObject(held), &c)).To(Succeed())
			c.Finalizers = nil
			g.Expect(grace.Update(ctx, &c)).To(Succeed())
		}).Should(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(held), &labforgev1alpha1.LabClaim{}))
		}).Should(BeTrue())
	})
})
