package rbac_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/test/integration"
)

// The operator as config/default deploys it: its service account, in its namespace.
const (
	operatorNamespace = integration.OperatorNamespace
	operatorUser      = integration.OperatorUser
)

// The policy's messages, as the API server reports a refusal.
const (
	msgNamespaceName  = "labforge's operator may write only Namespaces named lab-*"
	msgNamespaceOwned = "labforge's operator may change or delete only Namespaces labelled app.kubernetes.io/managed-by=labforge"
	msgLabOnly        = "labforge's operator may write VirtualMachines, NetworkPolicies, ResourceQuotas, LimitRanges, Services and ConfigMaps only in lab-* namespaces"
	msgSecretLabel    = "labforge's operator may write only Secrets labelled app.kubernetes.io/managed-by=labforge"
	msgSecretToken    = "labforge's operator may never write a Secret of type kubernetes.io/service-account-token"
	msgSecretOwned    = "labforge's operator may change or delete only Secrets labelled app.kubernetes.io/managed-by=labforge"
	msgClaimSecret    = "labforge's operator may write a Secret outside lab-* namespaces only for a LabClaim in the Secret's own namespace: named after the claim, labelled labforge.dev/claim and labforge.dev/claim-namespace=<the Secret's namespace>, and controlled by that LabClaim"
	msgClaimDelete    = "labforge's operator may delete a Secret outside lab-* namespaces only if it is a LabClaim's, named after the claim its labforge.dev/claim label names"
)

// refusedBy says the error is the operator-bounds policy refusing with msg.
func refusedBy(msg string) OmegaMatcher {
	return And(
		WithTransform(apierrors.IsForbidden, BeTrue()),
		WithTransform(func(err error) string { return err.Error() },
			HaveSuffix("ValidatingAdmissionPolicy 'operator-bounds' with binding 'operator-bounds' denied request: "+msg)))
}

// installOperator gives the operator's service account what config/ gives it (the
// controllers' ClusterRole, the leader election Role in its namespace) and installs the
// operator-bounds policy, waiting until the API server enforces it.
func installOperator(ctx context.Context) {
	var err error
	operatorConfig, err = integration.InstallOperatorAccount(ctx, admin, cp.RESTConfig())
	Expect(err).NotTo(HaveOccurred())

	policy, binding := readPolicy()
	Expect(admin.Create(ctx, policy)).To(Succeed())
	Expect(admin.Create(ctx, binding)).To(Succeed())
	// The API server enforces a policy once its informers saw it and it compiled: a
	// dry run stores nothing and is admitted like a write.
	op := as(operatorUser)
	Eventually(func() error {
		return op.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "probe"}}, client.DryRunAll)
	}).WithTimeout(30 * time.Second).Should(refusedBy(msgSecretLabel))
}

// readPolicy decodes config/policy/operator-bounds.yaml: the policy and its binding.
func readPolicy() (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	data, err := os.ReadFile(filepath.Join(integration.RepoRoot(), "config", "policy", "operator-bounds.yaml"))
	Expect(err).NotTo(HaveOccurred())
	docs := bytes.Split(data, []byte("\n---\n"))
	Expect(docs).To(HaveLen(2))
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{}
	Expect(yaml.UnmarshalStrict(docs[0], policy)).To(Succeed())
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
	Expect(yaml.UnmarshalStrict(docs[1], binding)).To(Succeed())
	return policy, binding
}

func labelled(extra map[string]string) map[string]string {
	l := map[string]string{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue}
	for k, v := range extra {
		l[k] = v
	}
	return l
}

// claimSecret is a Secret of claim (its kubeconfig, as the claim controller writes it)
// placed in namespace.
func claimSecret(claim *labforgev1alpha1.LabClaim, namespace string) *corev1.Secret {
	s := render.KubeconfigSecret(claim, "lab-a", "", "https://192.0.2.1:31443", metav1.Now(), []byte("kubeconfig"))
	s.Namespace = namespace
	return s
}

