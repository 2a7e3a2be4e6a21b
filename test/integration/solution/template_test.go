package solution_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/test/integration"
)

var _ = Describe("An admin writing a template's checks", func() {
	It("has sizes and shapes refused by the API server, and a bad expression refused on the template's status with the compiler's error", func(ctx context.Context) {
		By("the API server refusing two checks of one name, a kind with a resource, and a name with a selector")
		tmpl := integration.MakeTemplate("shapes").Obj()
		both := webCheck
		both.Resource.Resource = "deployments"
		both.Resource.LabelSelector = &metav1.LabelSelector{}
		tmpl.Spec.Checks = []labforgev1alpha1.SolutionCheck{webCheck, both}
		err := k8s.Create(ctx, tmpl)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(Equal(`LabTemplate.labforge.dev "shapes" is invalid: [spec.checks[1]: Duplicate value: {"name":"web-scaled"}, ` +
			`spec.checks[1].resource: Invalid value: exactly one of kind and resource must be set, ` +
			`spec.checks[1].resource: Invalid value: name and labelSelector are exclusive]`))

		By("the operator refusing an expression that does not compile")
		stop, err := integration.StartManager(context.Background(), cp.RESTConfig(), manager.Options{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)
		tmpl = integration.MakeTemplate("typo").Obj()
		typo := webCheck
		typo.Expression = "objekt.spec.replicas == 3"
		tmpl.Spec.Checks = []labforgev1alpha1.SolutionCheck{typo}
		Expect(k8s.Create(ctx, tmpl)).To(Succeed())
		Eventually(func(g Gomega) *metav1.Condition {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "typo"}, tmpl)).To(Succeed())
			return meta.FindStatusCondition(tmpl.Status.Conditions, labforgev1alpha1.ConditionReady)
		}).Should(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", labforgev1alpha1.ReasonInvalidTemplate),
			HaveField("Message", "check web-scaled: the expression does not compile: ERROR: <input>:1:1: undeclared reference to 'objekt' (in container '')\n"+
				" | objekt.spec.replicas == 3\n | ^"),
		))

		By("accepting it once fixed")
		tmpl.Spec.Checks[0].Expression = webCheck.Expression
		Expect(k8s.Update(ctx, tmpl)).To(Succeed())
		Eventually(func(g Gomega) bool {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: "typo"}, tmpl)).To(Succeed())
			return meta.IsStatusConditionTrue(tmpl.Status.Conditions, labforgev1alpha1.ConditionReady)
		}).Should(BeTrue())
	}, SpecTimeout(2*time.Minute))
})
