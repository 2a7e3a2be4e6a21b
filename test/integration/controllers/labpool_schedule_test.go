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

var _ = Describe("A pool with a class on its schedule", func() {
	It("grows when the window opens, by the calendar alone, says which rule sizes it, and shrinks when it closes", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("schedule").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("class", "schedule").Replicas(1).MaxBooting(5).MaxLabs(10).Obj())).To(Succeed())
		Eventually(poolStatus(ctx, "class")).Should(And(
			HaveField("ReadyReplicas", int32(1)),
			HaveField("Scaling", WithTransform(sizing, Equal(&labforgev1alpha1.PoolScalingStatus{Rule: labforgev1alpha1.ScalingReplicas, Desired: 1})))))

		By("declaring a class in Kolkata's time that opens four seconds from the controllers' now, with no warm-up")
		// The controllers' clock is moved to four seconds before a whole minute: the
		// window opens then, and the pool must wake for it with no event at all.
		opens := time.Now().Truncate(time.Minute).Add(2 * time.Minute)
		clk.Set(opens.Add(-4 * time.Second).Sub(time.Now()))
		DeferCleanup(func() { clk.Set(0) })
		kolkata, err := time.LoadLocation("Asia/Kolkata")
		Expect(err).NotTo(HaveOccurred())
		local := opens.In(kolkata)
		var pool labforgev1alpha1.LabPool
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "class"}, &pool)).To(Succeed())
		patch := client.MergeFrom(pool.DeepCopy())
		pool.Spec.Schedule = []labforgev1alpha1.PoolWindow{{
			Name: "monday", Start: fmt.Sprintf("%d %d * * *", local.Minute(), local.Hour()),
			Duration: metav1.Duration{Duration: time.Hour}, TimeZone: "Asia/Kolkata",
			MinLabs: ptr.To[int32](3), Buffer: ptr.To[int32](0),
			// No warm-up: this story is the start's own edge (the next ones warm up).
			WarmUp: &metav1.Duration{},
		}}
		Expect(k8s.Patch(ctx, &pool, patch)).To(Succeed())
		Eventually(poolStatus(ctx, "class")).Should(HaveField("Scaling", WithTransform(sizing, Equal(&labforgev1alpha1.PoolScalingStatus{
			Rule: labforgev1alpha1.ScalingReplicas, Desired: 1, NextChange: ptr.To(metav1.NewTime(opens))}))))
		Expect(poolStatus(ctx, "class")(Default)).To(HaveField("ReadyReplicas", int32(1)))

		By("the window opening: three labs, the schedule named")
		Eventually(poolStatus(ctx, "class")).WithTimeout(30 * time.Second).Should(And(
			HaveField("ReadyReplicas", int32(3)),
			HaveField("Scaling", WithTransform(sizing, Equal(&labforgev1alpha1.PoolScalingStatus{
				Rule: labforgev1alpha1.ScalingSchedule, Window: "monday", Desired: 3, NextChange: ptr.To(metav1.NewTime(opens.Add(time.Hour)))})))))
		Eventually(poolCondition(ctx, "class", labforgev1alpha1.ConditionReady)).Should(HaveField("Message", "3 of 3 warm labs are ready"))

		By("a student claiming one: the class's floor counts it, nothing new boots")
		createNamespace(ctx, "students-class", nil)
		Expect(k8s.Create(ctx, integration.MakeClaim("students-class", "ada").Pool("class").Obj())).To(Succeed())
		Eventually(claimCondition(ctx, "students-class", "ada", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(poolStatus(ctx, "class")).Should(And(HaveField("ReadyReplicas", int32(2)), HaveField("BoundReplicas", int32(1)),
			HaveField("Scaling.Desired", int32(2))))
		Consistently(poolStatus(ctx, "class")).WithTimeout(2 * time.Second).Should(HaveField("BootingReplicas", int32(0)))

		By("the window closing an hour later: back to the pool's own buffer of one")
		clk.Set(opens.Add(time.Hour).Sub(time.Now()))
		// The pass the operator queued for the close runs an hour from now in real time:
		// a change of the pool brings the pass that sees the moved clock.
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "class"}, &pool)).To(Succeed())
		patch = client.MergeFrom(pool.DeepCopy())
		pool.Annotations = map[string]string{"nudge": "close"}
		Expect(k8s.Patch(ctx, &pool, patch)).To(Succeed())
		Eventually(poolStatus(ctx, "class")).Should(And(
			HaveField("ReadyReplicas", int32(1)), HaveField("BootingReplicas", int32(0)), HaveField("BoundReplicas", int32(1)),
			HaveField("Scaling", WithTransform(sizing, Equal(&labforgev1alpha1.PoolScalingStatus{
				Rule: labforgev1alpha1.ScalingReplicas, Desired: 1, NextChange: ptr.To(metav1.NewTime(opens.Add(24 * time.Hour)))})))))
	})

	It("refuses a start its parser cannot read, in the parser's words, and keeps its own size", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("schedule-bad").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		pool := integration.MakePool("bad-class", "schedule-bad").Replicas(1).MaxLabs(10).Obj()
		pool.Spec.Schedule = []labforgev1alpha1.PoolWindow{{Name: "typo", Start: "0 9 * * MONDAY", Duration: metav1.Duration{Duration: time.Hour}, MinLabs: ptr.To[int32](5)}}
		Expect(k8s.Create(ctx, pool)).To(Succeed())
		Eventually(poolCondition(ctx, "bad-class", labforgev1alpha1.ConditionStalled)).Should(And(
			HaveField("Reason", labforgev1alpha1.ReasonInvalidSchedule),
			HaveField("Message", `spec.schedule: window typo: start "0 9 * * MONDAY": failed to parse int from MONDAY: strconv.Atoi: parsing "MONDAY": invalid syntax; the pool is sized without the windows it cannot read`)))
		Eventually(poolStatus(ctx, "bad-class")).Should(HaveField("ReadyReplicas", int32(1)))
	})
})

func poolCondition(ctx context.Context, name, conditionType string) func(Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		var p labforgev1alpha1.LabPool
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &p)).To(Succeed())
		for _, c := range p.Status.Conditions {
			if c.Type == conditionType {
				return c
			}
		}
		g.Expect(conditionType).To(BeEmpty(), "no %s condition yet", conditionType)
		return metav1.Condition{}
	}
}
