// Package rbac_test checks who may do what, on the real API server with RBAC on: a student
// who may claim labs in their namespace can do nothing else that matters, and the
// operator's own ClusterRole asks for exactly what it needs.
package rbac_test

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/test/integration"
)

var (
	cp    *controlplane.ControlPlane
	admin client.Client
	// operatorConfig reaches the control plane as the operator's service account.
	operatorConfig *rest.Config
)

func TestRBAC(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "labforge RBAC")
}

var _ = BeforeSuite(func(ctx context.Context) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	cp, err = integration.StartControlPlane(context.Background())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	admin, err = client.New(cp.RESTConfig(), client.Options{Scheme: manager.NewScheme()})
	Expect(err).NotTo(HaveOccurred())
	// Every spec runs with the operator's service account as config/ deploys it, and the
	// operator-bounds policy enforced (bounds_test.go).
	installOperator(ctx)
}, NodeTimeout(2*time.Minute))

// readYAML decodes one manifest of config/.
func readYAML(path string, into any) {
	Expect(integration.ReadManifest(path, into)).To(Succeed())
}

// as returns a client that impersonates user.
func as(user string) client.Client {
	c, err := integration.ClientAs(cp.RESTConfig(), user)
	Expect(err).NotTo(HaveOccurred())
	return c
}

func forbidden(err error) bool { return apierrors.IsForbidden(err) }

var _ = Describe("A student allowed to claim labs in their namespace", Ordered, func() {
	var alice client.Client

	BeforeAll(func(ctx context.Context) {
		role := &rbacv1.ClusterRole{}
		readYAML("config/rbac/labclaim_editor_role.yaml", role)
		Expect(admin.Create(ctx, role)).To(Succeed())
		for _, ns := range []string{"alice", "bob", "lab-x"} {
			Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
		}
		Expect(admin.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: "alice", Name: "alice-claims"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "alice"}},
		})).To(Succeed())
		Expect(admin.Create(ctx, claim("bob", "bobs"))).To(Succeed())
		alice = as("alice")
	})

	It("can claim a lab and watch her claim", func(ctx context.Context) {
		Eventually(func() error { return alice.Create(ctx, claim("alice", "mine")) }).WithTimeout(10 * time.Second).Should(Succeed())
		var c labforgev1alpha1.LabClaim
		Expect(alice.Get(ctx, client.ObjectKey{Namespace: "alice", Name: "mine"}, &c)).To(Succeed())
		Expect(alice.List(ctx, &labforgev1alpha1.LabClaimList{}, client.InNamespace("alice"))).To(Succeed())
	})

	DescribeTable("cannot",
		func(ctx context.Context, do func(context.Context, client.Client) error) {
			Expect(forbidden(do(ctx, alice))).To(BeTrue(), "expected Forbidden")
		},
		Entry("read another namespace's claims", func(ctx context.Context, c client.Client) error {
			return c.Get(ctx, client.ObjectKey{Namespace: "bob", Name: "bobs"}, &labforgev1alpha1.LabClaim{})
		}),
		Entry("list claims across namespaces", func(ctx context.Context, c client.Client) error {
			return c.List(ctx, &labforgev1alpha1.LabClaimList{})
		}),
		Entry("list Secrets anywhere", func(ctx context.Context, c client.Client) error {
			return c.List(ctx, &corev1.SecretList{})
		}),
		Entry("read another namespace's Secrets", func(ctx context.Context, c client.Client) error {
			return c.List(ctx, &corev1.SecretList{}, client.InNamespace("bob"))
		}),
		Entry("write her own claim's status", func(ctx context.Context, c client.Client) error {
			var mine labforgev1alpha1.LabClaim
			if err := admin.Get(ctx, client.ObjectKey{Namespace: "alice", Name: "mine"}, &mine); err != nil {
				return err
			}
			mine.Status.Lab = "someone-elses-lab"
			return c.Status().Update(ctx, &mine)
		}),
		Entry("create a VirtualMachine", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &kubevirtv1.VirtualMachine{ObjectMeta: metav1.ObjectMeta{Namespace: "alice", Name: "vm"}})
		}),
		Entry("create a NodePort Service", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "alice", Name: "np"},
				Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 22}}}})
		}),
		Entry("create a privileged pod", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "alice", Name: "p"},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox",
					SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)}}}}})
		}),
		Entry("edit a lab's quota", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: "lab-x", Name: "lab-quota"},
				Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("100")}}})
		}),
		Entry("edit a lab's network policies", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Namespace: "lab-x", Name: "allow-all"}})
		}),
		Entry("create a LabEnvironment (take a lab)", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: "e"},
				Spec: labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "t"}}})
		}),
		Entry("list LabEnvironments", func(ctx context.Context, c client.Client) error {
			return c.List(ctx, &labforgev1alpha1.LabEnvironmentList{})
		}),
		Entry("scale a LabPool", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &labforgev1alpha1.LabPool{ObjectMeta: metav1.ObjectMeta{Name: "p"},
				Spec: labforgev1alpha1.LabPoolSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "t"}}})
		}),
		Entry("write a LabTemplate", func(ctx context.Context, c client.Client) error {
			return c.Create(ctx, &labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Name: "t"}})
		}),
	)
})

