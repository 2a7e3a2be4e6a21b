package solution_test

import (
	"context"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/render/cloudinit"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

// webCheck is the story's check: the scenario leaves the shop's web Deployment at one
// replica, and the student must scale it to three.
var webCheck = labforgev1alpha1.SolutionCheck{
	Name:        "web-scaled",
	Description: "The shop's web Deployment runs 3 replicas",
	Hint:        "Scale the web Deployment in namespace shop to 3 replicas",
	Resource:    labforgev1alpha1.CheckResource{Group: "apps", Version: "v1", Kind: "Deployment", Namespace: "shop", Name: "web"},
	Expression:  "object != null && object.spec.replicas == 3",
}

// bootstrapLab does to the stand-in lab what a lab's bootstrap does: apply the operator's
// RBAC as cloud-init renders it for the template's checks (the real API server accepts
// or refuses it), bind kubeadm's admin group to cluster-admin, and run the scenario.
func bootstrapLab(ctx context.Context, checks []labforgev1alpha1.SolutionCheck) {
	manifest, err := cloudinit.OperatorRBAC(checks)
	Expect(err).NotTo(HaveOccurred())
	dec := yaml.NewYAMLOrJSONDecoder(strings.NewReader(string(manifest)), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			break
		}
		if len(u.Object) == 0 {
			continue
		}
		Expect(labAdmin.Patch(ctx, u, client.Apply, client.FieldOwner("bootstrap"), client.ForceOwnership)).To(Succeed())
	}
	Expect(labAdmin.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeadm:cluster-admins"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "kubeadm:cluster-admins"}},
	})).To(Succeed())

	By("running the scenario: the web Deployment at one replica")
	Expect(labAdmin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}})).To(Succeed())
	labels := map[string]string{"app": "web"}
	Expect(labAdmin.Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27"}}},
			},
		},
	})).To(Succeed())
}

func claimOf(ctx context.Context, ns, name string) func(Gomega) labforgev1alpha1.LabClaimStatus {
	return func(g Gomega) labforgev1alpha1.LabClaimStatus {
		var c labforgev1alpha1.LabClaim
		g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &c)).To(Succeed())
		return c.Status
	}
}

func solved(st labforgev1alpha1.LabClaimStatus) *metav1.Condition {
	return meta.FindStatusCondition(st.Conditions, labforgev1alpha1.ConditionSolved)
}

