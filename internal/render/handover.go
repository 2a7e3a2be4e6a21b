package render

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
)

// AccessService names the NodePort Service a claim gets: SSH and the lab API of the
// control plane, reachable from outside the host cluster. Warm labs have none.
const AccessService = "lab-access"

// Port names of the access Service.
const (
	PortSSH = "ssh"
	PortAPI = "api"
)

// AccessServiceFor returns the NodePort Service that exposes a bound lab to its student.
func AccessServiceFor(l Lab) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: l.objectMeta(AccessService, nil),
		Spec: corev1.ServiceSpec{
			Type:     corev1.ServiceTypeNodePort,
			Selector: controlPlaneSelector(l),
			// Local: the student's source address reaches the VM unchanged. With Cluster,
			// kube-proxy masquerades NodePort traffic to a node address, which the lab's
			// allow-student-access policy refuses (it admits sources outside the host's
			// pod, service and node ranges only), and a lab VM dialling another lab's
			// NodePort would arrive as a node and be let in.
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyLocal,
			Ports: []corev1.ServicePort{
				{Name: PortSSH, Protocol: corev1.ProtocolTCP, Port: lab.SSHPort, TargetPort: intOrString(lab.SSHPort)},
				{Name: PortAPI, Protocol: corev1.ProtocolTCP, Port: lab.APIPort, TargetPort: intOrString(lab.APIPort)},
			},
		},
	}
}

// AuthorizedKeysFor returns the access-credentials Secret holding a claim's public keys,
// one per Secret key, in a stable order.
func AuthorizedKeysFor(l Lab, keys []string) *corev1.Secret {
	sorted := append([]string(nil), keys...)
	sort.Strings(sorted)
	data := make(map[string][]byte, len(sorted))
	for i, k := range sorted {
		data[fmt.Sprintf("key-%d", i)] = []byte(k)
	}
	return AccessCredentialsSecret(l, data)
}

// Names of a claim's Secrets in its own namespace.
func KubeconfigSecretName(claim string) string { return claim + "-kubeconfig" }

// SSHKeySecretName names the Secret holding a claim's generated SSH key pair.
func SSHKeySecretName(claim string) string { return claim + "-ssh" }

// Keys and annotations of a claim's Secrets.
const (
	KubeconfigKey = "value"
	// AnnotationExpiresAt records when the kubeconfig's client certificate expires, and
	// AnnotationLab which lab it is for, so it is re-minted when either changes.
	AnnotationExpiresAt = "labforge.dev/expires-at"
	AnnotationLab       = "labforge.dev/lab"
)

// LabelClaim names the LabClaim a Secret in the claim's namespace belongs to.
const LabelClaim = labforgev1alpha1.LabelPrefix + "claim"

// claimObjectMeta is the metadata of a Secret a claim owns in its namespace.
func claimObjectMeta(claim *labforgev1alpha1.LabClaim, name string, annotations map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      name,
		Namespace: claim.Namespace,
		Labels: map[string]string{
			labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue,
			LabelClaim:                      claim.Name,
		},
		Annotations: annotations,
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: labforgev1alpha1.GroupVersion.String(), Kind: "LabClaim",
			Name: claim.Name, UID: types.UID(claim.UID), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}},
	}
}

// KubeconfigSecret returns the Secret holding a claim's kubeconfig.
func KubeconfigSecret(claim *labforgev1alpha1.LabClaim, lab string, expiresAt metav1.Time, kubeconfig []byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: claimObjectMeta(claim, KubeconfigSecretName(claim.Name), map[string]string{
			AnnotationExpiresAt: expiresAt.UTC().Format("2006-01-02T15:04:05Z"),
			AnnotationLab:       lab,
		}),
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{KubeconfigKey: clone(kubeconfig)},
	}
}

// SSHKeySecret returns the Secret holding a claim's generated SSH key pair.
func SSHKeySecret(claim *labforgev1alpha1.LabClaim, privateKey []byte, publicKey string) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: claimObjectMeta(claim, SSHKeySecretName(claim.Name), nil),
		Type:       corev1.SecretTypeSSHAuth,
		Immutable:  ptr.To(true),
		Data: map[string][]byte{
			corev1.SSHAuthPrivateKey: clone(privateKey),
			"ssh-publickey":          []byte(publicKey),
		},
	}
}
