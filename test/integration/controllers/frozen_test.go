package controllers_test

import (
	"context"
	"fmt"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/integration"
)

// handedOut is what a bound claim's student holds: what must not change under them.
type handedOut struct {
	status  labforgev1alpha1.LabClaimStatus
	labUID  types.UID
	terms   labforgev1alpha1.ClaimTerms
	secrets map[string]string // name -> resourceVersion
}

func handedOutTo(ctx context.Context, g Gomega, ns, name string, secrets ...string) handedOut {
	var c labforgev1alpha1.LabClaim
	g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &c)).To(Succeed())
	g.Expect(c.Status.Lab).NotTo(BeEmpty(), "claim %s is not bound", name)
	var env labforgev1alpha1.LabEnvironment
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: c.Status.Lab}, &env)).To(Succeed())
	g.Expect(env.DeletionTimestamp).To(BeNil(), "lab %s is being deleted", env.Name)
	g.Expect(env.Spec.Terms).NotTo(BeNil(), "lab %s has no terms", env.Name)
	h := handedOut{status: c.Status, labUID: env.UID, terms: *env.Spec.Terms, secrets: map[string]string{}}
	for _, s := range secrets {
		var secret corev1.Secret
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: s}, &secret)).To(Succeed())
		h.secrets[s] = secret.ResourceVersion
	}
	return h
}

