package controllers_test

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/test/integration"
)

// setKeysCondition plays KubeVirt's virt-handler: it reports the outcome of the guest
// agent's last synchronisation of a VM's access credentials.
func setKeysCondition(ctx context.Context, env, vm string, status corev1.ConditionStatus, msg string) {
	vmi := &kubevirtv1.VirtualMachineInstance{}
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(env), Name: vm}, vmi)).To(Succeed())
	patch := client.MergeFrom(vmi.DeepCopy())
	found := false
	for i := range vmi.Status.Conditions {
		if c := &vmi.Status.Conditions[i]; c.Type == kubevirtv1.VirtualMachineInstanceAccessCredentialsSynchronized {
			c.Status, c.Message, c.LastTransitionTime, found = status, msg, metav1.Now(), true
		}
	}
	Expect(found).To(BeTrue(), "the simulated KubeVirt reports no AccessCredentialsSynchronized on %s/%s", env, vm)
	Expect(k8s.Status().Patch(ctx, vmi, patch)).To(Succeed())
}

var _ = Describe("A claim whose keys KubeVirt cannot put into a VM", func() {
	It("is handed over but not Ready, says which VM and why, and is Ready once the keys are in", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-keys").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("keys", "claim-keys").Replicas(1).MaxLabs(100).Obj())).To(Succeed())
		Eventually(poolStatus(ctx, "keys")).Should(HaveField("ReadyReplicas", int32(1)))
		envName := "keys-0"
		By("every VM of a simulated lab says its agent synchronised, as KubeVirt's do once their agent connects")
		for _, vm := range []string{lab.ControlPlaneVM, lab.WorkerVM(1)} {
			vmi := &kubevirtv1.VirtualMachineInstance{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(envName), Name: vm}, vmi)).To(Succeed())
			Expect(vmi.Status.Conditions).To(ContainElement(And(
				HaveField("Type", kubevirtv1.VirtualMachineInstanceAccessCredentialsSynchronized), HaveField("Status", corev1.ConditionTrue))))
		}
		setKeysCondition(ctx, envName, lab.WorkerVM(1), corev1.ConditionFalse, "guest agent is not responding")

		createNamespace(ctx, "students-keys", nil)
		Expect(k8s.Create(ctx, integration.MakeClaim("students-keys", "keyless").Pool("keys").Obj())).To(Succeed())
		Eventually(claimCondition(ctx, "students-keys", "keyless", "Ready")).Should(And(
			HaveField("Status", metav1.ConditionUnknown), HaveField("Reason", "KeysNotSynchronized"),
			HaveField("Message", "KubeVirt could not put the SSH keys into VM worker-1 (guest agent is not responding); the claim is Ready once they are in place")))
		Eventually(integration.Events(ctx, k8s, "LabClaim", "students-keys", "keyless")).Should(ContainElement(
			"Warning/KeysNotSynchronized: KubeVirt could not put the SSH keys into VM worker-1 (guest agent is not responding); the claim is Ready once they are in place"))
		claim := integration.MakeClaim("students-keys", "keyless").Pool("keys").Obj()
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		Expect(claim.Status.Lab).To(Equal(envName), "the claim holds its lab while it waits")
		Expect(claim.Status.SSH).NotTo(BeNil(), "the lab is handed over already")

		By("becoming Ready, with no poll, once KubeVirt says the keys are in")
		setKeysCondition(ctx, envName, lab.WorkerVM(1), corev1.ConditionTrue, "")
		Eventually(claimCondition(ctx, "students-keys", "keyless", "Ready")).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "LabReady")))
	})
})