func claim(ns, name string) *labforgev1alpha1.LabClaim {
	return &labforgev1alpha1.LabClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: labforgev1alpha1.LabClaimSpec{
			PoolRef: &labforgev1alpha1.LocalObjectReference{Name: "p"},
			SSH:     labforgev1alpha1.SSHAccess{GenerateKeyPair: true},
		},
	}
}

var _ = Describe("The operator's ClusterRole", func() {
	It("grants exactly what the operator needs, nothing cluster-wide beyond it", func() {
		role := &rbacv1.ClusterRole{}
		readYAML("config/rbac/role.yaml", role)
		var got []string
		for _, rule := range role.Rules {
			for _, g := range rule.APIGroups {
				for _, r := range rule.Resources {
					verbs := append([]string(nil), rule.Verbs...)
					sort.Strings(verbs)
					got = append(got, g+"/"+r+": "+strings.Join(verbs, " "))
				}
			}
			Expect(rule.NonResourceURLs).To(BeEmpty())
			Expect(rule.ResourceNames).To(BeEmpty())
		}
		// Server-side apply needs patch, and create where it creates; merge patches need
		// patch; nothing the operator writes is ever updated whole (PUT) but a lab at bind
		// (optimistic lock), a lab's guards someone changed (replaced under the version
		// last seen, decision 60) and the finalizers subresources (owner references that
		// block deletion). Deletes: labs, lab namespaces, a claim's Secrets, the host
		// Services and policy of a lab Service no longer exposed. The RBAC rules
		// cannot say "only labforge's" or "only lab-*": config/policy/operator-bounds.yaml
		// does (decision 62).
		Expect(got).To(ConsistOf([]string{
			"/configmaps: create get list patch watch",
			"/limitranges: create get list patch update watch",
			"/namespaces: create delete get list patch watch",
			"/resourcequotas: create get list patch update watch",
			"/secrets: create delete get list patch watch",
			"/services: create delete get list patch watch",
			// The host's facts (hostcluster.Discover): read only.
			"/nodes: get list watch",
			"networking.k8s.io/servicecidrs: get list watch",
			"events.k8s.io/events: create patch",
			"kubevirt.io/virtualmachineinstances: get list watch",
			"kubevirt.io/virtualmachines: create get list patch watch",
			"labforge.dev/labclaims: get list patch watch",
			"labforge.dev/labclaims/finalizers: update",
			"labforge.dev/labclaims/status: patch",
			"labforge.dev/labenvironments: create delete get list patch update watch",
			"labforge.dev/labenvironments/finalizers: update",
			"labforge.dev/labenvironments/status: patch",
			"labforge.dev/labpools: get list patch watch",
			"labforge.dev/labpools/finalizers: update",
			"labforge.dev/labpools/status: patch",
			"labforge.dev/labtemplates: get list watch",
			"labforge.dev/labtemplates/status: patch",
			"networking.k8s.io/networkpolicies: create delete get list patch update watch",
		}))
	})
})

var _ = Describe("The operator's ClusterRole, bound", func() {
	It("is enough to discover the host's facts, and a user without it cannot", func(ctx context.Context) {
		role := &rbacv1.ClusterRole{}
		readYAML("config/rbac/role.yaml", role)
		role.Name = "labforge-manager-discovery"
		Expect(admin.Create(ctx, role)).To(Succeed())
		Expect(admin.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "operator"}},
		})).To(Succeed())
		Eventually(func() error {
			_, err := hostcluster.Discover(ctx, as("operator"))
			return err
		}).WithTimeout(10 * time.Second).Should(Succeed())
		_, err := hostcluster.Discover(ctx, as("nobody"))
		Expect(forbidden(errors.Unwrap(err))).To(BeTrue(), "%v", err)
	})
})
