package labclaim

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/render"
)

// studentUser is the user name of a claim's kubeconfig in its lab.
func studentUser(c *labforgev1alpha1.LabClaim) string {
	return "student:" + c.Namespace + ":" + c.Name
}

// adoptSecret adopts one of the claim's Secrets that lost its owner reference (a restore
// that dropped them), and reports whether it did. The Secret lives in the student's own
// namespace, where the student may write anything under any name and label, so labels are
// not enough: proven must show from the content that labforge wrote it for this claim.
// Anything else keeps its owner, and the claim says SecretConflict.
func (r *Reconciler) adoptSecret(ctx context.Context, s *scope, secret *corev1.Secret,
	proven func(context.Context, *scope, *corev1.Secret) (bool, error)) (bool, error) {
	if !ownership.Orphan(secret) || !ownership.Managed(secret) || secret.Labels[render.LabelClaim] != s.claim.Name {
		return false, nil
	}
	if ok, err := proven(ctx, s, secret); err != nil || !ok {
		return false, err
	}
	if err := ownership.Adopt(ctx, r.Client, r.APIReader, secret, ownership.ControllerReference("LabClaim", s.claim)); err != nil {
		return false, err
	}
	ctrl.LoggerFrom(ctx).Info("Adopted an orphaned Secret of LabClaim", "secret", secret.Name)
	return true, nil
}

// kubeconfigProven: the kubeconfig is for the claim's lab, and its client certificate,
// issued for the claim's user, chains to the lab's CA, whose key only the operator holds.
func (r *Reconciler) kubeconfigProven(ctx context.Context, s *scope, secret *corev1.Secret) (bool, error) {
	if secret.Annotations[render.AnnotationLab] != s.env.Name {
		return false, nil
	}
	pkiSecret := &corev1.Secret{}
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(s.env.Name), Name: lab.PKISecret}, pkiSecret); err != nil {
		return false, fmt.Errorf("reading the PKI of lab %s: %w", s.env.Name, err)
	}
	return pki.VerifyKubeconfig(secret.Data[render.KubeconfigKey], pkiSecret.Data[lab.PKICACert], studentUser(s.claim), s.now) == nil, nil
}

// keyPairProven: the Secret holds a key pair whose public half labforge already put into
// the claim's lab (the lab's access-credentials Secret, which no student can write).
func (r *Reconciler) keyPairProven(ctx context.Context, s *scope, secret *corev1.Secret) (bool, error) {
	pub := string(secret.Data["ssh-publickey"])
	if pki.SSHKeyPairMatches(secret.Data[corev1.SSHAuthPrivateKey], pub) != nil {
		return false, nil
	}
	keys := &corev1.Secret{}
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(s.env.Name), Name: lab.AccessCredentialsSecret}, keys)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading the access credentials of lab %s: %w", s.env.Name, err)
	}
	for _, k := range keys.Data {
		if string(k) == pub {
			return true, nil
		}
	}
	return false, nil
}
