package recovery_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/test/integration"
)

// managedLabels are the labels labforge puts on what it creates for template.
func managedLabels(template string, extra map[string]string) map[string]string {
	labels := map[string]string{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue, labforgev1alpha1.LabelTemplate: template}
	for k, v := range extra {
		labels[k] = v
	}
	return labels
}

func orphanLab(name, template string, labels map[string]string, pool string, claim *labforgev1alpha1.ClaimReference) *labforgev1alpha1.LabEnvironment {
	env := &labforgev1alpha1.LabEnvironment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: template}, ClaimRef: claim},
	}
	if pool != "" {
		env.Spec.PoolRef = &labforgev1alpha1.LocalObjectReference{Name: pool}
	}
	return env
}

var _ = Describe("Objects labelled as labforge's whose owner is gone", func() {
	It("are removed, while live objects and objects not labelled as labforge's are never touched", func(ctx context.Context) {
		const template, pool, students = "orphans", "orphans", "students-orphans"
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, template).Replicas(1).Obj())).To(Succeed())
		createNamespace(ctx, students)
		Expect(k8s.Create(ctx, integration.MakeClaim(students, "live").Pool(pool).GenerateKeyPair().Obj())).To(Succeed())
		// A claim of the same name as a lab's claimRef, but another object (another UID).
		reborn := integration.MakeClaim(students, "reborn").Pool("no-such-pool").GenerateKeyPair().Obj()
		Expect(k8s.Create(ctx, reborn)).To(Succeed())
		Eventually(claimReady(ctx, students, "live")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(claimReady(ctx, students, "reborn")).Should(HaveField("Reason", "PoolNotFound"))
		Eventually(poolStatus(ctx, pool)).Should(And(HaveField("ReadyReplicas", int32(1)), HaveField("BoundReplicas", int32(1))))
		// The pool may have booted a lab too many while the claim was in line: wait until
		// it scaled back down, so that only what the sweep does can change anything.
		Eventually(func(g Gomega) []string {
			var names []string
			for name, env := range labsOfTemplate(ctx, g, template) {
				g.Expect(env.DeletionTimestamp).To(BeNil(), name)
				names = append(names, name)
			}
			return names
		}).WithTimeout(60 * time.Second).Should(HaveLen(2))
		// ... and until both are Ready and the pool's status says so: a refill still booting
		// when the snapshot below is taken changes the pool's status after it, which is the
		// pool's work, not the sweep's.
		Eventually(func(g Gomega) {
			for name, env := range labsOfTemplate(ctx, g, template) {
				g.Expect(meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue(), name)
			}
			st := poolStatus(ctx, pool)(g)
			g.Expect(st.ReadyReplicas).To(Equal(int32(1)))
			g.Expect(st.BoundReplicas).To(Equal(int32(1)))
		}).WithTimeout(60 * time.Second).Should(Succeed())

		By("noting every live object as it is")
		live := append(labforgeObjects(ctx, Default, inStory(template, students)),
			get(ctx, Default, client.ObjectKey{Name: pool}, &labforgev1alpha1.LabPool{}),
			claimOf(ctx, students, "live"), claimOf(ctx, students, "reborn"))
		Expect(describeAll(live)).To(ContainElements("Namespace lab-orphans-0", "Namespace lab-orphans-1",
			"Secret students-orphans/live-kubeconfig", "Secret students-orphans/live-ssh"))
		before := resourceVersions(live)

		By("restoring orphans, with the operator down, as a restore after their owners were deleted would")
		stopManager()
		ghost := &labforgev1alpha1.ClaimReference{Namespace: students, Name: "ghost", UID: types.UID("00000000-0000-4000-8000-000000000001")}
		stale := &labforgev1alpha1.ClaimReference{Namespace: students, Name: "reborn", UID: types.UID("00000000-0000-4000-8000-000000000002")}
		orphans := []client.Object{
			// A pool's lab whose pool is gone.
			orphanLab("orphans-gone-pool", template, managedLabels(template, map[string]string{labforgev1alpha1.LabelPool: "gone"}), "gone", nil),
			// A lab bound to a claim that is gone, and one bound to an earlier claim of a name
			// a new claim has now.
			orphanLab("orphans-ghost-claim", template, managedLabels(template, nil), "", ghost),
			orphanLab("orphans-stale-claim", template, managedLabels(template, nil), "", stale),
			// A lab namespace whose LabEnvironment is gone, with something in it: labforge
			// made it (it carries the proof, under the operator's key).
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab-orphans-ghost",
				Labels: managedLabels(template, map[string]string{labforgev1alpha1.LabelEnvironment: "orphans-ghost"}),
				Annotations: map[string]string{ownership.AnnotationProof: operatorProver(ctx).Proof(
					ownership.LabNamespace("lab-orphans-ghost", "orphans-ghost", "00000000-0000-4000-8000-000000000004", ""))}}},
			// A claim's Secrets whose claim is gone.
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "ghost-kubeconfig",
				Labels: managedLabels(template, map[string]string{"labforge.dev/claim": "ghost"})}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "ghost-ssh",
				Labels: managedLabels(template, map[string]string{"labforge.dev/claim": "ghost"})}},
		}
		for _, o := range orphans {
			Expect(k8s.Create(ctx, o)).To(Succeed(), describe(o))
		}
		Expect(k8s.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "lab-orphans-ghost", Name: "labforge-template",
			Labels: managedLabels(template, map[string]string{labforgev1alpha1.LabelEnvironment: "orphans-ghost"})}})).To(Succeed())

		By("restoring, beside them, look-alikes that do not say they are labforge's, and starting the operator")
		notOurs := []client.Object{
			orphanLab("orphans-not-ours", template, nil, "", ghost),
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab-not-ours", Labels: map[string]string{labforgev1alpha1.LabelEnvironment: "not-ours"}}},
			// Labelled as labforge's, with no proof: anyone who may create namespaces
			// could have made it.
			&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab-orphans-forged",
				Labels: managedLabels(template, map[string]string{labforgev1alpha1.LabelEnvironment: "orphans-forged"})}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "ghost2-kubeconfig", Labels: map[string]string{"labforge.dev/claim": "ghost2"}}},
		}
		for _, o := range notOurs {
			Expect(k8s.Create(ctx, o)).To(Succeed(), describe(o))
		}
		startManager()

		By("deleting every orphan")
		for _, o := range orphans {
			Eventually(gone(ctx, client.ObjectKeyFromObject(o), o)).WithTimeout(60*time.Second).Should(BeTrue(), describe(o))
		}
		orphanLabs := map[string]bool{"orphans-gone-pool": true, "orphans-ghost-claim": true, "orphans-stale-claim": true, "orphans-ghost": true}
		Eventually(leftovers(ctx, func(o client.Object) bool {
			return orphanLabs[o.GetLabels()[labforgev1alpha1.LabelEnvironment]]
		})).WithTimeout(60 * time.Second).Should(BeEmpty())

		By("writing nothing to a live object, and leaving the look-alikes alone")
		Consistently(func(g Gomega) {
			now := append(labforgeObjects(ctx, g, inStory(template, students)),
				get(ctx, g, client.ObjectKey{Name: pool}, &labforgev1alpha1.LabPool{}),
				get(ctx, g, client.ObjectKey{Namespace: students, Name: "live"}, &labforgev1alpha1.LabClaim{}),
				get(ctx, g, client.ObjectKey{Namespace: students, Name: "reborn"}, &labforgev1alpha1.LabClaim{}))
			versions := resourceVersions(now)
			for name, rv := range before {
				g.Expect(versions).To(HaveKeyWithValue(name, rv), "%s changed", name)
			}
			for _, o := range notOurs {
				current := o.DeepCopyObject().(client.Object)
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(o), current)).To(Succeed(), describe(o))
				g.Expect(current.GetDeletionTimestamp()).To(BeNil(), describe(o))
			}
		}).Should(Succeed())

		By("cleaning up the rest")
		for _, o := range notOurs {
			Expect(k8s.Delete(ctx, o)).To(Succeed())
		}
		Expect(k8s.Delete(ctx, claimOf(ctx, students, "live"))).To(Succeed())
		Expect(k8s.Delete(ctx, reborn)).To(Succeed())
		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabPool{ObjectMeta: metav1.ObjectMeta{Name: pool}})).To(Succeed())
		Eventually(leftovers(ctx, inStory(template, students))).WithTimeout(90 * time.Second).Should(BeEmpty())
	})

	It("include a lab namespace left by an earlier LabEnvironment of the same name: the new one gets a namespace of its own", func(ctx context.Context) {
		const template, name = "orphans-reborn", "orphans-reborn"
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).Obj())).To(Succeed())
		earlier := types.UID("00000000-0000-4000-8000-000000000003")
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:   lab.Namespace(name),
			Labels: managedLabels(template, map[string]string{labforgev1alpha1.LabelEnvironment: name}),
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "labforge.dev/v1alpha1", Kind: "LabEnvironment", Name: name, UID: earlier,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
		}})).To(Succeed())
		env := orphanLab(name, template, nil, "", nil)
		Expect(k8s.Create(ctx, env)).To(Succeed())

		Eventually(envReady(ctx, name)).WithTimeout(60 * time.Second).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(func(g Gomega) {
			expectLabOwnedBy(ctx, g, env, false)
		}).Should(Succeed())

		Expect(k8s.Delete(ctx, env)).To(Succeed())
		Eventually(leftovers(ctx, inStory(template))).WithTimeout(60 * time.Second).Should(BeEmpty())
	})
})
