// Package solution_test tells the story of a solution check: a template whose lab leaves a
// check failing, a student fixing the lab, and the claim turning Solved, all against real
// API servers: the simulated guest's real lab API (an etcd and a kube-apiserver with the
// lab's own CA, reached with the operator's lab credential), and a second control plane
// standing in for a lab where the story needs the lab's scenario.
package solution_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/test/integration"
)

var (
	cp *controlplane.ControlPlane
	// labCP is the stand-in for the lab's API: a real kube-apiserver of its own.
	labCP *controlplane.ControlPlane
	k8s   client.Client
	// labAdmin is the lab's administrator (what its bootstrap runs as).
	labAdmin client.Client
)

// watchTimeout is how long each of the operator's watches into a lab lasts: the longest a
// revoked read access can go unnoticed.
const watchTimeout = 5 * time.Second

func TestSolution(t *testing.T) {
	RegisterFailHandler(Fail)
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "labforge solution checks")
}

var _ = BeforeSuite(func(ctx context.Context) {
	s := integration.SetUpSuite(integration.SuiteOptions{})
	cp, k8s = s.ControlPlane, s.Client
	var err error
	labCP, err = integration.StartControlPlane(context.Background())
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(labCP.Stop)
	labAdmin, err = client.New(labCP.RESTConfig(), client.Options{Scheme: manager.NewScheme()})
	Expect(err).NotTo(HaveOccurred())
}, NodeTimeout(4*time.Minute))
