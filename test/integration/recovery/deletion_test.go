package recovery_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/test/integration"
)

// unclaimedLabs returns the names of the pool's labs no claim holds.
func unclaimedLabs(ctx context.Context, g Gomega, template string) []string {
	var names []string
	for name, env := range labsOfTemplate(ctx, g, template) {
		if env.Spec.ClaimRef == nil {
			names = append(names, name)
		}
	}
	return names
}

var _ = Describe("An admin deleting a template while its labs run", func() {
	It("leaves the running labs alone, holds the pool and new claims, and everything goes once the pool and claims do", func(ctx context.Context) {
		const template, pool, students = "del-template", "del-template", "students-del-template"
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, template).Replicas(1).Obj())).To(Succeed())
		createNamespace(ctx, students)
		Expect(k8s.Create(ctx, integration.MakeClaim(students, "alice").Pool(pool).GenerateKeyPair().Obj())).To(Succeed())
		Eventually(claimReady(ctx, students, "alice")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(func(g Gomega) []string { return unclaimedLabs(ctx, g, template) }).WithTimeout(60 * time.Second).Should(HaveLen(1))
		Eventually(poolStatus(ctx, pool)).Should(HaveField("ReadyReplicas", int32(1)))
		labs := labsOfTemplate(ctx, Default, template)
		Expect(labs).To(HaveLen(2))
		vms := map[string]string{}
		for name := range labs {
			vm := get(ctx, Default, client.ObjectKey{Namespace: lab.Namespace(name), Name: lab.ControlPlaneVM}, &kubevirtv1.VirtualMachine{})
			vms[name] = vm.ResourceVersion
		}

		By("deleting the template: it goes at once, nothing holds it")
		Expect(k8s.Delete(ctx, integration.MakeTemplate(template).Obj())).To(Succeed())
		Eventually(gone(ctx, client.ObjectKey{Name: template}, &labforgev1alpha1.LabTemplate{})).Should(BeTrue())

		By("keeping both labs running from their snapshots")
		Consistently(func(g Gomega) {
			for name, rv := range vms {
				g.Expect(envReady(ctx, name)(g)).To(HaveField("Status", metav1.ConditionTrue), name)
				vm := get(ctx, g, client.ObjectKey{Namespace: lab.Namespace(name), Name: lab.ControlPlaneVM}, &kubevirtv1.VirtualMachine{})
				g.Expect(vm.ResourceVersion).To(Equal(rv), "the VM of lab %s was rewritten", name)
			}
			g.Expect(claimReady(ctx, students, "alice")(g)).To(HaveField("Status", metav1.ConditionTrue))
		}).Should(Succeed())

		By("holding the pool and a new claim with TemplateNotFound")
		Eventually(condition(ctx, &labforgev1alpha1.LabPool{ObjectMeta: metav1.ObjectMeta{Name: pool}}, "Ready")).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "TemplateNotFound")))
		Expect(k8s.Create(ctx, integration.MakeClaim(students, "bob").Pool(pool).GenerateKeyPair().Obj())).To(Succeed())
		Eventually(claimReady(ctx, students, "bob")).Should(And(
			HaveField("Status", metav1.ConditionUnknown), HaveField("Reason", "TemplateNotFound"),
			HaveField("Message", "LabTemplate del-template does not exist")))
		Eventually(integration.Events(ctx, k8s, "LabClaim", students, "bob")).Should(ContainElement(
			"Warning/TemplateNotFound: LabTemplate del-template does not exist"), "kubectl describe says why kubectl wait would time out")

		By("deleting the pool, then the claims: nothing is left")
		Expect(k8s.Delete(ctx, integration.MakePool(pool, template).Replicas(0).Obj())).To(Succeed())
		Eventually(gone(ctx, client.ObjectKey{Name: pool}, &labforgev1alpha1.LabPool{})).Should(BeTrue())
		Expect(k8s.Delete(ctx, integration.MakeClaim(students, "alice").Pool(pool).GenerateKeyPair().Obj())).To(Succeed())
		Expect(k8s.Delete(ctx, integration.MakeClaim(students, "bob").Pool(pool).GenerateKeyPair().Obj())).To(Succeed())
		Eventually(leftovers(ctx, inStory(template, students))).WithTimeout(60 * time.Second).Should(BeEmpty())
		Expect(gone(ctx, client.ObjectKey{Namespace: students, Name: "alice"}, &labforgev1alpha1.LabClaim{})()).To(BeTrue())
		Expect(gone(ctx, client.ObjectKey{Namespace: students, Name: "bob"}, &labforgev1alpha1.LabClaim{})()).To(BeTrue())
	})
})