var _ = Describe("A student solving a lab", func() {
	It("(a stand-in lab running the scenario) sees the claim turn Solved within moments of the fix, and Unknown when the operator's read access is revoked", func(ctx context.Context) {
		bootstrapLab(ctx, []labforgev1alpha1.SolutionCheck{webCheck})
		operator, err := labCP.UserConfig(lab.OperatorUser)
		Expect(err).NotTo(HaveOccurred())
		student, err := labCP.UserConfig("alice", "kubeadm:cluster-admins")
		Expect(err).NotTo(HaveOccurred())
		studentClient, err := client.New(student, client.Options{Scheme: manager.NewScheme()})
		Expect(err).NotTo(HaveOccurred())

		stop, err := integration.StartManager(context.Background(), cp.RESTConfig(), manager.Options{
			Simulator:            simulator.New(simulator.Options{}),
			SolutionWatchTimeout: watchTimeout,
			SolutionLabConfig: func(context.Context, string) (*rest.Config, error) {
				return rest.CopyConfig(operator), nil
			},
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)

		tmpl := integration.MakeTemplate("shop").Workers(0).Obj()
		tmpl.Spec.Checks = []labforgev1alpha1.SolutionCheck{webCheck}
		Expect(k8s.Create(ctx, tmpl)).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool("shop", "shop").Replicas(0).MaxLabs(2).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "class"}})).To(Succeed())
		claim := integration.MakeClaim("class", "alice").Pool("shop").Obj()
		Expect(k8s.Create(ctx, claim)).To(Succeed())

		By("reporting the scenario's failing check with its hint")
		Eventually(claimOf(ctx, "class", "alice")).Should(WithTransform(solved, And(
			HaveField("Status", metav1.ConditionFalse),
			HaveField("Reason", labforgev1alpha1.ReasonChecksFailed),
			HaveField("Message", "1 of 1 checks fail: web-scaled: Scale the web Deployment in namespace shop to 3 replicas"),
		)))
		st := claimOf(ctx, "class", "alice")(Default)
		Expect(meta.IsStatusConditionTrue(st.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue())
		Expect(st.Checks).To(HaveLen(1))
		Expect(st.Checks[0]).To(And(
			HaveField("Name", "web-scaled"), HaveField("Passed", false),
			HaveField("Message", "Scale the web Deployment in namespace shop to 3 replicas"),
			HaveField("LastTransitionTime", Not(BeNil())),
		))
		Expect(st.SolvedTime).To(BeNil())

		By("fixing the lab through the student's own credential")
		var web appsv1.Deployment
		Expect(studentClient.Get(ctx, client.ObjectKey{Namespace: "shop", Name: "web"}, &web)).To(Succeed())
		web.Spec.Replicas = ptr.To[int32](3)
		Expect(studentClient.Update(ctx, &web)).To(Succeed())
		fixed := time.Now()

		// The watch brings the fix: nothing in the operator polls the lab, the watches are
		// renewed every watchTimeout without a new list, and the claim has no requeue
		// before its expiry. Well within one watch renewal.
		Eventually(claimOf(ctx, "class", "alice")).WithTimeout(watchTimeout).WithPolling(20 * time.Millisecond).Should(WithTransform(solved, And(
			HaveField("Status", metav1.ConditionTrue),
			HaveField("Reason", labforgev1alpha1.ReasonAllChecksPassed),
			HaveField("Message", "All 1 checks pass"),
		)))
		GinkgoWriter.Printf("Solved %s after the fix\n", time.Since(fixed))
		st = claimOf(ctx, "class", "alice")(Default)
		Expect(st.Checks).To(ConsistOf(And(
			HaveField("Name", "web-scaled"), HaveField("Passed", true),
			HaveField("Message", "The shop's web Deployment runs 3 replicas"),
		)))
		Expect(st.SolvedTime).NotTo(BeNil())
		Eventually(integration.Events(ctx, k8s, "LabClaim", "class", "alice")).Should(ContainElement(
			MatchRegexp(`^Normal/Solved: All 1 checks pass, \d+(\.\d+)?[a-z]+ after the lab was handed over$`)))

		By("saying it cannot evaluate once the student revokes the operator's role, and never passing")
		Expect(studentClient.Delete(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "labforge-solution-checks-reader"}})).To(Succeed())
		Eventually(claimOf(ctx, "class", "alice")).WithTimeout(3 * watchTimeout).Should(WithTransform(solved, And(
			HaveField("Status", metav1.ConditionUnknown),
			HaveField("Reason", labforgev1alpha1.ReasonChecksNotEvaluated),
			HaveField("Message", `1 of 1 checks cannot be evaluated: web-scaled: Cannot evaluate: reading deployments.apps from the lab: `+
				`deployments.apps "web" is forbidden: User "labforge-operator" cannot list resource "deployments" in API group "apps" in the namespace "shop"`),
		)))
		st = claimOf(ctx, "class", "alice")(Default)
		Expect(st.Checks).To(ConsistOf(HaveField("Passed", false)))
		// Solved once: the time it was first solved stays, and so does the one event.
		Expect(st.SolvedTime).NotTo(BeNil())
		Consistently(integration.Events(ctx, k8s, "LabClaim", "class", "alice")).WithTimeout(time.Second).Should(
			ContainElement(HavePrefix("Normal/Solved:")))

		By("releasing the lab with the claim")
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "class", Name: "alice"}, claim)).To(Succeed())
		ns := lab.Namespace(claim.Status.Lab)
		Expect(k8s.Delete(ctx, claim)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}))
		}).WithTimeout(2 * time.Minute).Should(BeTrue())
	}, SpecTimeout(4*time.Minute))
})