// expectUnchanged checks that a claim still holds exactly what it was handed: the same
// lab, expiry, lifetime, login, ssh command and Secrets, and is still Ready.
func expectUnchanged(ctx context.Context, g Gomega, ns, name string, before handedOut) {
	names := make([]string, 0, len(before.secrets))
	for s := range before.secrets {
		names = append(names, s)
	}
	now := handedOutTo(ctx, g, ns, name, names...)
	g.Expect(now.labUID).To(Equal(before.labUID), "claim %s has another lab", name)
	g.Expect(now.terms).To(Equal(before.terms), "claim %s: the lab's terms changed", name)
	g.Expect(now.status.ExpiresAt.Equal(before.status.ExpiresAt)).To(BeTrue(), "claim %s expires at %v, was %v", name, now.status.ExpiresAt, before.status.ExpiresAt)
	g.Expect(now.status.BoundTime.Equal(before.status.BoundTime)).To(BeTrue(), "claim %s: boundTime %v, was %v", name, now.status.BoundTime, before.status.BoundTime)
	g.Expect(now.status.Lifetime).To(Equal(before.status.Lifetime), name)
	g.Expect(now.status.SSH).To(Equal(before.status.SSH), name)
	g.Expect(now.status.APIServerURL).To(Equal(before.status.APIServerURL), name)
	g.Expect(now.secrets).To(Equal(before.secrets), "claim %s: a Secret was rewritten", name)
	g.Expect(meta.IsStatusConditionTrue(now.status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue(), "claim %s is not Ready", name)
	g.Expect(meta.FindStatusCondition(now.status.Conditions, labforgev1alpha1.ConditionExpired)).To(BeNil(), name)
}

// nudge makes the claim controller look at a claim again (an annotation labforge ignores).
func nudge(ctx context.Context, ns, name, value string) {
	GinkgoHelper()
	c := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	Expect(k8s.Patch(ctx, c, client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"annotations":{"nudge":%q}}}`, value)))).To(Succeed())
}

var _ = Describe("An admin editing and deleting a template under bound claims", func() {
	It("changes nothing of a running claim: its expiry, maximum, login, Secrets and lab stay as bound", func(ctx context.Context) {
		const ns = "students-frozen"
		day := 24 * time.Hour
		t := integration.MakeTemplate("frozen").Version("v1.36.3").PodCIDR("10.200.0.0/16").AdmitClaimsFrom(ns).Obj()
		t.Spec.SSHUser = "student"
		t.Spec.Lifetime = labforgev1alpha1.Lifetime{Default: metav1.Duration{Duration: day}, Maximum: metav1.Duration{Duration: 2 * day}}
		Expect(k8s.Create(ctx, t)).To(Succeed())
		pool := integration.MakePool("frozen", "frozen").Replicas(1).MaxLabs(100).Obj()
		// The template's edits must not replace the warm lab under the story's feet.
		pool.Spec.UpdateStrategy.Type = labforgev1alpha1.OnDelete
		Expect(k8s.Create(ctx, pool)).To(Succeed())
		Eventually(poolStatus(ctx, "frozen")).Should(HaveField("ReadyReplicas", int32(1)))
		createNamespace(ctx, ns, nil)
		// frida takes the warm lab, carol boots one of the template; neither asks for a duration.
		Expect(k8s.Create(ctx, integration.MakeClaim(ns, "frida").Pool("frozen").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakeClaim(ns, "carol").Template("frozen").WithoutKeys().Obj())).To(Succeed())
		Eventually(claimCondition(ctx, ns, "frida", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(claimCondition(ctx, ns, "carol", "Ready")).WithTimeout(60 * time.Second).Should(HaveField("Status", metav1.ConditionTrue))
		// The refill is Ready before the clock moves (it would time out booting).
		Eventually(poolStatus(ctx, "frozen")).Should(And(HaveField("ReadyReplicas", int32(1)), HaveField("BoundReplicas", int32(1))))

		secrets := map[string][]string{"frida": {"frida-kubeconfig"}, "carol": {"carol-kubeconfig", "carol-ssh"}}
		before := map[string]handedOut{}
		for _, name := range []string{"frida", "carol"} {
			h := handedOutTo(ctx, Default, ns, name, secrets[name]...)
			st := h.status
			Expect(st.ExpiresAt.Sub(st.BoundTime.Time)).To(Equal(day), name)
			Expect(*st.Lifetime).To(Equal(t.Spec.Lifetime), name)
			Expect(st.SSH.User).To(Equal("student"), name)
			Expect(st.SSH.Command).To(Equal(fmt.Sprintf("ssh -p %d student@127.0.0.1", st.SSH.Port)), name)
			Expect(h.terms).To(Equal(labforgev1alpha1.ClaimTerms{BoundTime: *st.BoundTime, Lifetime: t.Spec.Lifetime, SSHUser: "student"}), name)
			before[name] = h
		}
		Expect(before["frida"].status.LaunchType).To(Equal(labforgev1alpha1.LaunchWarm))
		Expect(before["carol"].status.LaunchType).To(Equal(labforgev1alpha1.LaunchCold))
		var kubeconfig corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "frida-kubeconfig"}, &kubeconfig)).To(Succeed())
		Expect(kubeconfig.Annotations["labforge.dev/expires-at"]).To(Equal(before["frida"].status.ExpiresAt.UTC().Format(time.RFC3339)))
		stillAsBound := func(g Gomega) {
			for name, h := range before {
				expectUnchanged(ctx, g, ns, name, h)
			}
		}

		By("lowering the template's default to 1h and its maximum to 2h, three hours after the bind")
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "frozen"}, t)).To(Succeed())
		t.Spec.Lifetime = labforgev1alpha1.Lifetime{Default: metav1.Duration{Duration: time.Hour}, Maximum: metav1.Duration{Duration: 2 * time.Hour}}
		Expect(k8s.Update(ctx, t)).To(Succeed())
		clk.Set(3 * time.Hour)
		DeferCleanup(func() { clk.Set(0) })
		nudge(ctx, ns, "frida", "lifetime")
		nudge(ctx, ns, "carol", "lifetime")
		Consistently(stillAsBound).WithTimeout(3 * time.Second).Should(Succeed())

		By("changing the template's sshUser")
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "frozen"}, t)).To(Succeed())
		t.Spec.SSHUser = "trainee"
		Expect(k8s.Update(ctx, t)).To(Succeed())
		nudge(ctx, ns, "frida", "sshuser")
		nudge(ctx, ns, "carol", "sshuser")
		Consistently(stillAsBound).WithTimeout(3 * time.Second).Should(Succeed())

		By("binding a new claim to the warm lab built before the edits: the edited lifetime, the login its VMs were made with")
		Expect(k8s.Create(ctx, integration.MakeClaim(ns, "dave").Pool("frozen").Obj())).To(Succeed())
		Eventually(claimCondition(ctx, ns, "dave", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		dave := handedOutTo(ctx, Default, ns, "dave")
		edited := labforgev1alpha1.Lifetime{Default: metav1.Duration{Duration: time.Hour}, Maximum: metav1.Duration{Duration: 2 * time.Hour}}
		Expect(dave.status.LaunchType).To(Equal(labforgev1alpha1.LaunchWarm))
		Expect(*dave.status.Lifetime).To(Equal(edited))
		Expect(dave.status.ExpiresAt.Sub(dave.status.BoundTime.Time)).To(Equal(time.Hour))
		Expect(dave.status.SSH.Command).To(Equal(fmt.Sprintf("ssh -p %d student@127.0.0.1", dave.status.SSH.Port)))
		Expect(dave.terms).To(Equal(labforgev1alpha1.ClaimTerms{BoundTime: *dave.status.BoundTime, Lifetime: edited, SSHUser: "student"}))
		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "dave"}})).To(Succeed())

		By("deleting the template")
		Expect(k8s.Delete(ctx, t)).To(Succeed())
		nudge(ctx, ns, "frida", "deleted")
		nudge(ctx, ns, "carol", "deleted")
		Consistently(stillAsBound).WithTimeout(3 * time.Second).Should(Succeed())

		By("refusing an extension past the maximum of the bind, 48h, visibly")
		frida := &labforgev1alpha1.LabClaim{}
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "frida"}, frida)).To(Succeed())
		patch := client.MergeFrom(frida.DeepCopy())
		frida.Spec.Duration = &metav1.Duration{Duration: 72 * time.Hour}
		Expect(k8s.Patch(ctx, frida, patch)).To(Succeed())
		Eventually(claimCondition(ctx, ns, "frida", labforgev1alpha1.ConditionExtensionRefused)).Should(And(
			HaveField("Status", metav1.ConditionTrue), HaveField("Reason", "DurationTooLong"),
			HaveField("Message", "spec.duration 72h0m0s is longer than LabTemplate frozen allowed when the claim was bound (lifetime.maximum 48h0m0s); "+
				"the claim keeps its duration of 24h0m0s and expires at "+before["frida"].status.ExpiresAt.UTC().Format(time.RFC3339))))
		Eventually(func(g Gomega) int64 {
			var c labforgev1alpha1.LabClaim
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(frida), &c)).To(Succeed())
			return c.Status.ObservedGeneration
		}).Should(Equal(frida.Generation))
		expectUnchanged(ctx, Default, ns, "frida", before["frida"])

		By("accepting an extension within it, 40h, longer than the edited template or the API's defaults would allow")
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "frida"}, frida)).To(Succeed())
		patch = client.MergeFrom(frida.DeepCopy())
		frida.Spec.Duration = &metav1.Duration{Duration: 40 * time.Hour}
		Expect(k8s.Patch(ctx, frida, patch)).To(Succeed())
		extended := before["frida"].status.BoundTime.Add(40 * time.Hour)
		Eventually(func(g Gomega) {
			var c labforgev1alpha1.LabClaim
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(frida), &c)).To(Succeed())
			g.Expect(c.Status.ObservedGeneration).To(Equal(frida.Generation))
			g.Expect(c.Status.ExpiresAt.Time).To(BeTemporally("==", extended))
			g.Expect(meta.FindStatusCondition(c.Status.Conditions, labforgev1alpha1.ConditionExtensionRefused)).To(BeNil())
			g.Expect(meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue())
			g.Expect(c.Status.Lifetime).To(Equal(before["frida"].status.Lifetime))
			var s corev1.Secret
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "frida-kubeconfig"}, &s)).To(Succeed())
			g.Expect(s.Annotations["labforge.dev/expires-at"]).To(Equal(extended.UTC().Format(time.RFC3339)))
		}).Should(Succeed())

		By("rebuilding a wiped status from the lab's terms: the same bind time, expiry, lifetime and login")
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: "carol"}, &labforgev1alpha1.LabClaim{})).To(Succeed())
		carol := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "carol"}}
		Expect(k8s.Status().Patch(ctx, carol, client.RawPatch(types.MergePatchType,
			[]byte(`{"status":{"boundTime":null,"expiresAt":null,"lifetime":null,"ssh":null,"conditions":null}}`)))).To(Succeed())
		Expect(carol.Status.BoundTime).To(BeNil())
		Eventually(func(g Gomega) {
			h := handedOutTo(ctx, g, ns, "carol", secrets["carol"]...)
			g.Expect(h.status.BoundTime).NotTo(BeNil())
			g.Expect(h.status.SSH).NotTo(BeNil())
		}).Should(Succeed())
		Consistently(func(g Gomega) { expectUnchanged(ctx, g, ns, "carol", before["carol"]) }).WithTimeout(2 * time.Second).Should(Succeed())
	})
})
