package labclaim

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/ownership"
	"github.com/labforge/labforge/internal/render"
)

// studentUser is the user name of a claim's kubeconfig in its lab.
func studentUser(c *labforgev1alpha1.LabClaim) string {
	return "student:" + c.Namespace + ":" + c.Name
}

// secretIdentity is what the proof on one of the claim's Secrets binds it to: its
// namespace and name, and the claim (name and UID) it was written for.
func secretIdentity(claim *labforgev1alpha1.LabClaim, name string) ownership.Identity {
	return ownership.ClaimSecret(claim.Namespace, name, claim.Name, claim.UID)
}

// withProof puts on secret, one of the claim's, the proof that labforge wrote it for the
// claim (ownership.AnnotationProof), under the operator's own key.
func (r *Reconciler) withProof(claim *labforgev1alpha1.LabClaim, secret *corev1.Secret) *corev1.Secret {
	if proof := r.Prover.Proof(secretIdentity(claim, secret.Name)); proof != "" {
		if secret.Annotations == nil {
			secret.Annotations = map[string]string{}
		}
		secret.Annotations[ownership.AnnotationProof] = proof
	}
	return secret
}

// adoptSecret adopts one of the claim's Secrets that lost its owner reference (a restore
// that dropped them), and reports whether it did. The Secret lives in the student's own
// namespace, where the student may write anything under any name and label, so labels are
// not enough, and neither is its content: the student holds the lab's CA key (root on its
// control plane) and the generated key pair. What proves labforge wrote it for this claim
// is the proof annotation, an HMAC under a key only the operator holds. A Secret without
// a valid proof (one written before proofs existed, or under a key since lost) keeps its
// owner, and the claim says SecretConflict.
func (r *Reconciler) adoptSecret(ctx context.Context, s *scope, secret *corev1.Secret) (bool, error) {
	if !ownership.Orphan(secret) || !ownership.Managed(secret) || secret.Labels[render.LabelClaim] != s.claim.Name {
		return false, nil
	}
	if !r.Prover.Proves(secret, secretIdentity(s.claim, secret.Name)) {
		return false, nil
	}
	if err := ownership.Adopt(ctx, r.Client, r.APIReader, secret, ownership.ControllerReference("LabClaim", s.claim)); err != nil {
		return false, err
	}
	ctrl.LoggerFrom(ctx).Info("Adopted an orphaned Secret of LabClaim", "secret", secret.Name)
	return true, nil
}
