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
		Expect(files).To(HaveLen(3))
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

		var claim labforgev1alpha1.LabClaim
		Expect(k8s.Get(ctx, client.ObjectKey{Namespace: "default", Name: "alice"}, &claim)).To(Succeed())
		Expect(claim.Status.ObservedGeneration).To(Equal(int64(-1)))
	})

	It("default a node's disk on its own, and the rest of a node sized only by memory and disk", func(ctx context.Context) {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "labforge.dev/v1alpha1", "kind": "LabTemplate",
			"metadata": map[string]any{"name": "sized"},
			"spec": map[string]any{
				"kubernetesVersion": "v1.36.3",
				"image":             map[string]any{"containerDisk": "quay.io/containerdisks/ubuntu:22.04"},
				"controlPlane":      map[string]any{"cores": int64(2), "memory": "4Gi"},
				"workers":           map[string]any{"count": int64(2), "memory": "1Gi", "disk": "50Gi"},
			},
		}}
		Expect(k8s.Create(ctx, u)).To(Succeed())
		tmpl := &labforgev1alpha1.LabTemplate{}
		Expect(k8s.Get(ctx, client.ObjectKey{Name: "sized"}, tmpl)).To(Succeed())
		Expect(tmpl.Spec.ControlPlane.Memory.String()).To(Equal("4Gi"))
		Expect(tmpl.Spec.ControlPlane.Disk.String()).To(Equal("20Gi"))
		Expect(tmpl.Spec.Workers.Disk.String()).To(Equal("50Gi"))
		Expect(tmpl.Spec.Workers.Threads).To(Equal(int32(1)))
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
	})
})
