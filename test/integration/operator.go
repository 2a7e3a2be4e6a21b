package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/labforge/labforge/internal/manager"
)

// The operator's service account as config/default installs it (namespace
// labforge-system, name prefix labforge-): the one user config/policy lets write lab
// guards and bounds.
const (
	OperatorNamespace = "labforge-system"
	OperatorAccount   = "labforge-controller-manager"
	OperatorUser      = "system:serviceaccount:" + OperatorNamespace + ":" + OperatorAccount
)

// ReadManifest decodes one manifest of the repository, path relative to its root.
func ReadManifest(path string, into any) error {
	data, err := os.ReadFile(filepath.Join(RepoRoot(), path))
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		return fmt.Errorf("decoding %s: %w", path, err)
	}
	return nil
}

// Impersonate returns a copy of cfg that acts as user, a member of groups.
func Impersonate(cfg *rest.Config, user string, groups ...string) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return out
}

// ClientAs returns a client of labforge's scheme that acts as user, a member of groups,
// on cfg's cluster.
func ClientAs(cfg *rest.Config, user string, groups ...string) (client.Client, error) {
	return client.New(Impersonate(cfg, user, groups...), client.Options{Scheme: manager.NewScheme()})
}

// InstallOperatorAccount gives the operator the identity config/ gives it: its namespace,
// its service account, the controllers' ClusterRole (config/rbac/role.yaml) and the leader
// election Role in its namespace, each bound to the account, all created by admin. It
// returns a copy of cfg that acts as the account, for the operator to run with.
func InstallOperatorAccount(ctx context.Context, admin client.Client, cfg *rest.Config) (*rest.Config, error) {
	if err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: OperatorNamespace}}); err != nil {
		return nil, err
	}
	sa := &corev1.ServiceAccount{}
	if err := ReadManifest("config/rbac/service_account.yaml", sa); err != nil {
		return nil, err
	}
	sa.Namespace, sa.Name = OperatorNamespace, "labforge-"+sa.Name
	if sa.Name != OperatorAccount {
		return nil, fmt.Errorf("config/rbac/service_account.yaml names the account %s, not %s", sa.Name, OperatorAccount)
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: OperatorNamespace, Name: sa.Name}}
	role := &rbacv1.ClusterRole{}
	if err := ReadManifest("config/rbac/role.yaml", role); err != nil {
		return nil, err
	}
	role.Name = "labforge-" + role.Name
	election := &rbacv1.Role{}
	if err := ReadManifest("config/rbac/leader_election_role.yaml", election); err != nil {
		return nil, err
	}
	election.Namespace, election.Name = OperatorNamespace, "labforge-"+election.Name
	for _, o := range []client.Object{
		sa,
		role,
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: role.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
			Subjects:   subject,
		},
		election,
		&rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: OperatorNamespace, Name: election.Name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: election.Name},
			Subjects:   subject,
		},
	} {
		if err := admin.Create(ctx, o); err != nil {
			return nil, fmt.Errorf("creating %T %s: %w", o, o.GetName(), err)
		}
	}
	return Impersonate(cfg, OperatorUser), nil
}
