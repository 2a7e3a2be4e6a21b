package controllers_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

func claimCondition(ctx context.Context, ns, name, conditionType string) func(Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		var c labforgev1alpha1.LabClaim
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &c)).To(Succeed())
		cond := meta.FindStatusCondition(c.Status.Conditions, conditionType)
		g.Expect(cond).NotTo(BeNil(), "no %s condition yet", conditionType)
		return *cond
	}
}

func poolStatus(ctx context.Context, name string) func(Gomega) labforgev1alpha1.LabPoolStatus {
	return func(g Gomega) labforgev1alpha1.LabPoolStatus {
		var p labforgev1alpha1.LabPool
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, &p)).To(Succeed())
		return p.Status
	}
}

func createNamespace(ctx context.Context, name string, labels map[string]string) {
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})).To(Succeed())
}

var _ = Describe("A student claiming a lab", func() {
	It("from a warm pool gets a lab at once, with a kubeconfig that expires with the claim", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-warm").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("warm", "claim-warm").Replicas(2).MaxLabs(100).Obj())).To(Succeed())
		Eventually(poolStatus(ctx, "warm")).Should(HaveField("ReadyReplicas", int32(2)))

		createNamespace(ctx, "students-warm", nil)
		claim := integration.MakeClaim("students-warm", "alice").Pool("warm").Obj()
		claim.Spec.SSH.GenerateKeyPair = true
		claim.Spec.Duration = &metav1.Duration{Duration: time.Hour}
		Expect(k8s.Create(ctx, claim)).To(Succeed())
		Eventually(claimCondition(ctx, "students-warm", "alice", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))

		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		st := claim.Status
		Expect(st.LaunchType).To(Equal(labforgev1alpha1.LaunchWarm))
		Expect(st.Lab).To(MatchRegexp(`^warm-[01]$`))
		Expect(st.SSH).NotTo(BeNil())
		Expect(st.SSH.Command).To(Equal(fmt.Sprintf("ssh -p %d ubuntu@127.0.0.1", st.SSH.Port)))
		Expect(st.APIServerURL).To(MatchRegexp(`^https://127\.0\.0\.1:3\d{4}$`))
		Expect(st.KubeconfigSecretName).To(Equal("alice-kubeconfig"))
		Expect(st.SSHKeySecretName).To(Equal("alice-ssh"))
		Expect(st.ExpiresAt.Sub(st.BoundTime.Time)).To(Equal(time.Hour))

		By("handing over a kubeconfig whose CA is the lab's and whose certificate expires with the claim")
		var kubeconfig corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students-warm", Name: "alice-kubeconfig"}, &kubeconfig)).To(Succeed())
		cfg, err := clientcmd.Load(kubeconfig.Data["value"])
		Expect(err).NotTo(HaveOccurred())
		var pkiSecret corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(st.Lab), Name: lab.PKISecret}, &pkiSecret)).To(Succeed())
		cluster := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
		Expect(cluster.CertificateAuthorityData).To(Equal(pkiSecret.Data[lab.PKICACert]))
		Expect(cluster.Server).To(Equal(st.APIServerURL))
		block, _ := pem.Decode(cfg.AuthInfos[cfg.Contexts[cfg.CurrentContext].AuthInfo].ClientCertificateData)
		cert, err := x509.ParseCertificate(block.Bytes)
		Expect(err).NotTo(HaveOccurred())
		Expect(cert.NotAfter.Unix()).To(Equal(st.ExpiresAt.Unix()))
		Expect(cert.Subject.Organization).To(Equal([]string{"kubeadm:cluster-admins"}))

		By("opening SSH and the API on NodePorts only now, and putting the student's keys in the VMs")
		var access corev1.Service
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(st.Lab), Name: lab.APIService}, &access)).To(Succeed())
		Expect(access.Spec.Type).To(Equal(corev1.ServiceTypeNodePort))
		Expect(access.Spec.ExternalTrafficPolicy).To(Equal(corev1.ServiceExternalTrafficPolicyLocal))
		nodePorts := map[string]int32{}
		for _, p := range access.Spec.Ports {
			nodePorts[p.Name] = p.NodePort
		}
		Expect(st.SSH.Port).To(Equal(nodePorts["ssh"]))
		Expect(st.APIServerURL).To(HaveSuffix(":%d", nodePorts["api"]))
		var keys corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(st.Lab), Name: lab.AccessCredentialsSecret}, &keys)).To(Succeed())
		Expect(keys.Data).To(HaveLen(2))
		var sshSecret corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students-warm", Name: "alice-ssh"}, &sshSecret)).To(Succeed())
		Expect(sshSecret.Type).To(Equal(corev1.SecretTypeSSHAuth))
		var pubs []string
		for _, v := range keys.Data {
			pubs = append(pubs, string(v))
		}
		Expect(pubs).To(ContainElement(string(sshSecret.Data["ssh-publickey"])))

		By("keeping the other warm lab closed and refilling the pool")
		var envs labforgev1alpha1.LabEnvironmentList
		Expect(k8s.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: "warm"})).To(Succeed())
		for _, env := range envs.Items {
			if env.Name != st.Lab {
				// A refill may not have its Service yet.
				var closed corev1.Service
				if err := k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(env.Name), Name: lab.APIService}, &closed); apierrors.IsNotFound(err) {
					continue
				} else {
					Expect(err).NotTo(HaveOccurred())
				}
				Expect(closed.Spec.Type).To(Equal(corev1.ServiceTypeClusterIP), "warm lab %s has NodePorts", env.Name)
				Expect(closed.Spec.Ports).To(HaveLen(1))
				Expect(closed.Spec.Ports[0].NodePort).To(BeZero())
			}
		}
		Eventually(poolStatus(ctx, "warm")).Should(And(HaveField("ReadyReplicas", int32(2)), HaveField("BoundReplicas", int32(1))))

		By("telling the student in one event, with no finalizer to hold the claim")
		Eventually(eventReasons(ctx, "LabClaim", "alice")).Should(Equal([]string{"Normal/HandedOver"}))
		Expect(claim.Finalizers).To(BeEmpty())

		By("deleting the lab and the Secrets when the claim is released")
		Expect(k8s.Delete(ctx, claim)).To(Succeed())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim))).To(BeTrue(), "the claim is gone at once")
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: st.Lab}, &labforgev1alpha1.LabEnvironment{}))
		}).WithTimeout(60 * time.Second).Should(BeTrue())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: "students-warm", Name: "alice-kubeconfig"}, &corev1.Secret{}))
		}).Should(BeTrue())
	})

	It("from an empty pool waits in line, then gets the lab the pool boots for it", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-empty").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		pool := integration.MakePool("empty", "claim-empty").Replicas(0).MaxLabs(100).Obj()
		Expect(k8s.Create(ctx, pool)).To(Succeed())
		createNamespace(ctx, "students-empty", nil)
		Expect(k8s.Create(ctx, integration.MakeClaim("students-empty", "bob").Pool("empty").Obj())).To(Succeed())
		Eventually(claimCondition(ctx, "students-empty", "bob", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		var c labforgev1alpha1.LabClaim
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students-empty", Name: "bob"}, &c)).To(Succeed())
		Expect(c.Status.LaunchType).To(Equal(labforgev1alpha1.LaunchCold))
		Eventually(poolStatus(ctx, "empty")).Should(And(HaveField("BoundReplicas", int32(1)), HaveField("Replicas", int32(0)), HaveField("WaitingClaims", int32(0))))
	})

	It("by the dozen: 30 claims at once on a pool of 10 are all served, 10 warm, no lab twice", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-burst").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		pool := integration.MakePool("burst", "claim-burst").Replicas(10).MaxLabs(100).Obj()
		pool.Spec.MaxBooting = 10
		Expect(k8s.Create(ctx, pool)).To(Succeed())
		Eventually(poolStatus(ctx, "burst")).WithTimeout(60 * time.Second).Should(HaveField("ReadyReplicas", int32(10)))
		createNamespace(ctx, "students-burst", nil)

		var wg sync.WaitGroup
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				Expect(k8s.Create(ctx, integration.MakeClaim("students-burst", fmt.Sprintf("s%02d", i)).Pool("burst").Obj())).To(Succeed())
			}()
		}
		wg.Wait()
		Eventually(func(g Gomega) {
			var claims labforgev1alpha1.LabClaimList
			g.Expect(k8s.List(ctx, &claims, client.InNamespace("students-burst"))).To(Succeed())
			g.Expect(claims.Items).To(HaveLen(30))
			for _, c := range claims.Items {
				g.Expect(meta.IsStatusConditionTrue(c.Status.Conditions, "Ready")).To(BeTrue(), "claim %s not ready", c.Name)
			}
		}).WithTimeout(90 * time.Second).Should(Succeed())

		var claims labforgev1alpha1.LabClaimList
		Expect(k8s.List(ctx, &claims, client.InNamespace("students-burst"))).To(Succeed())
		labs := map[string]string{}
		warm := 0
		for _, c := range claims.Items {
			Expect(labs).NotTo(HaveKey(c.Status.Lab), "lab %s bound to %s and %s", c.Status.Lab, labs[c.Status.Lab], c.Name)
			labs[c.Status.Lab] = c.Name
			if c.Status.LaunchType == labforgev1alpha1.LaunchWarm {
				warm++
			}
			var env labforgev1alpha1.LabEnvironment
			Expect(k8s.Get(ctx, client.ObjectKey{Name: c.Status.Lab}, &env)).To(Succeed())
			Expect(env.Spec.ClaimRef.UID).To(Equal(c.UID))
		}
		Expect(warm).To(Equal(10))
		Eventually(poolStatus(ctx, "burst")).WithTimeout(60 * time.Second).Should(And(
			HaveField("ReadyReplicas", int32(10)), HaveField("BoundReplicas", int32(30)), HaveField("WaitingClaims", int32(0))))
	})

	It("from a namespace the pool does not admit is refused, with no lab taken", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-closed").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		pool := integration.MakePool("closed", "claim-closed").Replicas(1).MaxLabs(100).Obj()
		pool.Spec.ClaimNamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"labs": "allowed"}}
		Expect(k8s.Create(ctx, pool)).To(Succeed())
		Eventually(poolStatus(ctx, "closed")).Should(HaveField("ReadyReplicas", int32(1)))
		createNamespace(ctx, "outsiders", nil)
		Expect(k8s.Create(ctx, integration.MakeClaim("outsiders", "mallory").Pool("closed").Obj())).To(Succeed())
		Eventually(claimCondition(ctx, "outsiders", "mallory", "Ready")).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "NamespaceNotAllowed"),
			HaveField("Message", "LabPool closed does not admit claims from namespace outsiders")))
		Eventually(claimCondition(ctx, "outsiders", "mallory", "Stalled")).Should(HaveField("Status", metav1.ConditionTrue))
		Consistently(poolStatus(ctx, "closed")).WithTimeout(time.Second).Should(HaveField("BoundReplicas", int32(0)))
	})

	It("with a key the API accepts but is not a real key is told so", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-key").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("key", "claim-key").Replicas(1).MaxLabs(100).Obj())).To(Succeed())
		createNamespace(ctx, "students-key", nil)
		claim := integration.MakeClaim("students-key", "carol").Pool("key").Obj()
		claim.Spec.SSH.AuthorizedKeys = []string{"ssh-ed25519 AAAAnotbase64key carol"}
		Expect(k8s.Create(ctx, claim)).To(Succeed())
		Eventually(claimCondition(ctx, "students-key", "carol", "Ready")).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "InvalidSSHKey")))
	})

	It("that outlives its duration has its lab deleted and stays, Expired; an extension moves the expiry first", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-expiry").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("expiry", "claim-expiry").Replicas(1).MaxLabs(100).Obj())).To(Succeed())
		createNamespace(ctx, "students-expiry", nil)
		claim := integration.MakeClaim("students-expiry", "dave").Pool("expiry").Obj()
		claim.Spec.Duration = &metav1.Duration{Duration: time.Hour}
		Expect(k8s.Create(ctx, claim)).To(Succeed())
		Eventually(claimCondition(ctx, "students-expiry", "dave", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		labName, bound := claim.Status.Lab, claim.Status.BoundTime.Time

		By("extending the claim to 3h re-issues the kubeconfig")
		patch := client.MergeFrom(claim.DeepCopy())
		claim.Spec.Duration = &metav1.Duration{Duration: 3 * time.Hour}
		Expect(k8s.Patch(ctx, claim, patch)).To(Succeed())
		Eventually(func(g Gomega) {
			var s corev1.Secret
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students-expiry", Name: "dave-kubeconfig"}, &s)).To(Succeed())
			g.Expect(s.Annotations["labforge.dev/expires-at"]).To(Equal(bound.Add(3 * time.Hour).UTC().Format(time.RFC3339)))
		}).Should(Succeed())

		By("moving the clock past the expiry")
		clk.Set(4 * time.Hour)
		DeferCleanup(func() { clk.Set(0) })
		patch = client.MergeFrom(claim.DeepCopy())
		claim.Annotations = map[string]string{"nudge": "1"}
		Expect(k8s.Patch(ctx, claim, patch)).To(Succeed())
		Eventually(claimCondition(ctx, "students-expiry", "dave", "Expired")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(claimCondition(ctx, "students-expiry", "dave", "Ready")).Should(HaveField("Reason", "Expired"))
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: labName}, &labforgev1alpha1.LabEnvironment{}))
		}).WithTimeout(60 * time.Second).Should(BeTrue())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Namespace: "students-expiry", Name: "dave-kubeconfig"}, &corev1.Secret{}))).To(BeTrue())

		By("staying Expired for good when the template goes afterwards (decision 58)")
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		expired := claim.Status.DeepCopy()
		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Name: "claim-expiry"}})).To(Succeed())
		patch = client.MergeFrom(claim.DeepCopy())
		claim.Annotations = map[string]string{"nudge": "2"}
		Expect(k8s.Patch(ctx, claim, patch)).To(Succeed())
		Consistently(func(g Gomega) {
			var c labforgev1alpha1.LabClaim
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), &c)).To(Succeed())
			g.Expect(c.Status).To(Equal(*expired))
		}).WithTimeout(2 * time.Second).Should(Succeed())
		clk.Set(0)
	})
})

