// Package traffic_test checks what labforge asks of the API server: no write into a lab
// that is going (every such write is refused, 403 NamespaceTerminating), and the API
// Priority and Fairness objects config/ ships, applied to the real kube-apiserver.
package traffic_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/test/integration"
)

var (
	cp  *controlplane.ControlPlane
	k8s client.WithWatch
)

func TestTraffic(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(60 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "labforge's traffic to the API server")
}

var _ = BeforeSuite(func(_ context.Context) {
	s := integration.SetUpSuite(integration.SuiteOptions{})
	cp, k8s = s.ControlPlane, s.Client
}, NodeTimeout(2*time.Minute))
