package recovery_test

import (
	"context"
	"encoding/base64"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/test/integration"
)

var _ = Describe("Someone who may create namespaces pre-creating a pool's next lab namespace", func() {
	It("gets it refused: the lab fails naming it, and nothing in it is used, written or deleted", func(ctx context.Context) {
		const template, pool, env = "foreign", "foreign", "foreign-0"
		ns := lab.Namespace(env)
		forged := func(uid string) string {
			return "v1." + uid + "." + base64.RawURLEncoding.EncodeToString(make([]byte, 32))
		}
		labels := managedLabels(template, map[string]string{labforgev1alpha1.LabelEnvironment: env, labforgev1alpha1.LabelPool: pool})
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels,
			Annotations: map[string]string{ownership.AnnotationProof: forged("00000000-0000-4000-8000-000000000017")}}})).To(Succeed())
		// What the intruder leaves for the lab to pick up: a template snapshot of their
		// own, a "PKI" whose CA they hold, and something of theirs.
		planted := []client.Object{
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: render.TemplateSnapshot, Labels: labels},
				Data: map[string]string{"spec": "{}"}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: lab.PKISecret, Labels: labels},
				Data: map[string][]byte{lab.PKICACert: []byte("not a CA")}},
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "theirs"}, Data: map[string]string{"a": "b"}},
		}
		for _, o := range planted {
			Expect(k8s.Create(ctx, o)).To(Succeed(), describe(o))
		}
		before := resourceVersions(append([]client.Object{get(ctx, Default, client.ObjectKey{Name: ns}, &corev1.Namespace{})}, planted...))

		By("creating the pool, whose first lab is " + env)
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).Obj())).To(Succeed())
		p := integration.MakePool(pool, template).Replicas(1).Obj()
		// Room for one lab only: the failed lab stays, as the circuit breaker's evidence.
		p.Spec.MaxLabs = 1
		Expect(k8s.Create(ctx, p)).To(Succeed())
		want := "Namespace " + ns + " exists and labforge did not create it for this lab (it carries no valid labforge.dev/proof annotation); " +
			"nothing in it is used or deleted. Delete the namespace to have the lab built"
		Eventually(envReady(ctx, env)).Should(And(HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", "ForeignNamespace"), HaveField("Message", want)))
		Expect(condition(ctx, &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: env}}, labforgev1alpha1.ConditionStalled)(Default)).
			To(And(HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "ForeignNamespace")))
		lab0 := get(ctx, Default, client.ObjectKey{Name: env}, &labforgev1alpha1.LabEnvironment{})
		Expect(lab0.Status.NamespaceUID).To(BeEmpty())

		By("forging a proof that names the lab's own UID")
		nsObj := get(ctx, Default, client.ObjectKey{Name: ns}, &corev1.Namespace{})
		patch := client.MergeFrom(nsObj.DeepCopy())
		nsObj.Annotations[ownership.AnnotationProof] = forged(string(lab0.UID))
		Expect(k8s.Patch(ctx, nsObj, patch)).To(Succeed())
		before[describe(nsObj)] = nsObj.ResourceVersion

		expectUntouched := func(g Gomega) {
			now := []client.Object{get(ctx, g, client.ObjectKey{Name: ns}, &corev1.Namespace{})}
			for _, o := range planted {
				now = append(now, get(ctx, g, client.ObjectKeyFromObject(o), o.DeepCopyObject().(client.Object)))
			}
			g.Expect(resourceVersions(now)).To(Equal(before), "something in the pre-created namespace was written")
			for _, o := range now {
				g.Expect(o.GetOwnerReferences()).To(BeEmpty(), describe(o))
				g.Expect(o.GetDeletionTimestamp()).To(BeNil(), describe(o))
			}
			for _, list := range []client.ObjectList{&corev1.ResourceQuotaList{}, &corev1.LimitRangeList{}, &networkingv1.NetworkPolicyList{},
				&kubevirtv1.VirtualMachineList{}, &corev1.ServiceList{}, &corev1.SecretList{}} {
				g.Expect(k8s.List(ctx, list, client.InNamespace(ns), client.MatchingLabels{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue})).To(Succeed())
				n := 0
				switch l := list.(type) {
				case *corev1.SecretList:
					n = len(l.Items) - 1 // the planted one
				case *corev1.ResourceQuotaList:
					n = len(l.Items)
				case *corev1.LimitRangeList:
					n = len(l.Items)
				case *networkingv1.NetworkPolicyList:
					n = len(l.Items)
				case *kubevirtv1.VirtualMachineList:
					n = len(l.Items)
				case *corev1.ServiceList:
					n = len(l.Items)
				}
				g.Expect(n).To(BeZero(), "labforge wrote a %T into the pre-created namespace", list)
			}
		}
		Consistently(expectUntouched).WithTimeout(3 * time.Second).Should(Succeed())
		Expect(envReady(ctx, env)(Default)).To(HaveField("Reason", "ForeignNamespace"))
		Expect(integration.Events(ctx, k8s, "LabEnvironment", "", env)(Default)).To(Equal([]string{"Warning/ForeignNamespace: " + want}))

		By("deleting the pool: its lab goes, the namespace and all in it stay")
		Expect(k8s.Delete(ctx, p)).To(Succeed())
		Eventually(gone(ctx, client.ObjectKey{Name: env}, &labforgev1alpha1.LabEnvironment{})).Should(BeTrue())
		Eventually(gone(ctx, client.ObjectKey{Name: pool}, &labforgev1alpha1.LabPool{})).Should(BeTrue())
		// The orphan sweep sees a labforge-labelled lab namespace whose lab is gone: only a
		// valid proof would make it labforge's to delete.
		Consistently(expectUntouched).WithTimeout(3 * time.Second).Should(Succeed())

		Expect(k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Name: template}})).To(Succeed())
	})
})

