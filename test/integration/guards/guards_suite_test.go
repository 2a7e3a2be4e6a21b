// Package guards_test checks that a lab's guards (its quota, limit range and network
// policies) stay exactly as labforge renders them, on the real control plane: edits by
// hand, widening ones included, are put back on the next pass, and with the lab-guards
// admission policy of config/policy installed nobody but the operator's service account
// may write them at all, while the operator, running as that service account with
// config/rbac/role.yaml, still builds, repairs and tears labs down.
package guards_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/yaml"

	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

// The operator's service account as config/default installs it (namespace labforge-system,
// name prefix labforge-): the one user config/policy/lab-guards.yaml lets through.
const (
	operatorNamespace = "labforge-system"
	operatorAccount   = "labforge-controller-manager"
	operatorUser      = "system:serviceaccount:" + operatorNamespace + ":" + operatorAccount
)

var (
	cp *controlplane.ControlPlane
	// k8s is the administrator's client.
	k8s client.Client
	sim *simulator.Simulator
	// operatorConfig reaches the control plane as the operator's service account.
	operatorConfig *rest.Config
	// stopOperator stops the operator the suite runs.
	stopOperator func()
)

func TestGuards(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	SetDefaultConsistentlyDuration(3 * time.Second)
	RunSpecs(t, "labforge lab guards")
}

var _ = BeforeSuite(func(ctx context.Context) {
	ctrl.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	var err error
	cp, err = integration.StartControlPlane(context.Background())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	k8s, err = client.New(cp.RESTConfig(), client.Options{Scheme: manager.NewScheme()})
	Expect(err).NotTo(HaveOccurred())

	// The operator's identity and its ClusterRole, as config/default installs them.
	Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNamespace}})).To(Succeed())
	Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNamespace, Name: operatorAccount}})).To(Succeed())
	role := &rbacv1.ClusterRole{}
	readYAML("config/rbac/role.yaml", role)
	Expect(k8s.Create(ctx, role)).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "labforge-manager-rolebinding"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: operatorNamespace, Name: operatorAccount}},
	})).To(Succeed())
	operatorConfig = rest.CopyConfig(cp.RESTConfig())
	operatorConfig.Impersonate = rest.ImpersonationConfig{UserName: operatorUser}

	// KubeVirt (simulated) is another component with its own identity.
	stopSim, s, err := integration.StartSimulator(cp.RESTConfig(), simulator.Options{})
	Expect(err).NotTo(HaveOccurred())
	sim = s
	DeferCleanup(stopSim)
	startOperator(nil)
	DeferCleanup(func() { stopOperator() })
}, NodeTimeout(2*time.Minute))

// startOperator runs the operator as its service account, its requests recorded by rec
// when rec is not nil.
func startOperator(rec *integration.WriteRecorder) {
	cfg := operatorConfig
	if rec != nil {
		cfg = rec.Wrap(cfg)
	}
	stop, err := integration.StartManager(context.Background(), cfg, manager.Options{ProbeDialer: sim.Dialer()})
	Expect(err).NotTo(HaveOccurred())
	stopOperator = stop
}

// readYAML decodes one manifest of the repository.
func readYAML(path string, into any) {
	data, err := os.ReadFile(filepath.Join(integration.RepoRoot(), path))
	Expect(err).NotTo(HaveOccurred())
	Expect(yaml.Unmarshal(data, into)).To(Succeed())
}

// as returns an administrator's client that acts as user, a member of system:masters:
// RBAC lets it do anything, an admission policy does not.
func as(user string) client.Client {
	cfg := rest.CopyConfig(cp.RESTConfig())
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:masters"}}
	c, err := client.New(cfg, client.Options{Scheme: manager.NewScheme()})
	Expect(err).NotTo(HaveOccurred())
	return c
}
