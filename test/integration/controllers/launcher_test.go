package controllers_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

// launcherPods lists the virt-launcher pods of a lab.
func launcherPods(ctx context.Context, env string) []corev1.Pod {
	var pods corev1.PodList
	Expect(k8s.List(ctx, &pods, client.InNamespace(lab.Namespace(env)),
		client.MatchingLabels{"kubevirt.io": "virt-launcher"})).To(Succeed())
	return pods.Items
}

var _ = Describe("The simulated KubeVirt", func() {
	size := func(mem string, cores, threads int32) labforgev1alpha1.NodeSize {
		return labforgev1alpha1.NodeSize{Cores: cores, Threads: threads, Memory: resource.MustParse(mem)}
	}
	bandwidth := &labforgev1alpha1.Bandwidth{Ingress: ptrTo(resource.MustParse("50M")), Egress: ptrTo(resource.MustParse("100M"))}

	DescribeTable("creates a launcher pod the lab's own LimitRange and quota admit, for every template the API accepts",
		func(ctx context.Context, name string, workers int32, cp, worker labforgev1alpha1.NodeSize, bw *labforgev1alpha1.Bandwidth) {
			tmpl := integration.MakeTemplate("launch-" + name).Workers(workers).Obj()
			tmpl.Spec.ControlPlane = labforgev1alpha1.ControlPlaneSize(cp)
			tmpl.Spec.Workers.NodeSize = worker
			tmpl.Spec.Network.Bandwidth = bw
			Expect(k8s.Create(ctx, tmpl)).To(Succeed())
			env := "launch-" + name
			Expect(k8s.Create(ctx, newEnvironment(env, tmpl.Name))).To(Succeed())
			DeferCleanup(func(ctx context.Context) {
				Expect(client.IgnoreNotFound(k8s.Delete(ctx, newEnvironment(env, tmpl.Name)))).To(Succeed())
				Expect(client.IgnoreNotFound(k8s.Delete(ctx, tmpl))).To(Succeed())
			})
			Eventually(envCondition(ctx, env, labforgev1alpha1.ConditionReady), 60*time.Second).Should(And(
				HaveField("Status", metav1.ConditionTrue), HaveField("Reason", labforgev1alpha1.ReasonLabReady)))

			pods := launcherPods(ctx, env)
			Expect(pods).To(HaveLen(int(workers) + 1))
			nodes := map[string]bool{}
			for _, n := range simulator.Nodes {
				nodes[n.Name] = true
			}
			for _, pod := range pods {
				var vmi kubevirtv1.VirtualMachineInstance
				ref := metav1.GetControllerOf(&pod)
				Expect(ref).NotTo(BeNil(), "pod %s has no controller", pod.Name)
				Expect(k8s.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: ref.Name}, &vmi)).To(Succeed())
				Expect(metav1.IsControlledBy(&pod, &vmi)).To(BeTrue(), "pod %s not controlled by VMI %s", pod.Name, vmi.Name)
				Expect(pod.Labels).To(HaveKeyWithValue(kubevirtv1.CreatedByLabel, string(vmi.UID)))
				Expect(nodes).To(HaveKey(pod.Spec.NodeName), "pod %s bound to %q", pod.Name, pod.Spec.NodeName)
				Expect(vmi.Status.NodeName).To(Equal(pod.Spec.NodeName))
				Expect(vmi.Status.Interfaces).To(HaveLen(1))
				Expect(vmi.Status.Interfaces[0].IP).To(Equal(pod.Status.PodIP))
				var vm kubevirtv1.VirtualMachine
				Expect(k8s.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: vmi.Name}, &vm)).To(Succeed())
				want := render.LauncherMemoryRequest(&vm.Spec.Template.Spec)
				got := pod.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory]
				Expect(got.Cmp(want)).To(Equal(0), "pod %s memory request %s, want %s", pod.Name, got.String(), want.String())
				Expect(pod.Spec.Containers[0].Resources.Limits).NotTo(HaveKey(corev1.ResourceMemory))
				if bw != nil {
					Expect(pod.Annotations).To(HaveKeyWithValue("kubernetes.io/ingress-bandwidth", "50M"))
					Expect(pod.Annotations).To(HaveKeyWithValue("kubernetes.io/egress-bandwidth", "100M"))
				} else {
					Expect(pod.Annotations).NotTo(HaveKey("kubernetes.io/egress-bandwidth"))
				}
			}

			By("removing a launcher pod with its VMI, as KubeVirt's owner reference does")
			old := pods[0]
			ref := metav1.GetControllerOf(&old)
			Expect(k8s.Delete(ctx, &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{
				Namespace: old.Namespace, Name: ref.Name}})).To(Succeed())
			Eventually(func() error {
				return k8s.Get(ctx, client.ObjectKeyFromObject(&old), &corev1.Pod{})
			}, 30*time.Second).Should(Satisfy(apierrors.IsNotFound))
			Eventually(func() []corev1.Pod { return launcherPods(ctx, env) }, 30*time.Second).Should(HaveLen(int(workers) + 1))
		},
		// The smallest control plane kubeadm accepts, the smallest worker the CRD allows.
		Entry("no workers, the smallest control plane", "small", int32(0), size("1700Mi", 2, 1), size("512Mi", 1, 1), nil),
		Entry("ten of the smallest workers, with bandwidth limits", "ten", int32(10), size("2Gi", 2, 1), size("512Mi", 1, 1), bandwidth),
		Entry("the largest VMs", "large", int32(1), size("64Gi", 16, 2), size("64Gi", 16, 2), nil),
		Entry("two workers, with bandwidth limits", "bw", int32(2), size("2Gi", 2, 1), size("1Gi", 1, 2), bandwidth),
	)

	DescribeTable("refuses nothing quietly: an admin's policy that refuses a launcher pod makes the lab say why at once",
		func(ctx context.Context, name string, policy client.Object, wantMessage string) {
			env := "refused-" + name
			ns := lab.Namespace(env)
			tmpl := integration.MakeTemplate(env).Workers(0).Obj()
			// The admin's object is in the lab's namespace before its first VM: the lab
			// waits for its template, the namespace exists, labelled as the lab's and signed
			// with the operator's key as labforge would (the lab adopts it), the admin's
			// object is in it, then the template comes.
			created := newEnvironment(env, tmpl.Name)
			Expect(k8s.Create(ctx, created)).To(Succeed())
			Eventually(envCondition(ctx, env, labforgev1alpha1.ConditionReady)).Should(
				HaveField("Reason", labforgev1alpha1.ReasonTemplateNotFound))
			var key corev1.Secret
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: manager.DefaultOperatorNamespace, Name: ownership.KeySecret}, &key)).To(Succeed())
			prover, err := ownership.NewProver(key.Data[ownership.KeySecretKey])
			Expect(err).NotTo(HaveOccurred())
			Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{
				labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue, labforgev1alpha1.LabelEnvironment: env,
			}, Annotations: map[string]string{ownership.AnnotationProof: prover.Proof(ownership.LabNamespace(ns, env, created.UID, ""))}}})).To(Succeed())
			policy.SetNamespace(ns)
			Expect(k8s.Create(ctx, policy)).To(Succeed())
			Expect(k8s.Create(ctx, tmpl)).To(Succeed())
			DeferCleanup(func(ctx context.Context) {
				Expect(client.IgnoreNotFound(k8s.Delete(ctx, newEnvironment(env, tmpl.Name)))).To(Succeed())
				Expect(client.IgnoreNotFound(k8s.Delete(ctx, tmpl))).To(Succeed())
			})

			By("reporting the API server's refusal on the lab, not a boot timeout")
			Eventually(envCondition(ctx, env, labforgev1alpha1.ConditionReady)).Should(And(
				HaveField("Status", metav1.ConditionFalse), HaveField("Reason", labforgev1alpha1.ReasonVMPodRefused),
				HaveField("Message", ContainSubstring("The API server refused the virt-launcher pod of VM control-plane: failed to create virtual machine pod: ")),
				HaveField("Message", ContainSubstring(wantMessage))), func() string { return describeLab(ctx, env) })
			Expect(envCondition(ctx, env, labforgev1alpha1.ConditionVMsScheduled)(Default)).To(And(
				HaveField("Status", metav1.ConditionFalse), HaveField("Reason", labforgev1alpha1.ReasonVMPodRefused)))
			var e labforgev1alpha1.LabEnvironment
			Expect(k8s.Get(ctx, client.ObjectKey{Name: env}, &e)).To(Succeed())
			Expect(e.Status.Conditions).NotTo(ContainElement(HaveField("Type", labforgev1alpha1.ConditionStalled)))

			By("leaving the VMI where KubeVirt leaves it")
			var vmi kubevirtv1.VirtualMachineInstance
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: lab.ControlPlaneVM}, &vmi)).To(Succeed())
			Expect(vmi.Status.Phase).To(Equal(kubevirtv1.Pending))
			Expect(vmi.Status.NodeName).To(BeEmpty())
			Expect(vmi.Status.Conditions).To(ContainElement(And(
				HaveField("Type", kubevirtv1.VirtualMachineInstanceSynchronized), HaveField("Status", corev1.ConditionFalse),
				HaveField("Reason", simulator.ReasonFailedCreate), HaveField("Message", ContainSubstring(wantMessage)))))
			Expect(launcherPods(ctx, env)).To(BeEmpty())
			Eventually(func(g Gomega) {
				var events eventsv1.EventList
				g.Expect(k8s.List(ctx, &events, client.InNamespace(ns))).To(Succeed())
				var notes []string
				for _, ev := range events.Items {
					if ev.Regarding.Kind == "VirtualMachineInstance" && ev.Reason == simulator.ReasonFailedCreate && ev.Type == corev1.EventTypeWarning {
						notes = append(notes, ev.Note)
					}
				}
				g.Expect(notes).To(ContainElement(And(HavePrefix("Error creating pod: "), ContainSubstring(wantMessage))))
			}).Should(Succeed())

			By("retrying with a backoff, never hot")
			before := sim.Attempts(ns)
			time.Sleep(4 * time.Second)
			tried := sim.Attempts(ns) - before
			GinkgoWriter.Printf("launcher pod creates in 4s while refused: %d\n", tried)
			Expect(tried).To(BeNumerically(">=", 1), "the refused pod is never tried again")
			Expect(tried).To(BeNumerically("<=", 3), "the refused pod is retried hot")

			By("booting once the admin removes what refused it")
			Expect(k8s.Delete(ctx, policy)).To(Succeed())
			Eventually(envCondition(ctx, env, labforgev1alpha1.ConditionReady), 30*time.Second).Should(And(
				HaveField("Status", metav1.ConditionTrue), HaveField("Reason", labforgev1alpha1.ReasonLabReady)))
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: lab.ControlPlaneVM}, &vmi)).To(Succeed())
			Expect(vmi.Status.Conditions).NotTo(ContainElement(HaveField("Type", kubevirtv1.VirtualMachineInstanceSynchronized)))
			Expect(launcherPods(ctx, env)).To(HaveLen(1))
		},
		Entry("the LimitRange labforge once rendered, whose default limit is below a launcher's request", "limits",
			&corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "admin-limits"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
				Type: corev1.LimitTypeContainer, Default: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")},
			}}}},
			"must be less than or equal to memory limit of 64Mi"),
		Entry("a quota smaller than the control plane", "quota",
			&corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "admin-quota"}, Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
				corev1.ResourceRequestsMemory: resource.MustParse("1Gi"),
			}}},
			"exceeded quota: admin-quota"),
		// A maximum without a default becomes the default limit (the API server's defaulting
		// of a LimitRange), below this launcher's request.
		Entry("a LimitRange maximum below a launcher's request", "max",
			&corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "admin-max"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
				Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
			}}}},
			"must be less than or equal to memory limit of 1Gi"),
	)
})

func ptrTo[T any](v T) *T { return &v }

// describeLab is what a failed story shows of a lab: its conditions, its VMIs' status, its
// pods.
func describeLab(ctx context.Context, env string) string {
	var e labforgev1alpha1.LabEnvironment
	_ = k8s.Get(ctx, client.ObjectKey{Name: env}, &e)
	var vmis kubevirtv1.VirtualMachineInstanceList
	_ = k8s.List(ctx, &vmis, client.InNamespace(lab.Namespace(env)))
	out := fmt.Sprintf("conditions: %+v\n", e.Status.Conditions)
	for _, v := range vmis.Items {
		out += fmt.Sprintf("VMI %s: phase %q conditions %+v\n", v.Name, v.Status.Phase, v.Status.Conditions)
	}
	out += fmt.Sprintf("pods: %d\n", len(launcherPods(ctx, env)))
	return out
}
