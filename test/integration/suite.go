// Package integration holds what the integration suites share: one real control plane
// (etcd, kube-apiserver with RBAC, kube-controller-manager) built by hack/ into bin/, with
// labforge's and KubeVirt's CRDs installed.
package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"k8s.io/client-go/rest"

	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/hostcluster"
	"github.com/labforge/labforge/internal/manager"
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir is where hack/build-controlplane.sh put the control-plane binaries: the
// LABFORGE_BIN_DIR the Makefile exports, else the repository's bin/.
func BinDir() string {
	if d := os.Getenv("LABFORGE_BIN_DIR"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), "bin")
}

// CRDPaths are labforge's CRDs and the KubeVirt CRDs generated with their real schemas.
func CRDPaths() []string {
	root := RepoRoot()
	return []string{filepath.Join(root, "config", "crd", "bases"), filepath.Join(root, "config", "kubevirt")}
}

// StartControlPlane starts a control plane with every CRD installed. It fails, rather than
// skips, when the binaries are missing: `make test` builds them first.
func StartControlPlane(ctx context.Context) (*controlplane.ControlPlane, error) {
	for _, b := range []string{"etcd", "kube-apiserver", "kube-controller-manager"} {
		if _, err := os.Stat(filepath.Join(BinDir(), b)); err != nil {
			return nil, fmt.Errorf("control-plane binary %s missing in %s: run `make controlplane` (make test does): %w", b, BinDir(), err)
		}
	}
	return controlplane.Start(ctx, controlplane.Options{BinDir: BinDir(), CRDPaths: CRDPaths()})
}

// StartManager runs labforge's manager with every controller against cfg until the
// returned stop function is called; stop waits for the manager to exit.
func StartManager(cfg *rest.Config) (stop func(), err error) {
	mgr, err := manager.New(cfg, manager.Options{
		MetricsAddr: "0", ProbeAddr: "0", Host: hostcluster.Default(),
		// Suites restart the manager, and later ones run two at once.
		SkipControllerNameValidation: true,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	return func() {
		cancel()
		<-done
	}, nil
}
