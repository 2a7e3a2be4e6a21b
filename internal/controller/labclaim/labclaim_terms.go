package labclaim

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/render"
)

// A bound claim is held to the terms recorded on its lab at the bind (spec.terms,
// decision 57): its lifetime and the login of its nodes. After the bind the claim
// controller never reads the template again for them, so an admin editing or deleting a
// template changes only what new binds get, never a running lab.

// builtinLifetime is the API's default lifetime (LabTemplateSpec.Lifetime): what a claim
// gets when neither the template nor the lab's snapshot says more.
var builtinLifetime = labforgev1alpha1.Lifetime{
	Default: metav1.Duration{Duration: 2 * time.Hour},
	Maximum: metav1.Duration{Duration: 8 * time.Hour},
}

// builtinSSHUser is the API's default sshUser.
const builtinSSHUser = "ubuntu"

// termsFor returns the terms a claim binding env at bound is held to: the lifetime of
// env's template as it is now, and the login its VMs were made with. tmpl is the template
// the claim asked for (nil if unknown); a pool's lab built from another template (the
// pool's templateRef changed since) is held to its own. The login comes from the lab's
// template snapshot when it has one (its VMs were made from it, whatever the template
// says now), else from the template, which the lab about to be built will snapshot.
func (r *Reconciler) termsFor(ctx context.Context, env *labforgev1alpha1.LabEnvironment, tmpl *labforgev1alpha1.LabTemplate, bound time.Time) (*labforgev1alpha1.ClaimTerms, error) {
	if tmpl == nil || tmpl.Name != env.Spec.TemplateRef.Name {
		tmpl = &labforgev1alpha1.LabTemplate{}
		if err := r.Client.Get(ctx, client.ObjectKey{Name: env.Spec.TemplateRef.Name}, tmpl); err != nil {
			if !apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("reading LabTemplate %s: %w", env.Spec.TemplateRef.Name, err)
			}
			tmpl = nil
		}
	}
	snapshot, err := r.snapshotOf(ctx, env)
	if err != nil {
		return nil, err
	}
	return chooseTerms(tmpl, snapshot, bound), nil
}

// chooseTerms picks the terms from what is known: the lifetime from the live template,
// else from the lab's snapshot, else the API's defaults; the login from the snapshot,
// else the template, else the API's default. bound is truncated to the second, as the
// API server stores it, so that this pass computes what every later pass will.
func chooseTerms(tmpl *labforgev1alpha1.LabTemplate, snapshot *labforgev1alpha1.LabTemplateSpec, bound time.Time) *labforgev1alpha1.ClaimTerms {
	terms := &labforgev1alpha1.ClaimTerms{
		BoundTime: metav1.NewTime(bound.Truncate(time.Second)),
		Lifetime:  builtinLifetime,
		SSHUser:   builtinSSHUser,
	}
	switch {
	case tmpl != nil:
		terms.Lifetime = tmpl.Spec.Lifetime
	case snapshot != nil:
		terms.Lifetime = snapshot.Lifetime
	}
	switch {
	case snapshot != nil && snapshot.SSHUser != "":
		terms.SSHUser = snapshot.SSHUser
	case tmpl != nil && tmpl.Spec.SSHUser != "":
		terms.SSHUser = tmpl.Spec.SSHUser
	}
	// A snapshot from before a field had a default may lack it.
	if terms.Lifetime.Default.Duration == 0 {
		terms.Lifetime.Default = builtinLifetime.Default
	}
	if terms.Lifetime.Maximum.Duration == 0 {
		terms.Lifetime.Maximum = builtinLifetime.Maximum
	}
	return terms
}

// snapshotOf returns the template spec env was built from (its labforge-template
// ConfigMap, from the cache), or nil while it has none: a lab not built yet, or whose
// snapshot is not the lab's own.
func (r *Reconciler) snapshotOf(ctx context.Context, env *labforgev1alpha1.LabEnvironment) (*labforgev1alpha1.LabTemplateSpec, error) {
	cm := &corev1.ConfigMap{}
	key := client.ObjectKey{Namespace: lab.Namespace(env.Name), Name: render.TemplateSnapshot}
	if err := r.Client.Get(ctx, key, cm, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading the template snapshot of lab %s: %w", env.Name, err)
	}
	if env.UID == "" || !metav1.IsControlledBy(cm, env) {
		return nil, nil
	}
	spec, _, err := render.TemplateFromSnapshot(cm)
	if err != nil {
		return nil, err
	}
	return &spec, nil
}

