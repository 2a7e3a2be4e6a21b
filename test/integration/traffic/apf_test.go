package traffic_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/labforge/labforge/test/integration"
)

// operatorUser is the operator's service account as config/default names it (prefix
// labforge-, namespace labforge-system; config/policy_test.go checks they agree).
const operatorUser = "system:serviceaccount:labforge-system:labforge-controller-manager"

// namePrefix is config/default's namePrefix, which kustomize puts on the objects of
// config/apf and, through config/apf/kustomizeconfig.yaml, on the FlowSchemas' references.
const namePrefix = "labforge-"

// readAPF decodes config/apf's priority levels and flow schemas as config/default
// deploys them: with the name prefix on their names and references.
func readAPF() ([]*flowcontrolv1.PriorityLevelConfiguration, []*flowcontrolv1.FlowSchema) {
	GinkgoHelper()
	var levels []*flowcontrolv1.PriorityLevelConfiguration
	var schemas []*flowcontrolv1.FlowSchema
	for _, file := range []string{"priority-levels.yaml", "flow-schemas.yaml"} {
		data, err := os.ReadFile(filepath.Join(integration.RepoRoot(), "config", "apf", file))
		Expect(err).NotTo(HaveOccurred())
		for _, doc := range strings.Split(string(data), "\n---\n") {
			var kind struct{ Kind string }
			Expect(yaml.Unmarshal([]byte(doc), &kind)).To(Succeed())
			switch kind.Kind {
			case "PriorityLevelConfiguration":
				pl := &flowcontrolv1.PriorityLevelConfiguration{}
				Expect(yaml.UnmarshalStrict([]byte(doc), pl)).To(Succeed())
				pl.Name = namePrefix + pl.Name
				levels = append(levels, pl)
			case "FlowSchema":
				fs := &flowcontrolv1.FlowSchema{}
				Expect(yaml.UnmarshalStrict([]byte(doc), fs)).To(Succeed())
				fs.Name = namePrefix + fs.Name
				fs.Spec.PriorityLevelConfiguration.Name = namePrefix + fs.Spec.PriorityLevelConfiguration.Name
				schemas = append(schemas, fs)
			default:
				Fail("unexpected kind " + kind.Kind + " in config/apf/" + file)
			}
		}
	}
	return levels, schemas
}

// classifiedAs sends one GET to path as the operator and returns the UIDs of the
// FlowSchema and the priority level the API server classified it by (its
// X-Kubernetes-PF-* response headers; RBAC may refuse the request itself, after APF).
func classifiedAs(ctx context.Context, path string) func(Gomega) [2]string {
	cfg := rest.CopyConfig(cp.RESTConfig())
	cfg.Impersonate = rest.ImpersonationConfig{UserName: operatorUser,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:labforge-system", "system:authenticated"}}
	return func(g Gomega) [2]string {
		hc, err := rest.HTTPClientFor(cfg)
		g.Expect(err).NotTo(HaveOccurred())
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+path, nil)
		g.Expect(err).NotTo(HaveOccurred())
		resp, err := hc.Do(req)
		g.Expect(err).NotTo(HaveOccurred())
		_ = resp.Body.Close()
		return [2]string{resp.Header.Get(flowcontrolv1.ResponseHeaderMatchedFlowSchemaUID), resp.Header.Get(flowcontrolv1.ResponseHeaderMatchedPriorityLevelConfigurationUID)}
	}
}

var _ = Describe("The API Priority and Fairness objects config/apf ships", func() {
	It("are accepted by kube-apiserver and classify the operator's claim requests apart from its lab work", func(ctx context.Context) {
		levels, schemas := readAPF()
		Expect(levels).To(HaveLen(2))
		Expect(schemas).To(HaveLen(2))
		levelUID, schemaUID := map[string]string{}, map[string]string{}
		for _, pl := range levels {
			Expect(k8s.Create(ctx, pl)).To(Succeed())
			levelUID[pl.Name] = string(pl.UID)
		}
		for _, fs := range schemas {
			Expect(k8s.Create(ctx, fs)).To(Succeed())
			schemaUID[fs.Name] = string(fs.UID)
		}

		By("the API server finds each schema's priority level (Dangling=False)")
		for _, fs := range schemas {
			Eventually(func(g Gomega) *flowcontrolv1.FlowSchemaCondition {
				var got flowcontrolv1.FlowSchema
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(fs), &got)).To(Succeed())
				for i := range got.Status.Conditions {
					if got.Status.Conditions[i].Type == flowcontrolv1.FlowSchemaConditionDangling {
						return &got.Status.Conditions[i]
					}
				}
				return nil
			}).Should(And(Not(BeNil()), HaveField("Status", flowcontrolv1.ConditionFalse)), "FlowSchema %s", fs.Name)
		}

		claims := [2]string{schemaUID["labforge-claims"], levelUID["labforge-claims"]}
		labs := [2]string{schemaUID["labforge-labs"], levelUID["labforge-labs"]}
		Expect(append(claims[:], labs[:]...)).NotTo(ContainElement(""))

		By("a claim's bind and status go to the claims level")
		Eventually(classifiedAs(ctx, "/apis/labforge.dev/v1alpha1/namespaces/students/labclaims/alice")).Should(Equal(claims))
		Eventually(classifiedAs(ctx, "/apis/labforge.dev/v1alpha1/namespaces/students/labclaims/alice/status")).Should(Equal(claims))
		Eventually(classifiedAs(ctx, "/apis/labforge.dev/v1alpha1/labenvironments/pool-0")).Should(Equal(claims))
		By("a lab's status, its namespace and what is in it go to the labs level")
		Eventually(classifiedAs(ctx, "/apis/labforge.dev/v1alpha1/labenvironments/pool-0/status")).Should(Equal(labs))
		Eventually(classifiedAs(ctx, "/api/v1/namespaces/lab-pool-0/secrets/pki")).Should(Equal(labs))
		Eventually(classifiedAs(ctx, "/api/v1/namespaces/lab-pool-0")).Should(Equal(labs))
		Eventually(classifiedAs(ctx, "/apis/kubevirt.io/v1/namespaces/lab-pool-0/virtualmachines/control-plane")).Should(Equal(labs))
	})
})
