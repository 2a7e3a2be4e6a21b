package controllers_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/integration"
)

var _ = Describe("A pool that anticipates the class", func() {
	It("boots for a window its warmUp before the start, says it is warming up, and is no longer at the start", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("warmup").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("early", "warmup").Replicas(1).MaxBooting(5).MaxLabs(10).Obj())).To(Succeed())
		Eventually(poolStatus(ctx, "early")).Should(HaveField("ReadyReplicas", int32(1)))

		By("declaring the class at its own time with ten minutes' warm-up, the controllers' clock four seconds before the warm-up")
		class := time.Now().Truncate(time.Minute).Add(12 * time.Minute)
		warmUp := class.Add(-10 * time.Minute)
		clk.Set(warmUp.Add(-4 * time.Second).Sub(time.Now()))
		DeferCleanup(func() { clk.Set(0) })
		u := class.UTC()
		patchPool(ctx, "early", func(p *labforgev1alpha1.LabPool) {
			p.Spec.Schedule = []labforgev1alpha1.PoolWindow{{
				Name: "lecture", Start: fmt.Sprintf("%d %d * * *", u.Minute(), u.Hour()),
				Duration: metav1.Duration{Duration: time.Hour}, WarmUp: &metav1.Duration{Duration: 10 * time.Minute},
				MinLabs: ptr.To[int32](3), Buffer: ptr.To[int32](0),
			}}
		})
		Eventually(poolStatus(ctx, "early")).Should(HaveField("Scaling", WithTransform(sizing, Equal(&labforgev1alpha1.PoolScalingStatus{
			Rule: labforgev1alpha1.ScalingReplicas, Desired: 1, NextChange: ptr.To(metav1.NewTime(warmUp))}))))

		By("the warm-up beginning, by the calendar alone: three labs ten minutes before the class")
		Eventually(poolStatus(ctx, "early")).WithTimeout(30 * time.Second).Should(And(
			HaveField("ReadyReplicas", int32(3)),
			HaveField("Scaling", WithTransform(sizing, Equal(&labforgev1alpha1.PoolScalingStatus{
				Rule: labforgev1alpha1.ScalingSchedule, Window: "lecture", WarmingUp: true, Desired: 3, NextChange: ptr.To(metav1.NewTime(class))})))))

		By("the class starting: the same labs, no longer warming up, the close next")
		clk.Set(class.Sub(time.Now()))
		patchPool(ctx, "early", func(p *labforgev1alpha1.LabPool) { p.Annotations = map[string]string{"nudge": "start"} })
		Eventually(poolStatus(ctx, "early")).Should(HaveField("Scaling", WithTransform(sizing, Equal(&labforgev1alpha1.PoolScalingStatus{
			Rule: labforgev1alpha1.ScalingSchedule, Window: "lecture", Desired: 3, NextChange: ptr.To(metav1.NewTime(class.Add(time.Hour)))}))))
		Expect(poolStatus(ctx, "early")(Default)).To(And(HaveField("ReadyReplicas", int32(3)), HaveField("BootingReplicas", int32(0))))
	})

	It("records how long its labs took to boot, and warms up by it for a window without a warmUp", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("boot-time").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		// The simulated VMs boot at once: with the controllers' clock 40 s ahead of the API
		// server's, which stamps creations, each lab's boot is 40 s and what it really took.
		clk.Set(40 * time.Second)
		DeferCleanup(func() { clk.Set(0) })
		Expect(k8s.Create(ctx, integration.MakePool("learns", "boot-time").Replicas(2).MaxBooting(5).MaxLabs(10).Obj())).To(Succeed())
		Eventually(poolStatus(ctx, "learns")).Should(And(HaveField("ReadyReplicas", int32(2)), HaveField("Scaling.WarmUp", Not(BeNil()))))

		By("the boot time is a boot of its labs, creation to Ready, in whole seconds, near the slowest; the warm-up 30 s more")
		var labs labforgev1alpha1.LabEnvironmentList
		Expect(k8s.List(ctx, &labs, client.MatchingLabels{labforgev1alpha1.LabelPool: "learns"})).To(Succeed())
		Expect(labs.Items).To(HaveLen(2))
		var boots []time.Duration
		slowest := time.Duration(0)
		for _, l := range labs.Items {
			Expect(l.Status.ReadyTime).NotTo(BeNil())
			boot := l.Status.ReadyTime.Sub(l.CreationTimestamp.Time)
			boots, slowest = append(boots, boot), max(slowest, boot)
		}
		scaling := poolStatus(ctx, "learns")(Default).Scaling
		Expect(scaling.BootTime).NotTo(BeNil())
		boot := scaling.BootTime.Duration
		Expect(boots).To(ContainElement(boot), "the recorded boot time is one lab's boot")
		Expect(slowest-boot).To(BeNumerically("<", 5*time.Second), "within the tolerance of the slowest")
		Expect(boot).To(BeNumerically(">=", 40*time.Second))
		Expect(scaling.WarmUp).To(Equal(&metav1.Duration{Duration: boot + 30*time.Second}))

		By("a window declared at the class's own time, without warmUp: the pool boots for it that much earlier")
		class := time.Now().Truncate(time.Minute).Add(3 * time.Minute)
		opens := class.Add(-(boot + 30*time.Second))
		clk.Set(opens.Add(-4 * time.Second).Sub(time.Now()))
		u := class.UTC()
		patchPool(ctx, "learns", func(p *labforgev1alpha1.LabPool) {
			p.Spec.Schedule = []labforgev1alpha1.PoolWindow{{
				Name: "lab-session", Start: fmt.Sprintf("%d %d * * *", u.Minute(), u.Hour()),
				Duration: metav1.Duration{Duration: time.Hour}, MinLabs: ptr.To[int32](4),
			}}
		})
		Eventually(poolStatus(ctx, "learns")).Should(HaveField("Scaling.NextChange", Equal(ptr.To(metav1.NewTime(opens)))))
		Eventually(poolStatus(ctx, "learns")).WithTimeout(30 * time.Second).Should(And(
			HaveField("ReadyReplicas", int32(4)),
			HaveField("Scaling.Rule", labforgev1alpha1.ScalingSchedule), HaveField("Scaling.Window", "lab-session"),
			HaveField("Scaling.WarmingUp", true), HaveField("Scaling.NextChange", Equal(ptr.To(metav1.NewTime(class))))))
	})
})

// sizing is a pool's status.scaling without the boot time observed and the warm-up it
// gives: what the rules size the pool by, which a story asserts exactly.
func sizing(s *labforgev1alpha1.PoolScalingStatus) *labforgev1alpha1.PoolScalingStatus {
	if s == nil {
		return nil
	}
	out := s.DeepCopy()
	out.BootTime, out.WarmUp = nil, nil
	return out
}

// patchPool changes a pool by a merge patch from the API server's copy.
func patchPool(ctx context.Context, name string, change func(*labforgev1alpha1.LabPool)) {
	var pool labforgev1alpha1.LabPool
	Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &pool)).To(Succeed())
	patch := client.MergeFrom(pool.DeepCopy())
	change(&pool)
	Expect(k8s.Patch(ctx, &pool, patch)).To(Succeed())
}
