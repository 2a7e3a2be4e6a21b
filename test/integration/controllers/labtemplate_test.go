package controllers_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/integration"
)

// readyCondition returns the template's Ready condition once observedGeneration caught up
// with its generation.
func readyCondition(ctx context.Context, name string) func(Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		var t labforgev1alpha1.LabTemplate
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &t)).To(Succeed())
		g.Expect(t.Status.ObservedGeneration).To(Equal(t.Generation))
		c := meta.FindStatusCondition(t.Status.Conditions, labforgev1alpha1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		return *c
	}
}

// eventReasons lists the reasons of the events about the named object.
func eventReasons(ctx context.Context, kind, name string) func(Gomega) []string {
	return func(g Gomega) []string {
		var list eventsv1.EventList
		g.Expect(k8s.List(ctx, &list)).To(Succeed())
		var reasons []string
		for _, e := range list.Items {
			if e.Regarding.Kind == kind && e.Regarding.Name == name {
				reasons = append(reasons, e.Type+"/"+e.Reason)
			}
		}
		return reasons
	}
}

var _ = Describe("An admin writing LabTemplates", func() {
	It("sees a good template accepted, with an event", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("good").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Eventually(readyCondition(ctx, "good")).Should(And(
			HaveField("Status", metav1.ConditionTrue),
			HaveField("Reason", "Accepted"),
			HaveField("Message", "Labs can be built from this template"),
		))
		Eventually(eventReasons(ctx, "LabTemplate", "good")).Should(Equal([]string{"Normal/Accepted"}))
	})

	It("is told exactly what is wrong with a template labforge cannot build, and sees the fix accepted", func(ctx context.Context) {
		t := integration.MakeTemplate("clashing").Version("v1.29.0").PodCIDR("10.244.0.0/16").Obj()
		Expect(k8s.Create(ctx, t)).To(Succeed())
		Eventually(readyCondition(ctx, "clashing")).Should(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", "InvalidTemplate"),
			HaveField("Message", "kubernetesVersion v1.29.0 is not supported: labforge builds labs of v1.31 to v1.37; "+
				"network.podCIDR 10.244.0.0/16 overlaps the host cluster's range 10.244.0.0/16"),
		))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
		Expect(meta.IsStatusConditionTrue(t.Status.Conditions, labforgev1alpha1.ConditionStalled)).To(BeTrue())
		Eventually(eventReasons(ctx, "LabTemplate", "clashing")).Should(Equal([]string{"Warning/InvalidTemplate"}))

		t.Spec.KubernetesVersion = "v1.35.2"
		t.Spec.Network.PodCIDR = "10.210.0.0/16"
		Expect(k8s.Update(ctx, t)).To(Succeed())
		Eventually(readyCondition(ctx, "clashing")).Should(HaveField("Status", metav1.ConditionTrue))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
		Expect(meta.FindStatusCondition(t.Status.Conditions, labforgev1alpha1.ConditionStalled)).To(BeNil())
		Eventually(eventReasons(ctx, "LabTemplate", "clashing")).Should(ConsistOf("Warning/InvalidTemplate", "Normal/Accepted"))
	})

	It("costs no API write when the operator restarts and sees the same templates again", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("steady").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Eventually(readyCondition(ctx, "steady")).Should(HaveField("Status", metav1.ConditionTrue))
		var before labforgev1alpha1.LabTemplate
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "steady"}, &before)).To(Succeed())

		stopManager()
		var err error
		stopManager, sim, err = integration.StartSimulatedManager(cp.RESTConfig(), clk)
		Expect(err).NotTo(HaveOccurred())

		// A template created after the restart proves the new manager has reconciled.
		Expect(k8s.Create(ctx, integration.MakeTemplate("after-restart").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Eventually(readyCondition(ctx, "after-restart")).Should(HaveField("Status", metav1.ConditionTrue))
		var after labforgev1alpha1.LabTemplate
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "steady"}, &after)).To(Succeed())
		Expect(after.ResourceVersion).To(Equal(before.ResourceVersion))
	})
})