var _ = Describe("A claim deleted while the operator is down", func() {
	It("has its lab deleted when the operator is back, and a new claim of the same name keeps its own", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-down").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("down", "claim-down").Replicas(2).MaxLabs(100).Obj())).To(Succeed())
		Eventually(poolStatus(ctx, "down")).Should(HaveField("ReadyReplicas", int32(2)))
		createNamespace(ctx, "students-down", nil)
		Expect(k8s.Create(ctx, integration.MakeClaim("students-down", "bob").Pool("down").Obj())).To(Succeed())
		Eventually(claimCondition(ctx, "students-down", "bob", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		var first labforgev1alpha1.LabClaim
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students-down", Name: "bob"}, &first)).To(Succeed())

		stopManager()
		Expect(k8s.Delete(ctx, &first)).To(Succeed())
		// The same student claims again under the same name before the operator is back.
		Expect(k8s.Create(ctx, integration.MakeClaim("students-down", "bob").Pool("down").Obj())).To(Succeed())
		var err error
		stopManager, sim, err = integration.StartSimulatedManager(cp.RESTConfig(), clk)
		Expect(err).NotTo(HaveOccurred())

		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: first.Status.Lab}, &labforgev1alpha1.LabEnvironment{}))
		}).WithTimeout(60 * time.Second).Should(BeTrue())
		Eventually(claimCondition(ctx, "students-down", "bob", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		var second labforgev1alpha1.LabClaim
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students-down", Name: "bob"}, &second)).To(Succeed())
		Expect(second.Status.Lab).NotTo(Equal(first.Status.Lab))
		var env labforgev1alpha1.LabEnvironment
		Expect(k8s.Get(ctx, client.ObjectKey{Name: second.Status.Lab}, &env)).To(Succeed())
		Expect(env.Spec.ClaimRef.UID).To(Equal(second.UID))
		Expect(env.DeletionTimestamp).To(BeNil())
	})
})

