package recovery_test

import (
	"context"
	"os"
	"os/exec"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

var labforgeCRDs = []string{"labtemplates.labforge.dev", "labpools.labforge.dev", "labenvironments.labforge.dev", "labclaims.labforge.dev"}

// crds returns the labforge CRDs that exist, with whether each is being deleted.
func crds(ctx context.Context) func(Gomega) map[string]bool {
	scheme := runtime.NewScheme()
	Expect(apiextensionsv1.AddToScheme(scheme)).To(Succeed())
	c, err := client.New(cp.RESTConfig(), client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return func(g Gomega) map[string]bool {
		out := map[string]bool{}
		for _, name := range labforgeCRDs {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			err := c.Get(ctx, client.ObjectKey{Name: name}, crd)
			if apierrors.IsNotFound(err) {
				continue
			}
			g.Expect(err).NotTo(HaveOccurred())
			out[name] = !crd.DeletionTimestamp.IsZero()
		}
		return out
	}
}

// reinstall puts the CRDs back as `make install` does and restarts the operator, whose
// informers lost their kinds, for the stories that follow.
func reinstall(ctx context.Context) {
	stopManager()
	kubectl(ctx, "apply", "--server-side", "-k", "config/crd")
	kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s", "crd/labtemplates.labforge.dev",
		"crd/labpools.labforge.dev", "crd/labenvironments.labforge.dev", "crd/labclaims.labforge.dev")
	startManager()
}

// withLabs creates a pool with a warm lab, a claim on it and a claim with a lab of its own,
// and waits until both claims are Ready.
func withLabs(ctx context.Context, template, students string) {
	GinkgoHelper()
	Expect(k8s.Create(ctx, integration.MakeTemplate(template).AdmitClaimsFrom(students).Obj())).To(Succeed())
	Expect(k8s.Create(ctx, integration.MakePool(template, template).Replicas(1).Obj())).To(Succeed())
	createNamespace(ctx, students)
	Expect(k8s.Create(ctx, integration.MakeClaim(students, "alice").Pool(template).GenerateKeyPair().Obj())).To(Succeed())
	Expect(k8s.Create(ctx, integration.MakeClaim(students, "erin").Template(template).GenerateKeyPair().Obj())).To(Succeed())
	Eventually(claimReady(ctx, students, "alice")).Should(HaveField("Status", metav1.ConditionTrue))
	Eventually(claimReady(ctx, students, "erin")).Should(HaveField("Status", metav1.ConditionTrue))
	Eventually(poolStatus(ctx, template)).Should(HaveField("ReadyReplicas", int32(1)))
}

var _ = Describe("An admin uninstalling labforge with claims present", func() {
	It("with the operator running, deletes the CRDs (make uninstall) and every lab with them", func(ctx context.Context) {
		DeferCleanup(reinstall)
		withLabs(ctx, "uninstall", "students-uninstall")
		Expect(labforgeObjects(ctx, Default, everything)).NotTo(BeEmpty())

		// What `make uninstall` runs; kubectl waits until the CRDs are gone.
		script(ctx, "hack/uninstall.sh", "--timeout=120s")
		Eventually(crds(ctx)).Should(BeEmpty())
		Eventually(leftovers(ctx, notTheOperators)).WithTimeout(60 * time.Second).Should(BeEmpty())
	})

	It("with the operator gone, leaves the CRDs waiting on finalizers until hack/strip-finalizers.sh removes them", func(ctx context.Context) {
		DeferCleanup(reinstall)
		withLabs(ctx, "uninstall-late", "students-uninstall-late")
		stopManager()
		// The host's KubeVirt and kubelets are not labforge's and keep running: they
		// finish the deletion of the launcher pods of the namespaces deleted below.
		stopHost, _, err := integration.StartSimulator(cp.RESTConfig(), simulator.Options{})
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(stopHost)

		kubectl(ctx, "delete", "--ignore-not-found", "--wait=false", "-k", "config/crd")
		// Templates and claims carry no finalizer and go; the kinds that do wait, Terminating.
		stuck := map[string]bool{"labpools.labforge.dev": true, "labenvironments.labforge.dev": true}
		Eventually(crds(ctx)).Should(Equal(stuck))
		Consistently(crds(ctx)).Should(Equal(stuck))
		Consistently(func(g Gomega) {
			var envs labforgev1alpha1.LabEnvironmentList
			g.Expect(k8s.List(ctx, &envs)).To(Succeed())
			g.Expect(envs.Items).NotTo(BeEmpty())
			for _, env := range envs.Items {
				g.Expect(env.DeletionTimestamp).NotTo(BeNil(), env.Name)
				g.Expect(env.Finalizers).To(Equal([]string{"labforge.dev/environment"}), env.Name)
			}
		}).Should(Succeed())

		script(ctx, "hack/strip-finalizers.sh")
		Eventually(crds(ctx)).WithTimeout(60 * time.Second).Should(BeEmpty())
		Eventually(leftovers(ctx, notTheOperators)).WithTimeout(60 * time.Second).Should(BeEmpty())
	})
})

// script runs one of the repository's scripts against the suite's control plane.
func script(ctx context.Context, path string, args ...string) {
	GinkgoHelper()
	cmd := exec.CommandContext(ctx, "bash", append([]string{path}, args...)...)
	cmd.Dir = integration.RepoRoot()
	cmd.Env = append(os.Environ(), "KUBECONFIG="+cp.KubeconfigPath())
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
	GinkgoWriter.Printf("%s: %s\n", path, out)
}

// notTheOperators keeps what is not the operator's own: its ownership key Secret stays in
// its namespace until `make undeploy` deletes both (docs/operations.md).
func notTheOperators(o client.Object) bool {
	return o.GetNamespace() != manager.DefaultOperatorNamespace
}
