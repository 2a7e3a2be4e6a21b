package controllers_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/test/integration"
)

// eventsOf returns the messages of the events of the given type and reason about one
// object.
func eventsOf(ctx context.Context, kind, name, eventType, reason string) func(Gomega) []string {
	return func(g Gomega) []string {
		var list eventsv1.EventList
		g.Expect(k8s.List(ctx, &list)).To(Succeed())
		var notes []string
		for _, e := range list.Items {
			if e.Regarding.Kind == kind && e.Regarding.Name == name && e.Type == eventType && e.Reason == reason {
				notes = append(notes, e.Note)
			}
		}
		return notes
	}
}

var _ = Describe("A Ready lab whose VM is restarted", func() {
	It("says which node set itself up again from nothing, once, and so does its student's claim", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("restart").Version("v1.36.3").PodCIDR("10.200.0.0/16").AdmitClaimsFrom("students-restart").Obj())).To(Succeed())
		createNamespace(ctx, "students-restart", nil)
		claim := integration.MakeClaim("students-restart", "hana").Template("restart").WithoutKeys().Obj()
		Expect(k8s.Create(ctx, claim)).To(Succeed())
		Eventually(claimCondition(ctx, "students-restart", "hana", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		envName := claim.Status.Lab
		ns := lab.Namespace(envName)

		By("recording the instances the lab became Ready with, in the write that said Ready")
		var env labforgev1alpha1.LabEnvironment
		Expect(k8s.Get(ctx, client.ObjectKey{Name: envName}, &env)).To(Succeed())
		uids := map[string]types.UID{}
		for _, name := range []string{"control-plane", "worker-1"} {
			var vmi kubevirtv1.VirtualMachineInstance
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &vmi)).To(Succeed())
			uids[name] = vmi.UID
		}
		Expect(env.Status.ReadyInstances).To(Equal([]labforgev1alpha1.InstanceReference{
			{Name: "control-plane", UID: uids["control-plane"]}, {Name: "worker-1", UID: uids["worker-1"]},
		}))
		Expect(meta.FindStatusCondition(env.Status.Conditions, "VMsRestarted")).To(BeNil())
		Expect(meta.FindStatusCondition(claim.Status.Conditions, "VMsRestarted")).To(BeNil())

		By("deleting the worker's VMI, as an eviction or a lost host node would: KubeVirt starts a new one (runStrategy Always)")
		Expect(k8s.Delete(ctx, &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "worker-1"}})).To(Succeed())
		Eventually(func(g Gomega) {
			var vmi kubevirtv1.VirtualMachineInstance
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "worker-1"}, &vmi)).To(Succeed())
			g.Expect(vmi.UID).NotTo(Equal(uids["worker-1"]))
			g.Expect(vmi.Status.Phase).To(Equal(kubevirtv1.Running))
		}).WithTimeout(30 * time.Second).Should(Succeed())

		const labMessage = "VMs restarted after the lab was ready and set themselves up again from empty disks: worker-1. " +
			"A restarted control plane runs kubeadm init again (the lab's cluster starts empty); a restarted worker " +
			"rejoins only while the lab's bootstrap token is valid. What was done on these nodes is gone"
		Eventually(envCondition(ctx, envName, "VMsRestarted")).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "VMRestarted"), HaveField("Message", labMessage)))
		By("leaving Ready as the lab reports it: every VM runs, and the lab said it was bootstrapped")
		Eventually(envCondition(ctx, envName, labforgev1alpha1.ConditionReady)).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "LabReady")))
		Eventually(claimCondition(ctx, "students-restart", "hana", "VMsRestarted")).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "VMRestarted"),
			HaveField("Message", "Lab "+envName+": "+labMessage+". Delete this claim and claim again for a fresh lab, or ask your admin")))
		Eventually(claimCondition(ctx, "students-restart", "hana", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))

		By("telling it once, as a Warning event on the lab and on the claim")
		Eventually(eventsOf(ctx, "LabEnvironment", envName, "Warning", "VMRestarted")).Should(Equal([]string{labMessage}))
		Eventually(eventsOf(ctx, "LabClaim", "hana", "Warning", "VMRestarted")).Should(HaveLen(1))
		Expect(k8s.Get(ctx, client.ObjectKey{Name: envName}, &env)).To(Succeed())
		Expect(env.Status.ReadyInstances).To(HaveLen(2), "the instances recorded at Ready are kept")
		Consistently(eventsOf(ctx, "LabEnvironment", envName, "Warning", "VMRestarted")).WithTimeout(2 * time.Second).Should(HaveLen(1))

		By("naming the control plane too when it restarts")
		Expect(k8s.Delete(ctx, &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "control-plane"}})).To(Succeed())
		Eventually(envCondition(ctx, envName, "VMsRestarted")).Should(HaveField("Message",
			ContainSubstring("from empty disks: control-plane, worker-1.")))
		Eventually(eventsOf(ctx, "LabEnvironment", envName, "Warning", "VMRestarted")).Should(HaveLen(2))
		Eventually(claimCondition(ctx, "students-restart", "hana", "VMsRestarted")).Should(HaveField("Message",
			ContainSubstring("from empty disks: control-plane, worker-1.")))
	})
})
