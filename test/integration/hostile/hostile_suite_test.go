// Package hostile_test feeds labforge bad and hostile input on a real control plane: claims
// that carry labforge's reserved labels and annotations, reach for another namespace, ask
// for more than they may; random specs sent to the API server (FuzzLabClaimSpec and
// friends); and a host whose NodePort range runs out.
package hostile_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/test/integration"
)

// kubeconfigEnv names the administrator kubeconfig of the control plane the package runs
// against. TestMain starts a control plane and sets it; `go test -fuzz` runs the fuzz
// targets in worker processes that inherit it and so share the one control plane.
const kubeconfigEnv = "LABFORGE_HOSTILE_KUBECONFIG"

var (
	// adminConfig reaches the package's control plane as an administrator.
	adminConfig *rest.Config
	// k8s is an administrator's client of that control plane.
	k8s client.Client
	// clk is the controllers' clock in the stories: real time, moved to expire claims.
	clk = &integration.OffsetClock{}
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if path := os.Getenv(kubeconfigEnv); path != "" {
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "reading %s=%s: %v\n", kubeconfigEnv, path, err)
			return 1
		}
		return runWith(m, cfg)
	}
	cp, err := integration.StartControlPlane(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = cp.Stop() }()
	if err := os.Setenv(kubeconfigEnv, cp.KubeconfigPath()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return runWith(m, cp.RESTConfig())
}

func runWith(m *testing.M, cfg *rest.Config) int {
	// The fuzz targets send thousands of requests a second; client-side throttling would
	// only measure itself.
	cfg.QPS, cfg.Burst = -1, 0
	adminConfig = cfg
	var err error
	k8s, err = client.New(cfg, client.Options{Scheme: manager.NewScheme()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

func TestHostile(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	SetDefaultConsistentlyDuration(2 * time.Second)
	RunSpecs(t, "labforge hostile input")
}

var _ = BeforeSuite(func(ctx context.Context) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	role := &rbacv1.ClusterRole{}
	Expect(integration.ReadManifest("config/rbac/labclaim_editor_role.yaml", role)).To(Succeed())
	Expect(k8s.Create(ctx, role)).To(Succeed())
	stop, _, err := integration.StartSimulatedManager(adminConfig, clk)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(stop)
}, NodeTimeout(2*time.Minute))

// student creates namespace ns and returns a client of user, who may do in it what the
// labclaim-editor role grants (claims only), and nothing anywhere else.
func student(ctx context.Context, user, ns string) client.Client {
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-claims"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "labclaim-editor-role"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
	})).To(Succeed())
	c, err := integration.ClientAs(adminConfig, user)
	Expect(err).NotTo(HaveOccurred())
	return c
}

// claimCondition returns the claim's condition of the type, failing while it has none.
func claimCondition(ctx context.Context, c client.Client, ns, name, conditionType string) func(Gomega) metav1.Condition {
	return func(g Gomega) metav1.Condition {
		var claim labforgev1alpha1.LabClaim
		g.Expect(c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &claim)).To(Succeed())
		cond := meta.FindStatusCondition(claim.Status.Conditions, conditionType)
		g.Expect(cond).NotTo(BeNil(), "no %s condition yet", conditionType)
		return *cond
	}
}

// claimEvents lists "type/reason: note" of the events about a claim.
func claimEvents(ctx context.Context, c client.Client, ns, name string) func(Gomega) []string {
	return integration.Events(ctx, c, "LabClaim", ns, name)
}

// eventReasons lists "type/reason" of the events about a claim.
func eventReasons(ctx context.Context, c client.Client, ns, name string) func(Gomega) []string {
	return func(g Gomega) []string {
		var reasons []string
		for _, e := range claimEvents(ctx, c, ns, name)(g) {
			reason, _, _ := strings.Cut(e, ": ")
			reasons = append(reasons, reason)
		}
		return reasons
	}
}
