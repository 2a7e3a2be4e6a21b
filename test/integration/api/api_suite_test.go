// Package api_test checks the labforge API as a real API server serves it: the CRDs
// install, the samples are accepted, bad input is rejected with a clear message naming the
// field, and kubectl shows what a person wants to see.
package api_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/test/integration"
)

var (
	cp  *controlplane.ControlPlane
	k8s client.Client
)

func TestAPI(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "labforge API")
}

var _ = BeforeSuite(func(ctx context.Context) {
	var err error
	cp, err = integration.StartControlPlane(context.Background())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	k8s, err = client.New(cp.RESTConfig(), client.Options{Scheme: manager.NewScheme()})
	Expect(err).NotTo(HaveOccurred())
}, NodeTimeout(120e9))
