package api_test

import (
	"context"
	"os/exec"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// kubectl runs the real kubectl against the test control plane.
func kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", cp.KubeconfigPath()}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// header returns the column names of kubectl's table output.
func header(out string) []string {
	return strings.Fields(strings.SplitN(out, "\n", 2)[0])
}

var _ = Describe("kubectl", Ordered, func() {
	BeforeAll(func(ctx context.Context) {
		Expect(k8s.Create(ctx, set(set(template("kubectl-lab"), "workers.count", int64(3)), "workers.memory", "1Gi"))).To(Succeed())
		Expect(k8s.Create(ctx, set(pool("kubectl-pool"), "templateRef.name", "kubectl-lab"))).To(Succeed())
		env := environment("kubectl-env")
		set(env, "templateRef.name", "kubectl-lab")
		set(env, "poolRef", map[string]any{"name": "kubectl-pool"})
		withClaimRef(env, "kubectl-claim", "0b6d0f7e-3c5e-4b7a-9d7e-1f2a3b4c5d6e")
		Expect(k8s.Create(ctx, env)).To(Succeed())
		Expect(k8s.Create(ctx, named(claim("kubectl-claim"), "kubectl-claim"))).To(Succeed())
	})

	It("shows a template's version and size", func(ctx context.Context) {
		out, err := kubectl(ctx, "get", "labtemplates", "kubectl-lab")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(header(out)).To(Equal([]string{"NAME", "VERSION", "WORKERS", "READY", "AGE"}))
		Expect(strings.Fields(strings.Split(out, "\n")[1])[:3]).To(Equal([]string{"kubectl-lab", "v1.36.3", "3"}))
	})

	It("shows a pool's desired, ready, booting and claimed counts", func(ctx context.Context) {
		out, err := kubectl(ctx, "get", "labpools", "kubectl-pool")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(header(out)).To(Equal([]string{"NAME", "TEMPLATE", "DESIRED", "READY", "BOOTING", "CLAIMED", "AGE"}))
		Expect(strings.Fields(strings.Split(out, "\n")[1])[:3]).To(Equal([]string{"kubectl-pool", "kubectl-lab", "1"}))
	})

	It("shows an environment's template, pool, claim and readiness", func(ctx context.Context) {
		out, err := kubectl(ctx, "get", "labenvironments", "kubectl-env")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(header(out)).To(Equal([]string{"NAME", "TEMPLATE", "POOL", "CLAIM", "READY", "REASON", "AGE"}))
		Expect(strings.Fields(strings.Split(out, "\n")[1])[:4]).To(Equal([]string{"kubectl-env", "kubectl-lab", "kubectl-pool", "kubectl-claim"}))
	})

	It("shows a claim's readiness, lab, SSH endpoint and expiry", func(ctx context.Context) {
		out, err := kubectl(ctx, "-n", "default", "get", "labclaims", "kubectl-claim")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(header(out)).To(Equal([]string{"NAME", "READY", "REASON", "LAB", "SSH", "EXPIRES", "AGE"}))
	})

	It("lists every kind through the labforge category and the short names", func(ctx context.Context) {
		out, err := kubectl(ctx, "get", "labforge", "-A", "-o", "name")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("labtemplate.labforge.dev/kubectl-lab"))
		Expect(out).To(ContainSubstring("labpool.labforge.dev/kubectl-pool"))
		Expect(out).To(ContainSubstring("labenvironment.labforge.dev/kubectl-env"))
		Expect(out).To(ContainSubstring("labclaim.labforge.dev/kubectl-claim"))
		for _, short := range []string{"lt", "lp", "le", "lc"} {
			out, err := kubectl(ctx, "get", short, "-A")
			Expect(err).NotTo(HaveOccurred(), "kubectl get %s: %s", short, out)
		}
	})

	It("scales a pool through the scale subresource, within its bounds", func(ctx context.Context) {
		out, err := kubectl(ctx, "scale", "labpool", "kubectl-pool", "--replicas=5")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("labpool.labforge.dev/kubectl-pool scaled"))
		var p labforgev1alpha1.LabPool
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "kubectl-pool"}, &p)).To(Succeed())
		Expect(p.Spec.Replicas).To(Equal(int32(5)))

		out, err = kubectl(ctx, "scale", "labpool", "kubectl-pool", "--replicas=101")
		Expect(err).To(HaveOccurred())
		Expect(out).To(ContainSubstring("spec.replicas: Invalid value: replicas must not exceed spec.maxLabs"))
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "kubectl-pool"}, &p)).To(Succeed())
		Expect(p.Spec.Replicas).To(Equal(int32(5)))
	})

	It("explains the API from the CRDs' own documentation", func(ctx context.Context) {
		out, err := kubectl(ctx, "explain", "labclaim.spec.duration")
		Expect(err).NotTo(HaveOccurred(), out)
		Expect(out).To(ContainSubstring("Duration is how long the claim holds its lab"))
	})
})

var _ = Describe("A KubeVirt VirtualMachine", func() {
	vm := func(name string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
			"metadata": map[string]any{"name": name, "namespace": "default"},
			"spec": map[string]any{
				"runStrategy": "Always",
				"template": map[string]any{"spec": map[string]any{
					"domain": map[string]any{
						"cpu":     map[string]any{"cores": int64(2), "coress": int64(4)},
						"devices": map[string]any{},
						"memory":  map[string]any{"guest": "2Gi"},
					},
				}},
			},
		}}
	}

	It("with a misspelled field is refused under strict field validation", func(ctx context.Context) {
		err := k8s.Create(ctx, vm("strict"), client.FieldValidation("Strict"))
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(`unknown field "spec.template.spec.domain.cpu.coress"`))
	})

	It("with a misspelled field does not survive as written otherwise", func(ctx context.Context) {
		Expect(k8s.Create(ctx, vm("pruned"))).To(Succeed())
		got := &unstructured.Unstructured{}
		got.SetAPIVersion("kubevirt.io/v1")
		got.SetKind("VirtualMachine")
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: "pruned"}, got)).To(Succeed())
		cpu, found, err := unstructured.NestedMap(got.Object, "spec", "template", "spec", "domain", "cpu")
		Expect(err).NotTo(HaveOccurred())
		Expect(found).To(BeTrue())
		Expect(cpu).To(Equal(map[string]any{"cores": int64(2)}))
	})
})
