// Package preflight_test runs `labforge preflight` against the project's real control
// plane, with the KubeVirt object, Nodes, ServiceCIDRs and CNI ConfigMaps created in each
// shape a host may show them, and checks the exact checklist lines it prints.
package preflight_test

import (
	"context"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/test/integration"
)

// nodePortRange is not the API server's default, so that a test passing proves preflight
// learned the range rather than assumed it.
const nodePortRange = "30100-30999"

var (
	cp  *controlplane.ControlPlane
	k8s client.Client
)

func TestPreflight(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "labforge preflight")
}

var _ = BeforeSuite(func(ctx context.Context) {
	var err error
	cp, err = controlplane.Start(context.Background(), controlplane.Options{
		BinDir:        integration.BinDir(),
		CRDPaths:      integration.CRDPaths(),
		NodePortRange: nodePortRange,
	})
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(cp.Stop)
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(kubevirtv1.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	k8s, err = client.New(cp.RESTConfig(), client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
}, NodeTimeout(120e9))