var _ = Describe("Two managers running at once", func() {
	It("never bind one lab to two claims", func(ctx context.Context) {
		second, err := integration.StartOperator(cp.RESTConfig(), clk, sim)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(second)

		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-twice").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		pool := integration.MakePool("twice", "claim-twice").Replicas(8).MaxLabs(100).Obj()
		pool.Spec.MaxBooting = 8
		Expect(k8s.Create(ctx, pool)).To(Succeed())
		Eventually(poolStatus(ctx, "twice")).WithTimeout(60 * time.Second).Should(HaveField("ReadyReplicas", BeNumerically(">=", 8)))
		createNamespace(ctx, "students-twice", nil)

		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer GinkgoRecover()
				defer wg.Done()
				Expect(k8s.Create(ctx, integration.MakeClaim("students-twice", fmt.Sprintf("t%02d", i)).Pool("twice").Obj())).To(Succeed())
			}()
		}
		wg.Wait()
		Eventually(func(g Gomega) {
			var claims labforgev1alpha1.LabClaimList
			g.Expect(k8s.List(ctx, &claims, client.InNamespace("students-twice"))).To(Succeed())
			for _, c := range claims.Items {
				g.Expect(meta.IsStatusConditionTrue(c.Status.Conditions, "Ready")).To(BeTrue(), "claim %s not ready", c.Name)
			}
		}).WithTimeout(90 * time.Second).Should(Succeed())

		var claims labforgev1alpha1.LabClaimList
		Expect(k8s.List(ctx, &claims, client.InNamespace("students-twice"))).To(Succeed())
		seen := map[string]string{}
		for _, c := range claims.Items {
			Expect(seen).NotTo(HaveKey(c.Status.Lab), "lab %s bound to %s and %s", c.Status.Lab, seen[c.Status.Lab], c.Name)
			seen[c.Status.Lab] = c.Name
			var env labforgev1alpha1.LabEnvironment
			Expect(k8s.Get(ctx, client.ObjectKey{Name: c.Status.Lab}, &env)).To(Succeed())
			Expect(env.Spec.ClaimRef.UID).To(Equal(c.UID))
		}
		Expect(seen).To(HaveLen(20))
	})
})

