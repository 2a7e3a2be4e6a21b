package hostile_test

import (
	"context"

	. "github.com/onsi/gomega"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

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
