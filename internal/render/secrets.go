package render

import (
	"encoding/json"
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
)

// PKI is the lab's key material, as stored in its PKI Secret.
type PKI struct {
	CACert, CAKey             []byte
	BootstrapToken            string
	OperatorCert, OperatorKey []byte
}

// PKISecret returns the Secret holding the lab's key material. It is immutable: the lab's
// CA can never be replaced under running nodes.
func PKISecret(l Lab, pki PKI) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: l.objectMeta(lab.PKISecret, nil),
		Type:       corev1.SecretTypeOpaque,
		Immutable:  ptr.To(true),
		Data: map[string][]byte{
			lab.PKICACert:         clone(pki.CACert),
			lab.PKICAKey:          clone(pki.CAKey),
			lab.PKIBootstrapToken: []byte(pki.BootstrapToken),
			lab.PKIOperatorCert:   clone(pki.OperatorCert),
			lab.PKIOperatorKey:    clone(pki.OperatorKey),
		},
	}
}

// PKIFromSecret reads the lab's key material back, failing when any part is missing.
func PKIFromSecret(s *corev1.Secret) (PKI, error) {
	for _, k := range []string{lab.PKICACert, lab.PKICAKey, lab.PKIBootstrapToken, lab.PKIOperatorCert, lab.PKIOperatorKey} {
		if len(s.Data[k]) == 0 {
			return PKI{}, fmt.Errorf("secret %s/%s has no %q", s.Namespace, s.Name, k)
		}
	}
	return PKI{
		CACert: s.Data[lab.PKICACert], CAKey: s.Data[lab.PKICAKey],
		BootstrapToken: string(s.Data[lab.PKIBootstrapToken]),
		OperatorCert:   s.Data[lab.PKIOperatorCert], OperatorKey: s.Data[lab.PKIOperatorKey],
	}, nil
}

// UserDataSecret returns the cloud-init Secret of the VM named vm. It is immutable: a VM
// reads its user-data once, at first boot, so nothing may change under it.
func UserDataSecret(l Lab, vm string, userData []byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: l.objectMeta(lab.UserDataSecret(vm), map[string]string{lab.LabelUserData: vm}),
		Type:       corev1.SecretTypeOpaque,
		Immutable:  ptr.To(true),
		Data:       map[string][]byte{lab.UserDataKey: clone(userData)},
	}
}

// AccessCredentialsSecret returns the Secret whose keys KubeVirt's guest agent writes into
// every VM's authorized_keys. A warm lab has none; the claim's keys arrive at handover.
func AccessCredentialsSecret(l Lab, keys map[string][]byte) *corev1.Secret {
	data := make(map[string][]byte, len(keys))
	for k, v := range keys {
		data[k] = clone(v)
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: l.objectMeta(lab.AccessCredentialsSecret, nil),
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
}

// TemplateSnapshot names the ConfigMap holding the template a lab was built from.
const (
	TemplateSnapshot             = "labforge-template"
	TemplateSnapshotKey          = "spec.json"
	AnnotationTemplateGeneration = "labforge.dev/template-generation"
)

// TemplateSnapshotConfigMap records the template spec a lab is built from, so that every
// later pass renders the lab from it: editing the template never touches a running lab.
func TemplateSnapshotConfigMap(l Lab, generation int64) (*corev1.ConfigMap, error) {
	spec, err := json.Marshal(l.Template)
	if err != nil {
		return nil, fmt.Errorf("encoding the template snapshot: %w", err)
	}
	meta := l.objectMeta(TemplateSnapshot, nil)
	meta.Annotations = map[string]string{AnnotationTemplateGeneration: strconv.FormatInt(generation, 10)}
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta,
		Immutable:  ptr.To(true),
		Data:       map[string]string{TemplateSnapshotKey: string(spec)},
	}, nil
}

// TemplateFromSnapshot reads a template snapshot back, with the generation it recorded.
func TemplateFromSnapshot(cm *corev1.ConfigMap) (labforgev1alpha1.LabTemplateSpec, int64, error) {
	var spec labforgev1alpha1.LabTemplateSpec
	if err := json.Unmarshal([]byte(cm.Data[TemplateSnapshotKey]), &spec); err != nil {
		return spec, 0, fmt.Errorf("decoding template snapshot %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	gen, _ := strconv.ParseInt(cm.Annotations[AnnotationTemplateGeneration], 10, 64)
	return spec, gen, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