var _ = Describe("The operator-bounds admission policy", func() {
	It("names the operator as config/default deploys it", func() {
		var k struct {
			Namespace  string `json:"namespace"`
			NamePrefix string `json:"namePrefix"`
		}
		readYAML("config/default/kustomization.yaml", &k)
		sa := &corev1.ServiceAccount{}
		readYAML("config/rbac/service_account.yaml", sa)
		Expect("system:serviceaccount:" + k.Namespace + ":" + k.NamePrefix + sa.Name).To(Equal(operatorUser))
		policy, binding := readPolicy()
		Expect(policy.Spec.MatchConditions).To(HaveLen(1))
		Expect(policy.Spec.MatchConditions[0].Expression).To(Equal("request.userInfo.username == '" + operatorUser + "'"))
		Expect(binding.Spec.PolicyName).To(Equal(policy.Name))
		Expect(binding.Spec.ValidationActions).To(Equal([]admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}))
		Expect(policy.Spec.FailurePolicy).To(Equal(ptr.To(admissionregistrationv1.Fail)))
	})
})

// ContinueOnFailure: each refusal is its own finding.
var _ = Describe("The operator, bounded by the API server", Ordered, ContinueOnFailure, func() {
	const students, others, labNS = "bounds-students", "bounds-others", "lab-bounds"
	var (
		op              client.Client
		claim           *labforgev1alpha1.LabClaim
		foreignSecret   *corev1.Secret
		foreignLabNS    *corev1.Namespace
		labelledForeign *corev1.Secret
	)

	BeforeAll(func(ctx context.Context) {
		op = as(operatorUser)
		for _, ns := range []string{students, others} {
			Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		}
		claim = integration.MakeClaim(students, "mine").Pool("p").Obj()
		Expect(admin.Create(ctx, claim)).To(Succeed())
		// What is not labforge's: a student's own Secret, a lab-* namespace someone else
		// made, and a Secret that is labelled as labforge's but is no claim's.
		foreignSecret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "own"}, StringData: map[string]string{"k": "v"}}
		Expect(admin.Create(ctx, foreignSecret)).To(Succeed())
		foreignLabNS = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab-not-labforges"}}
		Expect(admin.Create(ctx, foreignLabNS)).To(Succeed())
		labelledForeign = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "tls", Labels: labelled(nil)}}
		Expect(admin.Create(ctx, labelledForeign)).To(Succeed())
	})

	DescribeTable("refuses the operator",
		func(ctx context.Context, msg string, do func(context.Context, client.Client) error) {
			Expect(do(ctx, op)).To(refusedBy(msg))
		},
		Entry("a Secret without its managed-by label", msgSecretLabel, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: labNSOr(ctx, labNS), Name: "unlabelled"}})
		}),
		Entry("a service-account-token Secret, even labelled", msgSecretToken, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "minted", Labels: labelled(nil),
					Annotations: map[string]string{corev1.ServiceAccountNameKey: "namespace-controller"}},
				Type: corev1.SecretTypeServiceAccountToken,
			})
		}),
		Entry("a service-account-token Secret in a lab namespace", msgSecretToken, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Namespace: labNSOr(ctx, labNS), Name: "minted", Labels: labelled(nil),
					Annotations: map[string]string{corev1.ServiceAccountNameKey: "default"}},
				Type: corev1.SecretTypeServiceAccountToken,
			})
		}),
		Entry("a Namespace not named lab-*", msgNamespaceName, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "not-a-lab", Labels: labelled(nil)}})
		}),
		Entry("deleting a Namespace not named lab-*", msgNamespaceName, func(ctx context.Context, c client.Client) error {
			return c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: students}})
		}),
		Entry("deleting a lab-* Namespace that is not labforge's", msgNamespaceOwned, func(ctx context.Context, c client.Client) error {
			return c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lab-not-labforges"}})
		}),
		Entry("a NetworkPolicy outside lab-*", msgLabOnly, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "allow-all", Labels: labelled(nil)}})
		}),
		Entry("a VirtualMachine outside lab-*", msgLabOnly, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "vm", Labels: labelled(nil)},
				Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: ptr.To(kubevirtv1.RunStrategyHalted), Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{}}})
		}),
		Entry("a NodePort Service outside lab-*", msgLabOnly, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "np", Labels: labelled(nil)},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 22}}}})
		}),
		Entry("a ResourceQuota outside lab-*", msgLabOnly, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "q", Labels: labelled(nil)},
				Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}})
		}),
		Entry("a LimitRange outside lab-*", msgLabOnly, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "lr", Labels: labelled(nil)},
				Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
					DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}}}}})
		}),
		Entry("a ConfigMap outside lab-* (the cluster's DNS, say)", msgLabOnly, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "coredns", Labels: labelled(nil)}})
		}),
		Entry("a claim's Secret in another namespace than the claim's", msgClaimSecret, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, claimSecret(claim, others))
		}),
		Entry("a claim-shaped Secret its claim does not control", msgClaimSecret, func(ctx context.Context, c client.Client) error {
			s := claimSecret(claim, students)
			s.OwnerReferences = nil
			return c.Create(ctx, s)
		}),
		Entry("a labelled Secret outside lab-* that is no claim's", msgClaimSecret, func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "bootstrap-token-abcdef", Labels: labelled(nil)}})
		}),
		Entry("taking over a Secret that is not labforge's by labelling it", msgSecretOwned, func(ctx context.Context, c client.Client) error {
			s := &corev1.Secret{}
			if err := admin.Get(ctx, client.ObjectKey{Namespace: students, Name: "own"}, s); err != nil {
				return err
			}
			patch := client.MergeFrom(s.DeepCopy())
			s.Labels = labelled(nil)
			return c.Patch(ctx, s, patch)
		}),
		Entry("deleting a Secret that is not labforge's", msgSecretOwned, func(ctx context.Context, c client.Client) error {
			return c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "own"}})
		}),
		Entry("deleting a labelled Secret outside lab-* that is no claim's", msgClaimDelete, func(ctx context.Context, c client.Client) error {
			return c.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "tls"}})
		}),
	)

	It("refused nothing it was asked: every refused object is still as it was", func(ctx context.Context) {
		for _, key := range []client.ObjectKey{{Namespace: students, Name: "own"}, {Namespace: students, Name: "tls"}} {
			s := &corev1.Secret{}
			Expect(admin.Get(ctx, key, s)).To(Succeed())
			Expect(s.DeletionTimestamp).To(BeNil())
		}
		own := &corev1.Secret{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: students, Name: "own"}, own)).To(Succeed())
		Expect(own.Labels).To(BeEmpty())
		for _, key := range []client.ObjectKey{{Namespace: "kube-system", Name: "minted"}, {Namespace: others, Name: "mine-kubeconfig"},
			{Namespace: "kube-system", Name: "bootstrap-token-abcdef"}} {
			Expect(apierrors.IsNotFound(admin.Get(ctx, key, &corev1.Secret{}))).To(BeTrue(), "%s was stored", key)
		}
		ns := &corev1.Namespace{}
		Expect(admin.Get(ctx, client.ObjectKey{Name: "lab-not-labforges"}, ns)).To(Succeed())
		Expect(ns.DeletionTimestamp).To(BeNil())
	})

	It("lets through every write the operator makes", func(ctx context.Context) {
		By("a lab's namespace and everything in it")
		labNamespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: labNS, Labels: labelled(nil)}}
		Expect(client.IgnoreAlreadyExists(op.Create(ctx, labNamespace))).To(Succeed())
		Expect(op.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: labNS, Name: "lab-pki", Labels: labelled(nil)}})).To(Succeed())
		Expect(op.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: labNS, Name: render.TemplateSnapshot, Labels: labelled(nil)}})).To(Succeed())
		Expect(op.Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: labNS, Name: "lab-isolation", Labels: labelled(nil)}})).To(Succeed())
		Expect(op.Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: labNS, Name: "lab-quota", Labels: labelled(nil)},
			Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("4")}}})).To(Succeed())
		Expect(op.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: labNS, Name: "lab-api", Labels: labelled(nil)},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 6443}}}})).To(Succeed())
		Expect(op.Create(ctx, &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: labNS, Name: "control-plane", Labels: labelled(nil)},
			Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: ptr.To(kubevirtv1.RunStrategyHalted), Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{}}})).To(Succeed())

		By("a lab Secret whose label an admin stripped gets it back")
		pki := &corev1.Secret{}
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: labNS, Name: "lab-pki"}, pki)).To(Succeed())
		pki.Labels = nil
		Expect(admin.Update(ctx, pki)).To(Succeed())
		patch := client.MergeFrom(pki.DeepCopy())
		pki.Labels = labelled(nil)
		Expect(op.Patch(ctx, pki, patch)).To(Succeed())

		By("a claim's Secrets in the claim's namespace: created, changed, deleted")
		secret := claimSecret(claim, students)
		Expect(op.Create(ctx, secret)).To(Succeed())
		patch = client.MergeFrom(secret.DeepCopy())
		secret.Annotations[render.AnnotationServer] = "https://192.0.2.2:31443"
		Expect(op.Patch(ctx, secret, patch)).To(Succeed())
		Expect(op.Delete(ctx, secret)).To(Succeed())

		By("a claim's Secret from before the claim-namespace label, changed and adopted")
		old := claimSecret(claim, students)
		delete(old.Labels, render.LabelClaimNamespace)
		old.OwnerReferences = nil
		Expect(admin.Create(ctx, old)).To(Succeed())
		patch = client.MergeFromWithOptions(old.DeepCopy(), client.MergeFromWithOptimisticLock{})
		old.OwnerReferences = []metav1.OwnerReference{{APIVersion: labforgev1alpha1.GroupVersion.String(), Kind: "LabClaim",
			Name: claim.Name, UID: types.UID(claim.UID), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
		Expect(op.Patch(ctx, old, patch)).To(Succeed())

		By("an orphaned claim Secret deleted by the sweep")
		orphan := claimSecret(claim, students)
		orphan.Name, orphan.OwnerReferences = "ghost-ssh", nil
		orphan.Labels[render.LabelClaim] = "ghost"
		Expect(admin.Create(ctx, orphan)).To(Succeed())
		Expect(op.Delete(ctx, orphan)).To(Succeed())

		By("its own labelled Secret in its namespace (an adoption key), its Lease and events")
		Expect(op.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "labforge-adoption-key", Labels: labelled(nil)},
			Data: map[string][]byte{"key": []byte("0123456789abcdef")}})).To(Succeed())
		Expect(op.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: "bounds-check"}})).To(Succeed())
		Expect(op.Create(ctx, &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: students, Name: "mine.1"},
			EventTime: metav1.NowMicro(), ReportingController: "labforge.dev/labclaim", ReportingInstance: "labforge",
			Action: "HandOver", Reason: "HandedOver", Type: corev1.EventTypeNormal, Note: "Handed over",
			Regarding: corev1.ObjectReference{APIVersion: labforgev1alpha1.GroupVersion.String(), Kind: "LabClaim", Namespace: students, Name: claim.Name}})).To(Succeed())

		By("and the lab's namespace deleted at the end")
		Expect(op.Delete(ctx, labNamespace)).To(Succeed())
	})
})

// labNSOr creates the lab namespace named ns (as an admin, labelled as labforge's) if it
// does not exist yet, and returns its name: the refusals run in any order.
func labNSOr(ctx context.Context, ns string) string {
	err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labelled(nil)}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		Fail(err.Error())
	}
	return ns
}
