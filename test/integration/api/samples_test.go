package api_test

import (
	"context"
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/integration"
)

var _ = Describe("The samples in config/samples", Ordered, func() {
	It("are all accepted as written, with strict field validation", func(ctx context.Context) {
		files, err := filepath.Glob(filepath.Join(integration.RepoRoot(), "config", "samples", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		student, err := filepath.Glob(filepath.Join(integration.RepoRoot(), "config", "samples", "student", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		// The admin's part first, in the order kubectl apply -f reads it: the template,
		// then the pool that names it; the student's claim apart, applied once it is warm.
		Expect(files).To(HaveLen(2))
		Expect(filepath.Base(files[0])).To(Equal("1-labtemplate.yaml"))
		Expect(filepath.Base(files[1])).To(Equal("2-labpool.yaml"))
		Expect(student).To(HaveLen(1))
		scheduled, err := filepath.Glob(filepath.Join(integration.RepoRoot(), "config", "samples", "scheduled", "*.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(scheduled).To(HaveLen(1))
		files = append(files, student...)
		files = append(files, scheduled...)
		for _, f := range files {
			data, err := os.ReadFile(f)
			Expect(err).NotTo(HaveOccurred())
			u := &unstructured.Unstructured{}
			Expect(yaml.Unmarshal(data, &u.Object)).To(Succeed(), f)
			Expect(k8s.Create(ctx, u, client.FieldValidation("Strict"))).To(Succeed(), f)
		}
	})

	It("get the documented defaults and an observedGeneration of -1 before any controller ran", func(ctx context.Context) {
		var tmpl labforgev1alpha1.LabTemplate
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "broken-dns"}, &tmpl)).To(Succeed())
		Expect(tmpl.Spec.BootTimeout.Duration.String()).To(Equal("15m0s"))
		Expect(tmpl.Spec.Network.PodCIDR).To(Equal("10.200.0.0/16"))
		Expect(tmpl.Spec.Network.ServiceCIDR).To(Equal("10.201.0.0/16"))
		Expect(tmpl.Spec.Network.TunnelPort).To(Equal(int32(8475)))
		Expect(tmpl.Status.ObservedGeneration).To(Equal(int64(-1)))

		var pool labforgev1alpha1.LabPool
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "broken-dns"}, &pool)).To(Succeed())
		Expect(pool.Status.ObservedGeneration).To(Equal(int64(-1)))
		// kubectl get shows 0, not a blank, for the counts of a pool nobody counted yet.
		raw := &unstructured.Unstructured{}
		raw.SetAPIVersion("labforge.dev/v1alpha1")
		raw.SetKind("LabPool")
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "broken-dns"}, raw)).To(Succeed())
		for _, f := range []string{"replicas", "readyReplicas", "bootingReplicas", "boundReplicas", "failedReplicas", "waitingClaims"} {
			v, found, err := unstructured.NestedInt64(raw.Object, "status", f)
			Expect(err).NotTo(HaveOccurred(), f)
			Expect(found).To(BeTrue(), "status.%s is not defaulted", f)
			Expect(v).To(BeZero(), f)
		}

		var claim labforgev1alpha1.LabClaim
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: "alice"}, &claim)).To(Succeed())
		Expect(claim.Status.ObservedGeneration).To(Equal(int64(-1)))
	})

	It("default each field of a node size on its own, so any subset of a block works", func(ctx context.Context) {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "labforge.dev/v1alpha1", "kind": "LabTemplate",
			"metadata": map[string]any{"name": "subsets"},
			"spec": map[string]any{
				"kubernetesVersion": "v1.36.3",
				"image":             map[string]any{"containerDisk": "quay.io/containerdisks/ubuntu:22.04"},
				"controlPlane":      map[string]any{"memory": "4Gi"},
				"workers":           map[string]any{"count": int64(3)},
			},
		}}
		Expect(k8s.Create(ctx, u)).To(Succeed())
		tmpl := &labforgev1alpha1.LabTemplate{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "subsets"}, tmpl)).To(Succeed())
		Expect(tmpl.Spec.ControlPlane.Cores).To(Equal(int32(2)))
		Expect(tmpl.Spec.ControlPlane.Threads).To(Equal(int32(1)))
		Expect(tmpl.Spec.ControlPlane.Memory.String()).To(Equal("4Gi"))
		Expect(tmpl.Spec.ControlPlane.Disk.String()).To(Equal("20Gi"))
		Expect(tmpl.Spec.Workers.Count).To(Equal(int32(3)))
		Expect(tmpl.Spec.Workers.Cores).To(Equal(int32(1)))
		Expect(tmpl.Spec.Workers.Memory.String()).To(Equal("1Gi"))
		Expect(tmpl.Spec.Workers.Disk.String()).To(Equal("20Gi"))
	})

	It("default a minimal template to a working two-node lab", func(ctx context.Context) {
		tmpl := &labforgev1alpha1.LabTemplate{}
		tmpl.Name = "minimal"
		tmpl.Spec.KubernetesVersion = "v1.36.3"
		tmpl.Spec.Image.ContainerDisk = "quay.io/containerdisks/ubuntu:22.04"
		// Send only what a person would write: the typed client would send zero values.
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "labforge.dev/v1alpha1", "kind": "LabTemplate",
			"metadata": map[string]any{"name": "minimal"},
			"spec": map[string]any{
				"kubernetesVersion": "v1.36.3",
				"image":             map[string]any{"containerDisk": "quay.io/containerdisks/ubuntu:22.04"},
			},
		}}
		Expect(k8s.Create(ctx, u)).To(Succeed())
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tmpl), tmpl)).To(Succeed())
		Expect(tmpl.Spec.ControlPlane.Cores).To(Equal(int32(2)))
		Expect(tmpl.Spec.ControlPlane.Memory.String()).To(Equal("2Gi"))
		Expect(tmpl.Spec.Workers.Count).To(Equal(int32(1)))
		Expect(tmpl.Spec.Workers.Memory.String()).To(Equal("1Gi"))
		Expect(tmpl.Spec.ControlPlane.Disk.String()).To(Equal("20Gi"))
		Expect(tmpl.Spec.Workers.Disk.String()).To(Equal("20Gi"))
		Expect(tmpl.Spec.SSHUser).To(Equal("ubuntu"))
		Expect(tmpl.Spec.Lifetime.Default.Duration.String()).To(Equal("2h0m0s"))
		Expect(tmpl.Spec.Lifetime.Maximum.Duration.String()).To(Equal("8h0m0s"))
		// Defaulted inside the defaulted network block: a template that says nothing
		// keeps today's internet access (decision 59).
		Expect(tmpl.Spec.Network.InternetEgress).To(Equal(labforgev1alpha1.InternetEgressAllow))
	})
})
