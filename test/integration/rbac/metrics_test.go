package rbac_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"

	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/test/integration"
)

var _ = Describe("The metrics roles", func() {
	It("grant only the reviews and the scrape", func() {
		auth := &rbacv1.ClusterRole{}
		readYAML("config/rbac/metrics_auth_role.yaml", auth)
		Expect(auth.Rules).To(ConsistOf(
			rbacv1.PolicyRule{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
			rbacv1.PolicyRule{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
		))
		reader := &rbacv1.ClusterRole{}
		readYAML("config/rbac/metrics_reader_role.yaml", reader)
		Expect(reader.Rules).To(Equal([]rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}))
	})
})

var _ = Describe("The operator's metrics, served as cmd/manager serves them", Ordered, func() {
	// An operator as its service account, with metrics served as cmd/manager serves them
	// by default, asked by three callers.
	var metricsURL string

	BeforeAll(func(ctx context.Context) {
		subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: operatorNamespace, Name: "labforge-controller-manager"}}
		// The metrics filter's TokenReviews and SubjectAccessReviews, as config/rbac grants them.
		metricsAuth := &rbacv1.ClusterRole{}
		readYAML("config/rbac/metrics_auth_role.yaml", metricsAuth)
		metricsAuth.Name = "labforge-" + metricsAuth.Name
		Expect(admin.Create(ctx, metricsAuth)).To(Succeed())
		Expect(admin.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: metricsAuth.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: metricsAuth.Name},
			Subjects:   subject,
		})).To(Succeed())

		cfg := rest.CopyConfig(operatorConfig)
		addr := freeAddress()
		metricsURL = "https://" + addr + "/metrics"
		stop, err := integration.StartManager(context.Background(), cfg, manager.Options{
			MetricsAddr: addr, MetricsFilter: filters.WithAuthenticationAndAuthorization,
		})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stop)

		reader := &rbacv1.ClusterRole{}
		readYAML("config/rbac/metrics_reader_role.yaml", reader)
		reader.Name = "labforge-" + reader.Name
		Expect(admin.Create(ctx, reader)).To(Succeed())
		for _, name := range []string{"scraper", "nosy"} {
			Expect(admin.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: name}})).To(Succeed())
		}
		Expect(admin.Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "scraper-metrics-reader"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: reader.Name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: operatorNamespace, Name: "scraper"}},
		})).To(Succeed())
	})

	scrape := func(ctx context.Context, token string) (int, string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
		Expect(err).NotTo(HaveOccurred())
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		// The operator's certificate is self-signed, as controller-runtime makes it when
		// none is mounted; what is checked here is who gets an answer.
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec
		resp, err := c.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	token := func(ctx context.Context, sa string) string {
		req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(600))}}
		Expect(admin.SubResource("token").Create(ctx,
			&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: sa}}, req)).To(Succeed())
		return req.Status.Token
	}

	It("answers a caller allowed to get /metrics, and nobody else", func(ctx context.Context) {
		scraper := token(ctx, "scraper")
		Eventually(func() int { code, _ := scrape(ctx, scraper); return code }).WithTimeout(30 * time.Second).Should(Equal(http.StatusOK))
		code, body := scrape(ctx, scraper)
		Expect(code).To(Equal(http.StatusOK))
		Expect(body).To(ContainSubstring("controller_runtime_reconcile_total"))

		code, body = scrape(ctx, "")
		Expect(code).To(Equal(http.StatusUnauthorized), body)
		code, body = scrape(ctx, token(ctx, "nosy"))
		Expect(code).To(Equal(http.StatusForbidden), body)
		Expect(body).To(ContainSubstring("Authorization denied for user system:serviceaccount:" + operatorNamespace + ":nosy"))

		By("and never over plain HTTP")
		resp, err := http.Get(strings.Replace(metricsURL, "https://", "http://", 1)) //nolint:noctx
		if err == nil {
			defer func() { _ = resp.Body.Close() }()
			Expect(resp.StatusCode).To(Equal(http.StatusBadRequest), "plain HTTP was answered")
		}
	})
})

// freeAddress returns a loopback address with a port nothing listens on now.
func freeAddress() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}