var _ = Describe("An admin deleting a pool that has claimed labs", func() {
	It("deletes the unclaimed labs and leaves each claimed lab to its student until the claim ends", func(ctx context.Context) {
		const template, pool, students = "del-pool", "del-pool", "students-del-pool"
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, template).Replicas(2).Obj())).To(Succeed())
		createNamespace(ctx, students)
		Expect(k8s.Create(ctx, integration.MakeClaim(students, "alice").Pool(pool).GenerateKeyPair().Obj())).To(Succeed())
		Eventually(claimReady(ctx, students, "alice")).Should(HaveField("Status", metav1.ConditionTrue))
		alice := claimOf(ctx, students, "alice")
		bound := get(ctx, Default, client.ObjectKey{Name: alice.Status.Lab}, &labforgev1alpha1.LabEnvironment{})
		Expect(bound.OwnerReferences).To(BeEmpty(), "a claimed lab must not be owned by its pool")
		Eventually(func(g Gomega) []string { return unclaimedLabs(ctx, g, template) }).WithTimeout(60 * time.Second).Should(HaveLen(2))

		Expect(k8s.Delete(ctx, integration.MakePool(pool, template).Replicas(0).Obj())).To(Succeed())
		Eventually(gone(ctx, client.ObjectKey{Name: pool}, &labforgev1alpha1.LabPool{})).Should(BeTrue())
		Eventually(func(g Gomega) []string { return unclaimedLabs(ctx, g, template) }).WithTimeout(60 * time.Second).Should(BeEmpty())
		Eventually(leftovers(ctx, func(o client.Object) bool {
			return inStory(template)(o) && o.GetLabels()[labforgev1alpha1.LabelEnvironment] != bound.Name && o.GetName() != bound.Name
		})).WithTimeout(60 * time.Second).Should(BeEmpty())

		By("keeping the claimed lab, its namespace and the student's access as they were")
		Consistently(func(g Gomega) {
			env := get(ctx, g, client.ObjectKey{Name: bound.Name}, &labforgev1alpha1.LabEnvironment{})
			g.Expect(env.UID).To(Equal(bound.UID))
			g.Expect(env.DeletionTimestamp).To(BeNil())
			g.Expect(envReady(ctx, bound.Name)(g)).To(HaveField("Status", metav1.ConditionTrue))
			g.Expect(claimReady(ctx, students, "alice")(g)).To(HaveField("Status", metav1.ConditionTrue))
			expectLabOwnedBy(ctx, g, env, true)
			get(ctx, g, client.ObjectKey{Namespace: students, Name: "alice-kubeconfig"}, &corev1.Secret{})
		}).Should(Succeed())

		By("ending the lab with the claim")
		Expect(k8s.Delete(ctx, alice)).To(Succeed())
		Eventually(leftovers(ctx, inStory(template, students))).WithTimeout(60 * time.Second).Should(BeEmpty())
		Expect(gone(ctx, client.ObjectKeyFromObject(alice), &labforgev1alpha1.LabClaim{})()).To(BeTrue())
	})
})

