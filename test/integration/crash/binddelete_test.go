package crash_test

import (
	"context"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/integration"
)

// bindBeforeDelete holds the first delete of one of a pool's labs the operator sends
// until a claim has bound that lab, then sends it as it was planned: the race of a pool
// that planned a scale-down from its cache and a claim that took the lab meanwhile, with
// the window held open.
type bindBeforeDelete struct {
	pool string
	// bind runs while the delete is held; it returns once the lab is bound.
	bind func(lab string)

	mu   sync.Mutex
	done bool
	// lab and err are the held delete's lab and what the API server answered it.
	lab string
	err error
}

func (b *bindBeforeDelete) wrap(c client.Client) client.Client {
	return interceptor.NewClient(watchless{c}, interceptor.Funcs{
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			env, ok := obj.(*labforgev1alpha1.LabEnvironment)
			b.mu.Lock()
			hold := ok && !b.done && env.Labels[labforgev1alpha1.LabelPool] == b.pool && env.Spec.ClaimRef == nil
			b.done = b.done || hold
			b.mu.Unlock()
			if !hold {
				return c.Delete(ctx, obj, opts...)
			}
			b.bind(env.Name)
			err := c.Delete(ctx, obj, opts...)
			b.mu.Lock()
			b.lab, b.err = env.Name, err
			b.mu.Unlock()
			return err
		},
	})
}

func (b *bindBeforeDelete) result() (string, error, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lab, b.err, b.lab != ""
}

var _ = Describe("A pool scaling down while a claim binds the lab it chose to delete", func() {
	It("leaves the bound lab to its claim, which is Ready, and counts it bound", func(ctx context.Context) {
		const pool, students = "racedelete", "students-racedelete"
		createNamespace(ctx, students)
		race := &bindBeforeDelete{pool: pool}
		race.bind = func(lab string) {
			defer GinkgoRecover()
			Expect(k8s.Create(ctx, integration.MakeClaim(students, "alice").Pool(pool).GenerateKeyPair().Duration(time.Hour).Obj())).To(Succeed())
			Eventually(func(g Gomega) {
				var env labforgev1alpha1.LabEnvironment
				g.Expect(k8s.Get(ctx, client.ObjectKey{Name: lab}, &env)).To(Succeed())
				g.Expect(env.Spec.ClaimRef).NotTo(BeNil(), "the claim has not bound %s yet", lab)
			}).Should(Succeed())
		}
		op := startOperator(race.wrap)
		DeferCleanup(func() { op.stop() })

		By("filling a pool of 1")
		Expect(k8s.Create(ctx, integration.MakeTemplate(pool).BootTimeout(2*time.Hour).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, pool).Replicas(1).MaxLabs(2).Obj())).To(Succeed())
		Eventually(poolStatus(ctx, pool)).Should(And(HaveField("ReadyReplicas", int32(1)), HaveField("Replicas", int32(1))))

		By("scaling it to 0: the pool plans to delete its lab, and a claim binds it before the delete lands")
		var p labforgev1alpha1.LabPool
		Expect(k8s.Get(ctx, client.ObjectKey{Name: pool}, &p)).To(Succeed())
		patch := client.MergeFrom(p.DeepCopy())
		p.Spec.Replicas = 0
		Expect(k8s.Patch(ctx, &p, patch)).To(Succeed())
		var lab string
		Eventually(func(g Gomega) {
			var err error
			var sent bool
			lab, err, sent = race.result()
			g.Expect(sent).To(BeTrue(), "the pool has not sent its delete")
			g.Expect(apierrors.IsConflict(err)).To(BeTrue(), "the planned delete of the bound lab %s was not refused: %v", lab, err)
		}).WithTimeout(time.Minute).Should(Succeed())

		By("keeping the lab with its student: the claim is Ready on it, and the pool counts it bound")
		claim := getClaim(ctx, Default, students, "alice")
		Eventually(func(g Gomega) {
			c := getClaim(ctx, g, students, "alice")
			ready := meta.FindStatusCondition(c.Status.Conditions, labforgev1alpha1.ConditionReady)
			g.Expect(ready).NotTo(BeNil())
			g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "%s: %s", ready.Reason, ready.Message)
			g.Expect(c.Status.Lab).To(Equal(lab))
			g.Expect(poolStatus(ctx, pool)(g)).To(And(HaveField("BoundReplicas", int32(1)), HaveField("Replicas", int32(0)),
				HaveField("WaitingClaims", int32(0)), HaveField("ObservedGeneration", int64(2))))
		}).Should(Succeed())
		Consistently(func(g Gomega) {
			var env labforgev1alpha1.LabEnvironment
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: lab}, &env)).To(Succeed())
			g.Expect(env.DeletionTimestamp).To(BeNil())
			g.Expect(env.Spec.ClaimRef).To(HaveField("UID", claim.UID))
			c := getClaim(ctx, g, students, "alice")
			g.Expect(meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue())
		}).WithTimeout(2 * time.Second).Should(Succeed())

		Expect(k8s.Delete(ctx, claim)).To(Succeed())
		Expect(k8s.Delete(ctx, &p)).To(Succeed())
		Eventually(func(g Gomega) {
			var envs labforgev1alpha1.LabEnvironmentList
			g.Expect(k8s.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: pool})).To(Succeed())
			g.Expect(envs.Items).To(BeEmpty())
		}).WithTimeout(time.Minute).Should(Succeed())
	})
})
