package rbac_test

import (
	"context"
	"net/http"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

// refusals records every request of a rest.Config that the API server answered 403: a
// refusal by RBAC or by the operator-bounds policy, whichever object it was about.
type refusals struct {
	mu   sync.Mutex
	seen []string
}

func (r *refusals) wrap(cfg *rest.Config) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTrip(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err == nil && resp.StatusCode == http.StatusForbidden {
				r.mu.Lock()
				r.seen = append(r.seen, req.Method+" "+req.URL.Path)
				r.mu.Unlock()
			}
			return resp, err
		})
	})
	return cfg
}

func (r *refusals) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

var _ = Describe("The operator running as its service account, bounded by the policy", Ordered, func() {
	const students, pool = "story-students", "bounded"
	var refused refusals

	BeforeAll(func(ctx context.Context) {
		// KubeVirt (simulated) is not the operator: it runs as an admin.
		stopSim, sim, err := integration.StartSimulator(cp.RESTConfig(), simulator.Options{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stopSim)
		cfg := refused.wrap(operatorConfig)
		stop, err := integration.StartManager(context.Background(), cfg, manager.Options{
			ProbeDialer:       sim.Dialer(),
			OperatorNamespace: operatorNamespace,
			// Its Lease and the events about it, in its namespace, under the leader
			// election Role of config/rbac.
			LeaderElection:          true,
			LeaderElectionNamespace: operatorNamespace,
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)
	})

	It("serves a claim from a warm pool, hands it over and tears it down, with no write refused", func(ctx context.Context) {
		Expect(admin.Create(ctx, integration.MakeTemplate(pool).Workers(1).Obj())).To(Succeed())
		Expect(admin.Create(ctx, integration.MakePool(pool, pool).Replicas(1).MaxLabs(3).MaxBooting(10).Obj())).To(Succeed())
		Eventually(func(g Gomega) int32 {
			var p labforgev1alpha1.LabPool
			g.Expect(admin.Get(ctx, client.ObjectKey{Name: pool}, &p)).To(Succeed())
			return p.Status.ReadyReplicas
		}).WithTimeout(60 * time.Second).Should(Equal(int32(1)))

		Expect(admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: students}})).To(Succeed())
		claim := integration.MakeClaim(students, "alice").Pool(pool).Obj()
		claim.Spec.SSH.GenerateKeyPair = true
		Expect(admin.Create(ctx, claim)).To(Succeed())
		Eventually(func(g Gomega) metav1.ConditionStatus {
			g.Expect(admin.Get(ctx, client.ObjectKeyFromObject(claim), claim)).To(Succeed())
			c := meta.FindStatusCondition(claim.Status.Conditions, labforgev1alpha1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			return c.Status
		}).WithTimeout(60 * time.Second).Should(Equal(metav1.ConditionTrue))

		By("writing the claim's Secrets in its namespace, labelled with it")
		for _, name := range []string{render.KubeconfigSecretName("alice"), render.SSHKeySecretName("alice")} {
			var s corev1.Secret
			Expect(admin.Get(ctx, client.ObjectKey{Namespace: students, Name: name}, &s)).To(Succeed())
			Expect(s.Labels).To(HaveKeyWithValue(render.LabelClaimNamespace, students))
			Expect(metav1.IsControlledBy(&s, claim)).To(BeTrue())
		}
		var api corev1.Service
		Expect(admin.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(claim.Status.Lab), Name: lab.APIService}, &api)).To(Succeed())
		Expect(api.Spec.Type).To(Equal(corev1.ServiceTypeNodePort))

		By("deleting the lab, its namespace and the Secrets when the claim is released")
		Expect(admin.Delete(ctx, claim)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(admin.Get(ctx, client.ObjectKey{Name: claim.Status.Lab}, &labforgev1alpha1.LabEnvironment{}))
		}).WithTimeout(60 * time.Second).Should(BeTrue())
		Eventually(func() bool {
			return apierrors.IsNotFound(admin.Get(ctx, client.ObjectKey{Namespace: students, Name: render.KubeconfigSecretName("alice")}, &corev1.Secret{}))
		}).WithTimeout(30 * time.Second).Should(BeTrue())
		// The pool refills through the same operator.
		Eventually(func(g Gomega) int32 {
			var p labforgev1alpha1.LabPool
			g.Expect(admin.Get(ctx, client.ObjectKey{Name: pool}, &p)).To(Succeed())
			return p.Status.ReadyReplicas
		}).WithTimeout(60 * time.Second).Should(Equal(int32(1)))

		Expect(refused.list()).To(BeEmpty(), "the API server refused the operator")
	})
})