var _ = Describe("A student deleting a claim whose lab is still provisioning", func() {
	It("leaves nothing behind, even though the lab never booted", func(ctx context.Context) {
		const template, students = "del-provisioning", "students-del-provisioning"
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).AdmitClaimsFrom(students).Obj())).To(Succeed())
		createNamespace(ctx, students)
		By("running the operator while KubeVirt starts no VM")
		stopManager()
		DeferCleanup(func() {
			stopManager()
			startManager()
		})
		startOperatorWithoutVMs()

		claim := integration.MakeClaim(students, "erin").Template(template).GenerateKeyPair().Obj()
		Expect(k8s.Create(ctx, claim)).To(Succeed())
		Eventually(claimReady(ctx, students, "erin")).Should(HaveField("Reason", "LabBooting"))
		name := claimOf(ctx, students, "erin").Status.Lab
		Eventually(envReady(ctx, name)).Should(And(HaveField("Status", metav1.ConditionUnknown), HaveField("Reason", "Booting")))
		Eventually(func(g Gomega) []string {
			return describeAll(labforgeObjects(ctx, g, func(o client.Object) bool { return o.GetNamespace() == lab.Namespace(name) }))
		}).Should(ContainElements(
			"VirtualMachine lab-"+name+"/control-plane", "VirtualMachine lab-"+name+"/worker-1", "Secret lab-"+name+"/lab-pki"))

		Expect(k8s.Delete(ctx, claim)).To(Succeed())
		Eventually(leftovers(ctx, inStory(template, students))).WithTimeout(60 * time.Second).Should(BeEmpty())
		Expect(gone(ctx, client.ObjectKeyFromObject(claim), &labforgev1alpha1.LabClaim{})()).To(BeTrue())
	})

	It("leaves nothing behind when deleted the moment it was created", func(ctx context.Context) {
		const template, pool, students = "del-instant", "del-instant", "students-del-instant"
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).AdmitClaimsFrom(students).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, template).Replicas(1).Obj())).To(Succeed())
		createNamespace(ctx, students)
		Eventually(poolStatus(ctx, pool)).Should(HaveField("ReadyReplicas", int32(1)))
		for _, c := range []*labforgev1alpha1.LabClaim{integration.MakeClaim(students, "cold").Template(template).GenerateKeyPair().Obj(), integration.MakeClaim(students, "warm").Pool(pool).GenerateKeyPair().Obj()} {
			Expect(k8s.Create(ctx, c)).To(Succeed())
			Expect(k8s.Delete(ctx, c)).To(Succeed())
		}
		Eventually(func(g Gomega) []string {
			return describeAll(labforgeObjects(ctx, g, inStory(template, students)))
		}).WithTimeout(60 * time.Second).Should(Not(ContainElement(MatchRegexp(`^(LabEnvironment claim-|Namespace lab-claim-|Secret students-)`))))
		Eventually(func(g Gomega) {
			for name, env := range labsOfTemplate(ctx, g, template) {
				g.Expect(env.Spec.ClaimRef).To(BeNil(), "lab %s is still bound to a deleted claim", name)
			}
		}).WithTimeout(60 * time.Second).Should(Succeed())

		Expect(k8s.Delete(ctx, integration.MakePool(pool, template).Replicas(0).Obj())).To(Succeed())
		Eventually(leftovers(ctx, inStory(template, students))).WithTimeout(60 * time.Second).Should(BeEmpty())
	})
})