// resolveBound settles a bound claim's duration from its lab's terms, recording them
// first on a lab bound before labforge recorded terms. The template is not read.
func (r *Reconciler) resolveBound(ctx context.Context, s *scope) error {
	terms := s.env.Spec.Terms
	if terms == nil {
		var err error
		if terms, err = r.recordTerms(ctx, s); err != nil {
			return err
		}
	}
	s.terms = terms
	s.applyTerms(s.env.Spec.TemplateRef.Name)
	return nil
}

// recordTerms gives a lab bound by a labforge version that recorded no terms the terms
// its claim has been held to so far: the claim's own bound time, and the template as it
// is now (its lab's snapshot when the template is gone). They are written once, under an
// optimistic lock; from then on the lab is frozen like any other. A lab being deleted is
// not written: its terms are only computed.
func (r *Reconciler) recordTerms(ctx context.Context, s *scope) (*labforgev1alpha1.ClaimTerms, error) {
	bound := s.now
	if s.claim.Status.BoundTime != nil {
		bound = s.claim.Status.BoundTime.Time
	}
	terms, err := r.termsFor(ctx, s.env, nil, bound)
	if err != nil || !s.env.DeletionTimestamp.IsZero() {
		return terms, err
	}
	env := s.env.DeepCopy()
	patch := client.MergeFromWithOptions(env.DeepCopy(), client.MergeFromWithOptimisticLock{})
	env.Spec.Terms = terms
	if err := r.Client.Patch(ctx, env, patch); err != nil {
		return nil, fmt.Errorf("recording the terms of LabClaim %s/%s on lab %s: %w", s.claim.Namespace, s.claim.Name, env.Name, err)
	}
	ctrl.LoggerFrom(ctx).Info("Recorded the terms of a LabClaim bound before labforge recorded them", "lab", env.Name,
		"default", terms.Lifetime.Default.Duration, "maximum", terms.Lifetime.Maximum.Duration, "sshUser", terms.SSHUser)
	s.env = env
	return env.Spec.Terms, nil
}

// settleDuration settles the duration of a claim that is not bound from its template:
// spec.duration, or the template's default. More than the template's maximum refuses the
// claim; on a claim bound before (whose status kept its bound time and expiry, its lab
// since lost) it is an extension refused, and the claim keeps what it had.
func (s *scope) settleDuration(tmpl *labforgev1alpha1.LabTemplate) {
	maximum, dflt := tmpl.Spec.Lifetime.Maximum.Duration, tmpl.Spec.Lifetime.Default.Duration
	s.duration = dflt
	if d := s.claim.Spec.Duration; d != nil {
		s.duration = d.Duration
	}
	if s.duration <= maximum {
		return
	}
	if s.claim.Status.BoundTime != nil && s.claim.Status.ExpiresAt != nil {
		// An extension past the maximum is refused: the claim keeps its lab and expiry,
		// and says so (ExtensionRefused and a Warning event), so that a student who asked
		// for more time is not left guessing.
		kept := s.claim.Status.ExpiresAt.Sub(s.claim.Status.BoundTime.Time)
		s.extensionRefused = fmt.Sprintf("spec.duration %s is longer than LabTemplate %s allows (lifetime.maximum %s); the claim keeps its duration of %s and expires at %s",
			s.duration, tmpl.Name, maximum, kept, s.claim.Status.ExpiresAt.UTC().Format(time.RFC3339))
		s.duration = kept
		return
	}
	s.refusedReason = labforgev1alpha1.ReasonDurationTooLong
	s.refusedMessage = fmt.Sprintf("spec.duration %s is longer than LabTemplate %s allows (lifetime.maximum %s)", s.duration, tmpl.Name, maximum)
}

// applyTerms settles the duration of a bound claim from its terms: spec.duration, or the
// default it was bound with; more than the maximum it was bound with is an extension
// refused, and the claim keeps the duration its status shows (decision 11). A claim whose
// status lost its expiry keeps the maximum: the most it may hold, never less than it had,
// so that a lost status never deletes a student's lab.
func (s *scope) applyTerms(templateName string) {
	t := s.terms
	maximum := t.Lifetime.Maximum.Duration
	s.duration = t.Lifetime.Default.Duration
	if d := s.claim.Spec.Duration; d != nil {
		s.duration = d.Duration
	}
	s.extensionRefused = ""
	if s.duration <= maximum {
		return
	}
	kept := maximum
	if s.claim.Status.ExpiresAt != nil {
		kept = s.claim.Status.ExpiresAt.Sub(t.BoundTime.Time)
	}
	s.extensionRefused = fmt.Sprintf("spec.duration %s is longer than LabTemplate %s allowed when the claim was bound (lifetime.maximum %s); the claim keeps its duration of %s and expires at %s",
		s.duration, templateName, maximum, kept, t.BoundTime.Add(kept).UTC().Format(time.RFC3339))
	s.duration = kept
}
