package integration

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// The suites build their objects with these wrappers, in the style of Kueue's
// pkg/util/testing: start from a small object labforge accepts, say only what the story
// needs, and take the object with Obj:
//
//	integration.MakeTemplate("t").Workers(0).Obj()
//	integration.MakePool("p", "t").Replicas(2).MaxLabs(4).Obj()
//	integration.MakeClaim("team-a", "alice").Pool("p").Obj()

// StudentKey is a student's SSH public key, as a claim carries it.
const StudentKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIlYq0c6HkW6u3uC9B3iJ9Xw2lqWlq3S0sJ7B2nL3f2m alice@laptop"

// TemplateWrapper builds a LabTemplate.
type TemplateWrapper struct{ labforgev1alpha1.LabTemplate }

// MakeTemplate starts a small LabTemplate labforge can build: a v1.36.3 control plane of
// 2 cores and 2Gi and one worker of 1 core and 1Gi, on 10.200.0.0/16 and 10.201.0.0/16.
func MakeTemplate(name string) *TemplateWrapper {
	return &TemplateWrapper{labforgev1alpha1.LabTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: labforgev1alpha1.LabTemplateSpec{
			KubernetesVersion: "v1.36.3",
			Image:             labforgev1alpha1.LabImage{ContainerDisk: "quay.io/containerdisks/ubuntu:22.04"},
			ControlPlane:      labforgev1alpha1.ControlPlaneSize{Cores: 2, Threads: 1, Memory: resource.MustParse("2Gi")},
			Workers: labforgev1alpha1.WorkerSpec{Count: 1,
				NodeSize: labforgev1alpha1.NodeSize{Cores: 1, Threads: 1, Memory: resource.MustParse("1Gi")}},
			Network: labforgev1alpha1.LabNetwork{PodCIDR: "10.200.0.0/16", ServiceCIDR: "10.201.0.0/16", TunnelPort: 8475},
		},
	}}
}

// Workers sets how many workers the lab has.
func (w *TemplateWrapper) Workers(n int32) *TemplateWrapper {
	w.Spec.Workers.Count = n
	return w
}

// Version sets the lab's Kubernetes version.
func (w *TemplateWrapper) Version(v string) *TemplateWrapper {
	w.Spec.KubernetesVersion = v
	return w
}

// PodCIDR sets the lab's pod range.
func (w *TemplateWrapper) PodCIDR(cidr string) *TemplateWrapper {
	w.Spec.Network.PodCIDR = cidr
	return w
}

// BootTimeout sets how long a lab may take to boot.
func (w *TemplateWrapper) BootTimeout(d time.Duration) *TemplateWrapper {
	w.Spec.BootTimeout = metav1.Duration{Duration: d}
	return w
}

// AdmitClaimsFrom makes the template admit claims that name it (spec.templateRef) from the
// namespaces named, by the kubernetes.io/metadata.name label the API server sets on every
// namespace. A template admits none unless told (decision 53).
func (w *TemplateWrapper) AdmitClaimsFrom(namespaces ...string) *TemplateWrapper {
	w.Spec.Claims.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: namespaces}}}
	return w
}

// AdmitAllClaims makes the template admit claims that name it from every namespace.
func (w *TemplateWrapper) AdmitAllClaims() *TemplateWrapper {
	w.Spec.Claims.NamespaceSelector = &metav1.LabelSelector{}
	return w
}

// Obj returns a copy of the template built so far.
func (w *TemplateWrapper) Obj() *labforgev1alpha1.LabTemplate { return w.DeepCopy() }

// PoolWrapper builds a LabPool.
type PoolWrapper struct{ labforgev1alpha1.LabPool }

// MakePool starts a LabPool of template keeping no lab warm, admitting claims from every
// namespace, booting up to 5 labs at once, with room for 20 in all, updated by rolling.
func MakePool(name, template string) *PoolWrapper {
	return &PoolWrapper{labforgev1alpha1.LabPool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: labforgev1alpha1.LabPoolSpec{
			TemplateRef: labforgev1alpha1.LocalObjectReference{Name: template},
			MaxBooting:  5, MaxLabs: 20, ClaimNamespaceSelector: &metav1.LabelSelector{},
			UpdateStrategy: labforgev1alpha1.PoolUpdateStrategy{Type: labforgev1alpha1.RollingUpdate},
		},
	}}
}

// Replicas sets how many warm labs the pool keeps.
func (w *PoolWrapper) Replicas(n int32) *PoolWrapper {
	w.Spec.Replicas = n
	return w
}

// MaxLabs sets how many labs the pool may have in all, claimed or not.
func (w *PoolWrapper) MaxLabs(n int32) *PoolWrapper {
	w.Spec.MaxLabs = n
	return w
}

// MaxBooting sets how many labs the pool may boot at once.
func (w *PoolWrapper) MaxBooting(n int32) *PoolWrapper {
	w.Spec.MaxBooting = n
	return w
}

// Obj returns a copy of the pool built so far.
func (w *PoolWrapper) Obj() *labforgev1alpha1.LabPool { return w.DeepCopy() }

// ClaimWrapper builds a LabClaim.
type ClaimWrapper struct{ labforgev1alpha1.LabClaim }

// MakeClaim starts a LabClaim in namespace carrying StudentKey and naming neither a pool
// nor a template: say which with Pool or Template.
func MakeClaim(namespace, name string) *ClaimWrapper {
	return &ClaimWrapper{labforgev1alpha1.LabClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: labforgev1alpha1.LabClaimSpec{
			SSH: labforgev1alpha1.SSHAccess{AuthorizedKeys: []string{StudentKey}},
		},
	}}
}

// Pool makes it a claim on a warm lab of pool.
func (w *ClaimWrapper) Pool(pool string) *ClaimWrapper {
	w.Spec.PoolRef = &labforgev1alpha1.LocalObjectReference{Name: pool}
	w.Spec.TemplateRef = nil
	return w
}

// Template makes it a claim on a lab of template booted just for it.
func (w *ClaimWrapper) Template(template string) *ClaimWrapper {
	w.Spec.TemplateRef = &labforgev1alpha1.LocalObjectReference{Name: template}
	w.Spec.PoolRef = nil
	return w
}

// GenerateKeyPair asks the operator for a key pair as well.
func (w *ClaimWrapper) GenerateKeyPair() *ClaimWrapper {
	w.Spec.SSH.GenerateKeyPair = true
	return w
}

// WithoutKeys drops the student's own keys: the claim only asks for a generated pair.
func (w *ClaimWrapper) WithoutKeys() *ClaimWrapper {
	w.Spec.SSH.AuthorizedKeys = nil
	w.Spec.SSH.GenerateKeyPair = true
	return w
}

// Duration sets how long the claim asks to hold its lab.
func (w *ClaimWrapper) Duration(d time.Duration) *ClaimWrapper {
	w.Spec.Duration = &metav1.Duration{Duration: d}
	return w
}

// Obj returns a copy of the claim built so far.
func (w *ClaimWrapper) Obj() *labforgev1alpha1.LabClaim { return w.DeepCopy() }
