package integration

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// StudentKey is a student's SSH public key, as a claim carries it.
const StudentKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIlYq0c6HkW6u3uC9B3iJ9Xw2lqWlq3S0sJ7B2nL3f2m alice@laptop"

// Template returns a small LabTemplate labforge can build: a v1.36.3 control plane and
// the given number of workers.
func Template(name string, workers int32) *labforgev1alpha1.LabTemplate {
	return &labforgev1alpha1.LabTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: labforgev1alpha1.LabTemplateSpec{
			KubernetesVersion: "v1.36.3",
			Image:             labforgev1alpha1.LabImage{ContainerDisk: "quay.io/containerdisks/ubuntu:22.04"},
			ControlPlane:      labforgev1alpha1.ControlPlaneSize{Cores: 2, Threads: 1, Memory: resource.MustParse("2Gi")},
			Workers: labforgev1alpha1.WorkerSpec{Count: workers,
				NodeSize: labforgev1alpha1.NodeSize{Cores: 1, Threads: 1, Memory: resource.MustParse("1Gi")}},
			Network: labforgev1alpha1.LabNetwork{PodCIDR: "10.200.0.0/16", ServiceCIDR: "10.201.0.0/16", TunnelPort: 8475},
		},
	}
}

// Pool returns a LabPool of template keeping replicas warm labs, admitting claims from
// every namespace, booting up to 10 at once, with room for maxLabs labs in all.
func Pool(name, template string, replicas, maxLabs int32) *labforgev1alpha1.LabPool {
	return &labforgev1alpha1.LabPool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: labforgev1alpha1.LabPoolSpec{
			TemplateRef: labforgev1alpha1.LocalObjectReference{Name: template}, Replicas: replicas,
			MaxBooting: 10, MaxLabs: maxLabs, ClaimNamespaceSelector: &metav1.LabelSelector{},
			UpdateStrategy: labforgev1alpha1.PoolUpdateStrategy{Type: labforgev1alpha1.RollingUpdate},
		},
	}
}

// Claim returns a LabClaim of pool with StudentKey.
func Claim(namespace, name, pool string) *labforgev1alpha1.LabClaim {
	return &labforgev1alpha1.LabClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
		Spec: labforgev1alpha1.LabClaimSpec{
			PoolRef: &labforgev1alpha1.LocalObjectReference{Name: pool},
			SSH:     labforgev1alpha1.SSHAccess{AuthorizedKeys: []string{StudentKey}},
		},
	}
}

// AdmitClaimsFrom makes t admit claims that name it (spec.templateRef) from the namespaces
// named, by the kubernetes.io/metadata.name label the API server sets on every namespace,
// and returns t. A template admits none unless told (decision 53).
func AdmitClaimsFrom(t *labforgev1alpha1.LabTemplate, namespaces ...string) *labforgev1alpha1.LabTemplate {
	t.Spec.Claims.NamespaceSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: namespaces}}}
	return t
}

// AdmitAllClaims makes t admit claims that name it from every namespace, and returns t.
func AdmitAllClaims(t *labforgev1alpha1.LabTemplate) *labforgev1alpha1.LabTemplate {
	t.Spec.Claims.NamespaceSelector = &metav1.LabelSelector{}
	return t
}