var _ = Describe("A claim that names a template", func() {
	It("gets a lab booted just for it, named after the claim, in no pool", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-cold").Version("v1.36.3").PodCIDR("10.200.0.0/16").AdmitClaimsFrom("students-cold").Obj())).To(Succeed())
		createNamespace(ctx, "students-cold", nil)
		claim := integration.MakeClaim("students-cold", "erin").Template("claim-cold").WithoutKeys().Obj()
		Expect(k8s.Create(ctx, claim)).To(Succeed())
		Eventually(claimCondition(ctx, "students-cold", "erin", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		Expect(claim.Status.LaunchType).To(Equal(labforgev1alpha1.LaunchCold))
		Expect(claim.Status.Lab).To(MatchRegexp(`^claim-[0-9a-f]{12}$`))
		// The template's default lifetime.
		Expect(claim.Status.ExpiresAt.Sub(claim.Status.BoundTime.Time)).To(Equal(2 * time.Hour))
		var env labforgev1alpha1.LabEnvironment
		Expect(k8s.Get(ctx, client.ObjectKey{Name: claim.Status.Lab}, &env)).To(Succeed())
		Expect(env.Spec.PoolRef).To(BeNil())
		Expect(env.Spec.ClaimRef.UID).To(Equal(claim.UID))
	})
})

var _ = Describe("A claim whose lab is still booting", func() {
	// handedOver is what the student holds: the claim's status, its kubeconfig Secret,
	// and the CA and Service of the lab's current namespace.
	type handedOver struct {
		claim      labforgev1alpha1.LabClaim
		kubeconfig corev1.Secret
		env        labforgev1alpha1.LabEnvironment
	}
	handover := func(ctx context.Context, g Gomega, key client.ObjectKey) handedOver {
		var h handedOver
		g.Expect(k8s.Get(ctx, key, &h.claim)).To(Succeed())
		g.Expect(h.claim.Status.SSH).NotTo(BeNil(), "not handed over yet")
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: h.claim.Status.Lab}, &h.env)).To(Succeed())
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: key.Namespace, Name: h.claim.Status.KubeconfigSecretName}, &h.kubeconfig)).To(Succeed())
		cfg, err := clientcmd.Load(h.kubeconfig.Data["value"])
		g.Expect(err).NotTo(HaveOccurred())
		var pkiSecret corev1.Secret
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(h.env.Name), Name: lab.PKISecret}, &pkiSecret)).To(Succeed())
		cluster := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
		g.Expect(cluster.CertificateAuthorityData).To(Equal(pkiSecret.Data[lab.PKICACert]), "the kubeconfig trusts another CA than the lab's")
		g.Expect(cluster.Server).To(Equal(h.claim.Status.APIServerURL))
		var svc corev1.Service
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(h.env.Name), Name: lab.APIService}, &svc)).To(Succeed())
		g.Expect(svc.Spec.Type).To(Equal(corev1.ServiceTypeNodePort))
		for _, p := range svc.Spec.Ports {
			if p.Name == "ssh" {
				g.Expect(h.claim.Status.SSH.Port).To(Equal(p.NodePort))
			} else {
				g.Expect(h.claim.Status.APIServerURL).To(HaveSuffix(":%d", p.NodePort))
			}
		}
		return h
	}

	// createHeldColdClaim creates template claim-<suffix>, namespace students-<suffix> and
	// a claim of it there, with every simulated lab's bootstrap held until release (called
	// at the spec's end too).
	createHeldColdClaim := func(ctx context.Context, suffix, name string) (*labforgev1alpha1.LabClaim, func()) {
		release := sim.HoldBootstraps()
		DeferCleanup(release)
		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-"+suffix).Version("v1.36.3").PodCIDR("10.200.0.0/16").AdmitClaimsFrom("students-"+suffix).Obj())).To(Succeed())
		createNamespace(ctx, "students-"+suffix, nil)
		claim := integration.MakeClaim("students-"+suffix, name).Template("claim-" + suffix).WithoutKeys().Obj()
		Expect(k8s.Create(ctx, claim)).To(Succeed())
		return claim, release
	}

	It("is handed over as soon as the lab is built, and Ready when the lab is, with nothing written again", func(ctx context.Context) {
		claim, release := createHeldColdClaim(ctx, "early", "frank")
		key := client.ObjectKeyFromObject(claim)

		By("showing where to connect while the lab boots, without saying Ready")
		var first handedOver
		Eventually(func(g Gomega) { first = handover(ctx, g, key) }).Should(Succeed())
		Expect(meta.FindStatusCondition(first.claim.Status.Conditions, labforgev1alpha1.ConditionReady)).To(And(
			HaveField("Status", metav1.ConditionUnknown), HaveField("Reason", "LabBooting")))
		Expect(first.claim.Status.ReadyTime).To(BeNil())
		Expect(meta.IsStatusConditionTrue(first.env.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeFalse())
		Expect(first.kubeconfig.Annotations).To(HaveKeyWithValue("labforge.dev/lab-namespace-uid", string(first.env.Status.NamespaceUID)))

		By("handing the lab over again when its namespace is deleted by hand while it boots: a new CA, new ports")
		Expect(k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: lab.Namespace(first.env.Name)}})).To(Succeed())
		var second handedOver
		Eventually(func(g Gomega) {
			second = handover(ctx, g, key)
			g.Expect(second.env.Status.NamespaceUID).NotTo(Equal(first.env.Status.NamespaceUID), "not built again yet")
			g.Expect(second.kubeconfig.Annotations).To(HaveKeyWithValue("labforge.dev/lab-namespace-uid", string(second.env.Status.NamespaceUID)))
		}).WithTimeout(60 * time.Second).Should(Succeed())
		Expect(meta.IsStatusConditionTrue(second.claim.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeFalse())

		By("saying Ready once the lab is, with the Secrets and Service it had")
		release()
		Eventually(claimCondition(ctx, "students-early", "frank", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		var ready handedOver
		Eventually(func(g Gomega) { ready = handover(ctx, g, key) }).Should(Succeed())
		Expect(ready.kubeconfig.ResourceVersion).To(Equal(second.kubeconfig.ResourceVersion), "the kubeconfig was written again at Ready")
		Expect(ready.claim.Status.SSH.Port).To(Equal(second.claim.Status.SSH.Port))
		Expect(ready.claim.Status.LaunchType).To(Equal(labforgev1alpha1.LaunchCold))
		Eventually(eventReasons(ctx, "LabClaim", "frank")).Should(ContainElement("Normal/HandedOver"))
	})

	It("says so when the lab fails to boot, without the lab's own message", func(ctx context.Context) {
		claim, _ := createHeldColdClaim(ctx, "fail", "gina")
		var env labforgev1alpha1.LabEnvironment
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
			g.Expect(claim.Status.SSH).NotTo(BeNil(), "not handed over yet")
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: claim.Status.Lab}, &env)).To(Succeed())
		}).Should(Succeed())

		By("failing the lab's bootstrap while the claim waits for it")
		// A merge patch: the lab's own status writes go on meanwhile, and an update of the
		// copy read above would conflict with them.
		patch := client.MergeFrom(env.DeepCopy())
		env.Annotations = map[string]string{simulator.BootstrapFailureAnnotation: "the scenario's secret: etcd quorum broken on purpose"}
		Expect(k8s.Patch(ctx, &env, patch)).To(Succeed())
		Eventually(claimCondition(ctx, "students-fail", "gina", "Ready")).Should(And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", "LabFailed"),
			HaveField("Message", ContainSubstring("(BootstrapFailed)")),
			HaveField("Message", Not(ContainSubstring("secret"))),
		))
		Expect(claimCondition(ctx, "students-fail", "gina", "Stalled")(Default)).To(HaveField("Status", metav1.ConditionTrue))
		Eventually(eventReasons(ctx, "LabClaim", "gina")).Should(ContainElement("Warning/LabFailed"))
	})
})