var _ = Describe("An admin deleting a lab's namespace by hand", func() {
	It("gets an unclaimed lab rebuilt from scratch, with new key material, that proves itself Ready again", func(ctx context.Context) {
		const template, pool = "del-namespace", "del-namespace"
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, template).Replicas(1).Obj())).To(Succeed())
		Eventually(poolStatus(ctx, pool)).Should(HaveField("ReadyReplicas", int32(1)))
		labs := labsOfTemplate(ctx, Default, template)
		Expect(labs).To(HaveLen(1))
		var env *labforgev1alpha1.LabEnvironment
		for _, e := range labs {
			env = e
		}
		ns := get(ctx, Default, client.ObjectKey{Name: lab.Namespace(env.Name)}, &corev1.Namespace{})
		ca := get(ctx, Default, client.ObjectKey{Namespace: ns.Name, Name: lab.PKISecret}, &corev1.Secret{}).Data[lab.PKICACert]

		Expect(k8s.Delete(ctx, ns)).To(Succeed())
		Eventually(func(g Gomega) {
			now := get(ctx, g, client.ObjectKey{Name: lab.Namespace(env.Name)}, &corev1.Namespace{})
			g.Expect(now.UID).NotTo(Equal(ns.UID))
		}).WithTimeout(60 * time.Second).Should(Succeed())
		Eventually(envReady(ctx, env.Name)).WithTimeout(30 * time.Second).Should(HaveField("Status", metav1.ConditionTrue))

		rebuilt := get(ctx, Default, client.ObjectKey{Name: env.Name}, &labforgev1alpha1.LabEnvironment{})
		Expect(rebuilt.UID).To(Equal(env.UID))
		newNS := get(ctx, Default, client.ObjectKey{Name: lab.Namespace(env.Name)}, &corev1.Namespace{})
		Expect(rebuilt.Status.ReadyTime.Time).NotTo(BeTemporally("<", newNS.CreationTimestamp.Time), "Ready is older than the rebuilt lab")
		Expect(get(ctx, Default, client.ObjectKey{Namespace: ns.Name, Name: lab.PKISecret}, &corev1.Secret{}).Data[lab.PKICACert]).NotTo(Equal(ca))
		Eventually(func(g Gomega) { expectLabOwnedBy(ctx, g, rebuilt, false) }).Should(Succeed())

		Expect(k8s.Delete(ctx, integration.MakePool(pool, template).Replicas(0).Obj())).To(Succeed())
		Eventually(leftovers(ctx, inStory(template))).WithTimeout(60 * time.Second).Should(BeEmpty())
	})

	It("reports a claimed lab lost, to the lab's admin and to its student, and never rebuilds it", func(ctx context.Context) {
		const template, pool, students = "del-claimed-namespace", "del-claimed-namespace", "students-del-claimed-namespace"
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, template).Replicas(1).Obj())).To(Succeed())
		createNamespace(ctx, students)
		Expect(k8s.Create(ctx, integration.MakeClaim(students, "alice").Pool(pool).GenerateKeyPair().Obj())).To(Succeed())
		Eventually(claimReady(ctx, students, "alice")).Should(HaveField("Status", metav1.ConditionTrue))
		name := claimOf(ctx, students, "alice").Status.Lab

		Expect(k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: lab.Namespace(name)}})).To(Succeed())
		Eventually(envReady(ctx, name)).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "NamespaceLost"),
			HaveField("Message", "Namespace lab-"+name+" was deleted while LabClaim students-del-claimed-namespace/alice held the lab; a claimed lab is never rebuilt")))
		Eventually(condition(ctx, &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: name}}, "Stalled")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(claimReady(ctx, students, "alice")).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "LabLost"),
			HaveField("Message", "Lab "+name+" was lost: its namespace was deleted while the claim held it")))
		Eventually(gone(ctx, client.ObjectKey{Name: lab.Namespace(name)}, &corev1.Namespace{})).WithTimeout(60 * time.Second).Should(BeTrue())
		Consistently(gone(ctx, client.ObjectKey{Name: lab.Namespace(name)}, &corev1.Namespace{})).Should(BeTrue(), "the claimed lab was rebuilt")

		By("ending the lost lab with its claim")
		Expect(k8s.Delete(ctx, integration.MakeClaim(students, "alice").Pool(pool).GenerateKeyPair().Obj())).To(Succeed())
		Eventually(gone(ctx, client.ObjectKey{Name: name}, &labforgev1alpha1.LabEnvironment{})).Should(BeTrue())
		Expect(k8s.Delete(ctx, integration.MakePool(pool, template).Replicas(0).Obj())).To(Succeed())
		Eventually(leftovers(ctx, inStory(template, students))).WithTimeout(60 * time.Second).Should(BeEmpty())
	})
})
