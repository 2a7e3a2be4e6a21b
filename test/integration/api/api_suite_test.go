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
	s := integration.SetUpSuite(integration.SuiteOptions{Quiet: true})
	cp, k8s = s.ControlPlane, s.Client
}, NodeTimeout(120e9))