var _ = Describe("A student forging their claim's kubeconfig Secret with the lab's CA, which root on the lab gives them", func() {
	It("is not adopted: the claim says SecretConflict and the Secret stays theirs, untouched", func(ctx context.Context) {
		const template, pool, students = "forged-kubeconfig", "forged-kubeconfig", "students-forged-kubeconfig"
		Expect(k8s.Create(ctx, integration.MakeTemplate(template).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, template).Replicas(1).Obj())).To(Succeed())
		createNamespace(ctx, students)
		Expect(k8s.Create(ctx, integration.MakeClaim(students, "mallory").Pool(pool).GenerateKeyPair().Obj())).To(Succeed())
		Eventually(claimReady(ctx, students, "mallory")).Should(HaveField("Status", metav1.ConditionTrue))
		claim := claimOf(ctx, students, "mallory")
		labPKI := get(ctx, Default, client.ObjectKey{Namespace: lab.Namespace(claim.Status.Lab), Name: lab.PKISecret}, &corev1.Secret{})
		ca, err := pki.ParseKeyPair(labPKI.Data[lab.PKICACert], labPKI.Data[lab.PKICAKey])
		Expect(err).NotTo(HaveOccurred())
		real := get(ctx, Default, client.ObjectKey{Namespace: students, Name: "mallory-kubeconfig"}, &corev1.Secret{})

		By("replacing the kubeconfig Secret, while the operator is down, with one of the student's own making")
		stopManager()
		Expect(k8s.Delete(ctx, real)).To(Succeed())
		Eventually(gone(ctx, client.ObjectKeyFromObject(real), &corev1.Secret{})).Should(BeTrue())
		now := time.Now()
		cert, err := ca.IssueClient("student:"+students+":mallory", nil, now.Add(-time.Minute), now.Add(time.Hour), nil)
		Expect(err).NotTo(HaveOccurred())
		kubeconfig, err := pki.Kubeconfig(claim.Status.Lab, real.Annotations[render.AnnotationServer], "", ca.CertPEM(), "student:"+students+":mallory", cert)
		Expect(err).NotTo(HaveOccurred())
		annotations := map[string]string{}
		for k, v := range real.Annotations {
			if k != ownership.AnnotationProof {
				annotations[k] = v
			}
		}
		forged := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "mallory-kubeconfig", Labels: real.Labels, Annotations: annotations},
			Type: corev1.SecretTypeOpaque, Data: map[string][]byte{render.KubeconfigKey: kubeconfig}}
		Expect(k8s.Create(ctx, forged)).To(Succeed())
		startManager()

		Eventually(claimReady(ctx, students, "mallory")).Should(And(HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "SecretConflict"),
			HaveField("Message", "Secret "+students+"/mallory-kubeconfig exists and does not belong to this claim; delete or rename it")))
		Consistently(func(g Gomega) {
			s := get(ctx, g, client.ObjectKeyFromObject(forged), &corev1.Secret{})
			g.Expect(s.OwnerReferences).To(BeEmpty())
			g.Expect(s.ResourceVersion).To(Equal(forged.ResourceVersion))
		}).WithTimeout(2 * time.Second).Should(Succeed())

		// The forged Secret first: once the claim is gone it is an orphan by its labels, and
		// the sweep may delete it between the two deletes (it did, once).
		Expect(k8s.Delete(ctx, forged)).To(Succeed())
		Expect(k8s.Delete(ctx, claim)).To(Succeed())
		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabPool{ObjectMeta: metav1.ObjectMeta{Name: pool}})).To(Succeed())
		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Name: template}})).To(Succeed())
	})
})
