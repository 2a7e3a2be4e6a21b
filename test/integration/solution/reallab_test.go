package solution_test

import (
	"context"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

var _ = Describe("A student solving a lab with a real lab API", func() {
	It("turns the claim Solved through the student's own kubeconfig, read with the operator's lab credential", func(ctx context.Context) {
		sim := simulator.New(simulator.Options{RealLabAPIs: 1, BinDir: integration.BinDir()})
		// The operator as it ships: the lab's credential from its PKI Secret, the lab's
		// API at its Service's name, dialled through the simulated network.
		stop, err := integration.StartManager(context.Background(), cp.RESTConfig(), manager.Options{
			Simulator: sim, SolutionWatchTimeout: watchTimeout,
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)

		tmpl := integration.MakeTemplate("real-shop").Workers(0).Obj()
		tmpl.Spec.Checks = []labforgev1alpha1.SolutionCheck{webCheck}
		Expect(k8s.Create(ctx, tmpl)).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("real-shop", "real-shop").Replicas(0).MaxLabs(2).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "real-class"}})).To(Succeed())
		claim := integration.MakeClaim("real-class", "bob").Pool("real-shop").Obj()
		Expect(k8s.Create(ctx, claim)).To(Succeed())

		By("reporting the check the fresh lab fails, with its hint")
		Eventually(claimOf(ctx, "real-class", "bob")).WithTimeout(3 * time.Minute).Should(WithTransform(solved, And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", labforgev1alpha1.ReasonChecksFailed),
			HaveField("Message", "1 of 1 checks fail: web-scaled: Scale the web Deployment in namespace shop to 3 replicas"),
		)))
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
		Expect(sim.RealLabPIDs(lab.Namespace(claim.Status.Lab))).To(HaveKey("kube-apiserver"))

		By("fixing the lab with the kubeconfig the claim handed over")
		var secret corev1.Secret
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "real-class", Name: claim.Status.KubeconfigSecretName}, &secret)).To(Succeed())
		cfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data["value"])
		Expect(err).NotTo(HaveOccurred())
		cfg.Host = "https://" + lab.APIServiceHost(claim.Status.Lab, lab.DefaultClusterDomain) + ":6443"
		cfg.Dial = sim.Dialer()
		student, err := client.New(cfg, client.Options{Scheme: manager.NewScheme()})
		Expect(err).NotTo(HaveOccurred())
		Expect(student.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})).To(Succeed())
		labels := map[string]string{"app": "web"}
		Expect(student.Create(ctx, &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](3),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
				},
			},
		})).To(Succeed())
		fixed := time.Now()
		// Watch-driven: within one watch renewal, with no relist and no claim requeue.
		Eventually(claimOf(ctx, "real-class", "bob")).WithTimeout(watchTimeout).WithPolling(20 * time.Millisecond).Should(WithTransform(solved, And(
			HaveField("Status", metav1.ConditionTrue),
			HaveField("Reason", labforgev1alpha1.ReasonAllChecksPassed),
		)))
		GinkgoWriter.Printf("Solved %s after the fix\n", time.Since(fixed))

		By("saying it cannot evaluate once the student deletes the operator's access the bootstrap granted")
		var grant rbacv1.ClusterRoleBinding
		Expect(student.Get(ctx, client.ObjectKey{Name: "labforge-solution-checks-reader"}, &grant)).To(Succeed())
		Expect(grant.Subjects).To(Equal([]rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: lab.OperatorUser}}))
		Expect(student.Delete(ctx, &grant)).To(Succeed())
		Eventually(claimOf(ctx, "real-class", "bob")).WithTimeout(3 * watchTimeout).Should(WithTransform(solved, And(
			HaveField("Status", metav1.ConditionUnknown),
			HaveField("Reason", labforgev1alpha1.ReasonChecksNotEvaluated),
			HaveField("Message", `1 of 1 checks cannot be evaluated: web-scaled: Cannot evaluate: reading deployments.apps from the lab: `+
				`deployments.apps "web" is forbidden: User "labforge-operator" cannot list resource "deployments" in API group "apps" in the namespace "shop"`),
		)))

		By("releasing the lab, its API and the operator's watches with the claim")
		ns := lab.Namespace(claim.Status.Lab)
		Expect(k8s.Delete(ctx, claim)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))
		}).WithTimeout(2 * time.Minute).Should(BeTrue())
	}, SpecTimeout(6*time.Minute))
})
