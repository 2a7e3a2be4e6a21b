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

// LegacyAccessService names the NodePort Service earlier labforge versions gave a claim
// next to the lab's API Service. Labs handed over before the upgrade keep theirs; no new
// lab gets one.
const LegacyAccessService = "lab-access"

// Port names of the lab's API Service.
const (
	PortSSH = "ssh"
	PortAPI = "api"
)

// ExposedAPIService is the lab's API Service (APIService) once a student holds the lab:
// the same Service, its cluster IP kept, made a NodePort Service with the control plane's
// SSH port added, reachable from outside the host cluster. Turning the Service a warm lab
// already has into a NodePort one allocates two NodePorts and nothing else, which keeps a
// cluster IP's allocation off the claim's path.
func ExposedAPIService(l Lab) *corev1.Service {
	svc := APIService(l)
	svc.Spec.Type = corev1.ServiceTypeNodePort
	// Local: the student's source address reaches the VM unchanged. With Cluster,
	// kube-proxy masquerades NodePort traffic to a node address, which the lab's
	// control-plane-access policy refuses (its student rule admits sources outside the
	// host's pod, service and node ranges only), and a lab VM dialling another lab's NodePort would
	// arrive as a node and be let in. In-cluster traffic (the probe, joining workers)
	// goes through the cluster IP, which the policy does not change.
	//
	// With Local only the node running the control-plane VMI answers on these ports:
	// that is the address a claim names (hostcluster.Network.StudentAddress), or, with
	// --host-public-address, an entry point that must forward to that node (docs/labs.md).
	svc.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
	svc.Spec.Ports = append(svc.Spec.Ports,
		corev1.ServicePort{Name: PortSSH, Protocol: corev1.ProtocolTCP, Port: lab.SSHPort, TargetPort: intOrString(lab.SSHPort)})
	return svc
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
	// AnnotationExpiresAt records when the kubeconfig's client certificate expires,
	// AnnotationLab which lab it is for and AnnotationLabNamespaceUID which build of it
	// (a lab whose namespace was deleted while it booted is built again, with a new CA
	// and new NodePorts), so it is re-minted when any of them changes.
	AnnotationExpiresAt       = "labforge.dev/expires-at"
	AnnotationLab             = "labforge.dev/lab"
	AnnotationLabNamespaceUID = "labforge.dev/lab-namespace-uid"
	// AnnotationServer records the lab API URL the kubeconfig names, so it is minted
	// again when the lab is reached at another address (its control plane moved to
	// another node, or the node's address changed).
	AnnotationServer = "labforge.dev/server"
)

// LabelClaim names the LabClaim a Secret in the claim's namespace belongs to.
const LabelClaim = labforgev1alpha1.LabelPrefix + "claim"

// LabelClaimNamespace names the namespace of the LabClaim a Secret belongs to. The
// operator-bounds admission policy (config/policy/operator-bounds.yaml) refuses the
// operator a claim's Secret whose label differs from the namespace it is written to: a
// claim's credentials never land in another namespace (decision 62).
const LabelClaimNamespace = labforgev1alpha1.LabelPrefix + "claim-namespace"

// claimObjectMeta is the metadata of a Secret a claim owns in its namespace.
func claimObjectMeta(claim *labforgev1alpha1.LabClaim, name string, annotations map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      name,
		Namespace: claim.Namespace,
		Labels: map[string]string{
			labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue,
			LabelClaim:                      claim.Name,
			LabelClaimNamespace:             claim.Namespace,
		},
		Annotations: annotations,
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: labforgev1alpha1.GroupVersion.String(), Kind: "LabClaim",
			Name: claim.Name, UID: types.UID(claim.UID), Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
		}},
	}
}

// KubeconfigSecret returns the Secret holding a claim's kubeconfig.
// labNamespaceUID is the UID of the lab's namespace the kubeconfig was minted in, if known;
// server the lab API URL it names.
func KubeconfigSecret(claim *labforgev1alpha1.LabClaim, lab, labNamespaceUID, server string, expiresAt metav1.Time, kubeconfig []byte) *corev1.Secret {
	annotations := map[string]string{
		AnnotationExpiresAt: expiresAt.UTC().Format("2006-01-02T15:04:05Z"),
		AnnotationLab:       lab,
		AnnotationServer:    server,
	}
	if labNamespaceUID != "" {
		annotations[AnnotationLabNamespaceUID] = labNamespaceUID
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: claimObjectMeta(claim, KubeconfigSecretName(claim.Name), annotations),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{KubeconfigKey: clone(kubeconfig)},
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