var _ = Describe("An admin changing a pool's template", func() {
	It("gets the warm labs replaced while the claimed one is left alone", func(ctx context.Context) {
		tmpl := integration.MakeTemplate("claim-update").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj()
		Expect(k8s.Create(ctx, tmpl)).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("update", "claim-update").Replicas(2).MaxLabs(100).Obj())).To(Succeed())
		Eventually(poolStatus(ctx, "update")).Should(HaveField("ReadyReplicas", int32(2)))
		createNamespace(ctx, "students-update", nil)
		Expect(k8s.Create(ctx, integration.MakeClaim("students-update", "frank").Pool("update").Obj())).To(Succeed())
		Eventually(claimCondition(ctx, "students-update", "frank", "Ready")).Should(HaveField("Status", metav1.ConditionTrue))
		Eventually(poolStatus(ctx, "update")).Should(And(HaveField("ReadyReplicas", int32(2)), HaveField("BoundReplicas", int32(1))))
		var claim labforgev1alpha1.LabClaim
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "students-update", Name: "frank"}, &claim)).To(Succeed())
		var bound labforgev1alpha1.LabEnvironment
		Expect(k8s.Get(ctx, client.ObjectKey{Name: claim.Status.Lab}, &bound)).To(Succeed())

		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tmpl), tmpl)).To(Succeed())
		patch := client.MergeFrom(tmpl.DeepCopy())
		tmpl.Spec.Description = "Version two of the exercise"
		Expect(k8s.Patch(ctx, tmpl, patch)).To(Succeed())

		Eventually(func(g Gomega) {
			var envs labforgev1alpha1.LabEnvironmentList
			g.Expect(k8s.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: "update"})).To(Succeed())
			ready := 0
			for _, env := range envs.Items {
				if env.Spec.ClaimRef != nil {
					continue
				}
				g.Expect(env.Status.TemplateGeneration).To(Equal(int64(2)), "lab %s still runs generation %d", env.Name, env.Status.TemplateGeneration)
				if meta.IsStatusConditionTrue(env.Status.Conditions, "Ready") && env.DeletionTimestamp.IsZero() {
					ready++
				}
			}
			g.Expect(ready).To(Equal(2))
		}).WithTimeout(60 * time.Second).Should(Succeed())

		var after labforgev1alpha1.LabEnvironment
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(&bound), &after)).To(Succeed())
		Expect(after.UID).To(Equal(bound.UID))
		Expect(after.Status.TemplateGeneration).To(Equal(int64(1)))
		Expect(meta.IsStatusConditionTrue(after.Status.Conditions, "Ready")).To(BeTrue())
	})
})

var _ = Describe("A claim whose Secret name is taken", func() {
	It("is refused and never takes over the student's own Secret", func(ctx context.Context) {
		Expect(k8s.Create(ctx, integration.MakeTemplate("claim-taken").Version("v1.36.3").PodCIDR("10.200.0.0/16").Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("taken", "claim-taken").Replicas(1).MaxLabs(100).Obj())).To(Succeed())
		createNamespace(ctx, "students-taken", nil)
		mine := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "students-taken", Name: "grace-kubeconfig"},
			StringData: map[string]string{"value": "my own kubeconfig"}}
		Expect(k8s.Create(ctx, mine)).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakeClaim("students-taken", "grace").Pool("taken").Obj())).To(Succeed())
		Eventually(claimCondition(ctx, "students-taken", "grace", "Ready")).Should(And(
			HaveField("Status", metav1.ConditionFalse), HaveField("Reason", "SecretConflict"),
			HaveField("Message", "Secret students-taken/grace-kubeconfig exists and does not belong to this claim; delete or rename it")))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(mine), mine)).To(Succeed())
		Expect(string(mine.Data["value"])).To(Equal("my own kubeconfig"))
	})
})
