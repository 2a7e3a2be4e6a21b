package recovery_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/test/integration"
)

// stripOwnership removes owner references and finalizers, as restoring a backup without
// them does.
func stripOwnership(ctx context.Context, objs ...client.Object) {
	GinkgoHelper()
	patch := client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"ownerReferences":null,"finalizers":null}}`))
	for _, o := range objs {
		Expect(k8s.Patch(ctx, o, patch)).To(Succeed(), describe(o))
		Expect(o.GetOwnerReferences()).To(BeEmpty(), describe(o))
		Expect(o.GetFinalizers()).To(BeEmpty(), describe(o))
	}
}

var _ = Describe("An admin restoring labforge's objects from a backup that kept no owner references or finalizers", func() {
	It("gets the owner graph and the finalizers back after a restart, and deleting still cleans up", func(ctx context.Context) {
		const template, pool, students = "amnesia", "amnesia", "students-amnesia"
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).AdmitClaimsFrom(students).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, template).Replicas(2).Obj())).To(Succeed())
		createNamespace(ctx, students)
		Expect(k8s.Create(ctx, integration.MakeClaim(students, "alice").Pool(pool).GenerateKeyPair().Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakeClaim(students, "erin").Template(template).GenerateKeyPair().Obj())).To(Succeed())
		Eventually(claimReady(ctx, students, "alice")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(claimReady(ctx, students, "erin")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(poolStatus(ctx, pool)).Should(And(HaveField("ReadyReplicas", int32(2)), HaveField("BoundReplicas", int32(1))))

		alice, erin := claimOf(ctx, students, "alice"), claimOf(ctx, students, "erin")
		poolUID := get(ctx, Default, client.ObjectKey{Name: pool}, &labforgev1alpha1.LabPool{}).UID
		labs := labsOfTemplate(ctx, Default, template)
		Expect(labs).To(HaveLen(4))
		secretsBefore := map[string]map[string][]byte{}
		for _, s := range []string{"alice-kubeconfig", "alice-ssh", "erin-kubeconfig", "erin-ssh"} {
			secretsBefore[s] = get(ctx, Default, client.ObjectKey{Namespace: students, Name: s}, &corev1.Secret{}).Data
		}
		caBefore := map[string][]byte{}
		for name := range labs {
			caBefore[name] = get(ctx, Default, client.ObjectKey{Namespace: lab.Namespace(name), Name: lab.PKISecret}, &corev1.Secret{}).Data[lab.PKICACert]
		}

		By("restoring every object with its owner references and finalizers dropped, the operator down")
		stopManager()
		restored := []client.Object{
			get(ctx, Default, client.ObjectKey{Name: pool}, &labforgev1alpha1.LabPool{}),
			claimOf(ctx, students, "alice"), claimOf(ctx, students, "erin"),
		}
		for _, o := range labforgeObjects(ctx, Default, inStory(template, students)) {
			// VMIs are KubeVirt's, not labforge's: KubeVirt keeps its own graph.
			if _, vmi := o.(*kubevirtv1.VirtualMachineInstance); vmi {
				continue
			}
			restored = append(restored, o)
		}
		stripOwnership(ctx, restored...)
		startManager()

		By("rebuilding the owner graph: pool to its warm labs, each lab to its namespace and objects, each claim to its Secrets")
		Eventually(func(g Gomega) {
			g.Expect(get(ctx, g, client.ObjectKey{Name: pool}, &labforgev1alpha1.LabPool{}).Finalizers).To(Equal([]string{"labforge.dev/pool"}))
			for _, c := range []*labforgev1alpha1.LabClaim{alice, erin} {
				// A claim has no finalizer (decision 17), and is not given one.
				g.Expect(get(ctx, g, client.ObjectKeyFromObject(c), &labforgev1alpha1.LabClaim{}).Finalizers).To(BeEmpty(), c.Name)
				for _, s := range []string{c.Name + "-kubeconfig", c.Name + "-ssh"} {
					secret := get(ctx, g, client.ObjectKey{Namespace: students, Name: s}, &corev1.Secret{})
					g.Expect(secret.OwnerReferences).To(Equal(controllerRef("LabClaim", c.Name, c.UID)), s)
				}
			}
			now := labsOfTemplate(ctx, g, template)
			g.Expect(now).To(HaveLen(len(labs)))
			for name, env := range now {
				g.Expect(env.UID).To(Equal(labs[name].UID), "lab %s was replaced", name)
				g.Expect(env.Finalizers).To(Equal([]string{"labforge.dev/environment"}), name)
				switch {
				case env.Spec.ClaimRef == nil:
					g.Expect(env.OwnerReferences).To(Equal(controllerRef("LabPool", pool, poolUID)), name)
				case name == alice.Status.Lab:
					// A claim cannot own a cluster-scoped object; spec.claimRef binds it.
					g.Expect(env.OwnerReferences).To(BeEmpty(), name)
					g.Expect(env.Spec.ClaimRef.UID).To(Equal(alice.UID))
				default:
					g.Expect(name).To(Equal(erin.Status.Lab))
					g.Expect(env.OwnerReferences).To(BeEmpty(), name)
					g.Expect(env.Spec.ClaimRef.UID).To(Equal(erin.UID))
				}
				expectLabOwnedBy(ctx, g, env, env.Spec.ClaimRef != nil)
			}
		}).Should(Succeed())

		By("keeping every lab, its key material and the students' credentials as they were")
		for name := range labs {
			Eventually(envReady(ctx, name)).Should(HaveField("Status", metav1.ConditionTrue))
			Expect(get(ctx, Default, client.ObjectKey{Namespace: lab.Namespace(name), Name: lab.PKISecret}, &corev1.Secret{}).Data[lab.PKICACert]).
				To(Equal(caBefore[name]), "lab %s got a second CA", name)
		}
		for _, c := range []*labforgev1alpha1.LabClaim{alice, erin} {
			Eventually(claimReady(ctx, students, c.Name)).Should(HaveField("Status", metav1.ConditionTrue))
			Expect(claimOf(ctx, students, c.Name).Status.Lab).To(Equal(c.Status.Lab))
		}
		for s, data := range secretsBefore {
			Expect(get(ctx, Default, client.ObjectKey{Namespace: students, Name: s}, &corev1.Secret{}).Data).To(Equal(data), "Secret %s was rewritten", s)
		}

		By("cleaning up every lab once the claims, the pool and the template are deleted")
		Expect(k8s.Delete(ctx, alice)).To(Succeed())
		Expect(k8s.Delete(ctx, erin)).To(Succeed())
		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabPool{ObjectMeta: metav1.ObjectMeta{Name: pool}})).To(Succeed())
		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Name: template}})).To(Succeed())
		Eventually(leftovers(ctx, inStory(template, students))).WithTimeout(90 * time.Second).Should(BeEmpty())
		Expect(gone(ctx, client.ObjectKeyFromObject(alice), &labforgev1alpha1.LabClaim{})()).To(BeTrue())
		Expect(gone(ctx, client.ObjectKeyFromObject(erin), &labforgev1alpha1.LabClaim{})()).To(BeTrue())
		Expect(gone(ctx, client.ObjectKey{Name: pool}, &labforgev1alpha1.LabPool{})()).To(BeTrue())
	})
})
