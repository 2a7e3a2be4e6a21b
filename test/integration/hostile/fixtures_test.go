package hostile_test

import (
	"context"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

const aliceKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIlYq0c6HkW6u3uC9B3iJ9Xw2lqWlq3S0sJ7B2nL3f2m alice@laptop"

func newTemplate(name string) *labforgev1alpha1.LabTemplate {
	return &labforgev1alpha1.LabTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: labforgev1alpha1.LabTemplateSpec{
			KubernetesVersion: "v1.36.3",
			Image:             labforgev1alpha1.LabImage{ContainerDisk: "quay.io/containerdisks/ubuntu:22.04"},
			ControlPlane:      labforgev1alpha1.ControlPlaneSize{Cores: 2, Threads: 1, Memory: resource.MustParse("2Gi")},
			Workers:           labforgev1alpha1.WorkerSpec{Count: 1, NodeSize: labforgev1alpha1.NodeSize{Cores: 1, Threads: 1, Memory: resource.MustParse("1Gi")}},
			Network:           labforgev1alpha1.LabNetwork{PodCIDR: "10.200.0.0/16", ServiceCIDR: "10.201.0.0/16", TunnelPort: 8475},
		},
	}
}

func newPool(name, template string, replicas int32) *labforgev1alpha1.LabPool {
	return &labforgev1alpha1.LabPool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: labforgev1alpha1.LabPoolSpec{
			TemplateRef: labforgev1alpha1.LocalObjectReference{Name: template}, Replicas: replicas,
			MaxBooting: 5, MaxLabs: 20, ClaimNamespaceSelector: &metav1.LabelSelector{},
			UpdateStrategy: labforgev1alpha1.PoolUpdateStrategy{Type: labforgev1alpha1.RollingUpdate},
		},
	}
}

func newClaim(ns, name, pool string) *labforgev1alpha1.LabClaim {
	return &labforgev1alpha1.LabClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: labforgev1alpha1.LabClaimSpec{
			PoolRef: &labforgev1alpha1.LocalObjectReference{Name: pool},
			SSH:     labforgev1alpha1.SSHAccess{AuthorizedKeys: []string{aliceKey}},
		},
	}
}

func poolStatus(ctx context.Context, c client.Client, name string) func(Gomega) labforgev1alpha1.LabPoolStatus {
	return func(g Gomega) labforgev1alpha1.LabPoolStatus {
		var p labforgev1alpha1.LabPool
		g.Expect(c.Get(ctx, client.ObjectKey{Name: name}, &p)).To(Succeed())
		return p.Status
	}
}

// getClaim reads a claim as the administrator.
func getClaim(ctx context.Context, ns, name string) *labforgev1alpha1.LabClaim {
	var c labforgev1alpha1.LabClaim
	Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &c)).To(Succeed())
	return &c
}
