package labclaim

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/index"
)

// findLab finds the lab bound to the claim: by the claim's UID, never by name alone.
func (r *Reconciler) findLab(ctx context.Context, s *scope) error {
	var envs labforgev1alpha1.LabEnvironmentList
	if err := r.Client.List(ctx, &envs, client.MatchingFields{index.LabByClaimUID: string(s.claim.UID)}); err != nil {
		return fmt.Errorf("listing the lab of LabClaim %s/%s: %w", s.claim.Namespace, s.claim.Name, err)
	}
	for i := range envs.Items {
		ref := envs.Items[i].Spec.ClaimRef
		if ref.Namespace == s.claim.Namespace && ref.Name == s.claim.Name {
			s.env = &envs.Items[i]
			// The cache shows the bind: the claim's next passes find it here.
			r.expected().Lower(expectBind, client.ObjectKeyFromObject(s.env))
			return nil
		}
	}
	return r.findLaggingLab(ctx, s)
}

// findLaggingLab asks the API server for a lab the cache does not show bound to the claim
// yet, but which may be: the lab this process bound the claim to (expectBind, until the
// cache shows the bind), or the lab the claim's status names. The LabEnvironment
// cache can lag behind the claim cache and behind this process's own writes (a watch
// re-established after an API server restart replays them late); trusting it would bind
// the claim to a second lab, or declare its lab lost.
func (r *Reconciler) findLaggingLab(ctx context.Context, s *scope) error {
	name := s.claim.Status.Lab
	if key, ok := r.expected().ExpectedBy(expectBind, string(s.claim.UID)); ok {
		name = key.Name
	} else if name == "" || meta.IsStatusConditionTrue(s.claim.Status.Conditions, labforgev1alpha1.ConditionExpired) ||
		meta.IsStatusConditionTrue(s.claim.Status.Conditions, labforgev1alpha1.ConditionStalled) {
		// Never bound, or done with its lab: nothing to look for.
		return nil
	}
	env := &labforgev1alpha1.LabEnvironment{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: name}, env); err != nil {
		if apierrors.IsNotFound(err) {
			r.expected().Lower(expectBind, client.ObjectKey{Name: name})
			return nil
		}
		return fmt.Errorf("reading LabEnvironment %s of LabClaim %s/%s: %w", name, s.claim.Namespace, s.claim.Name, err)
	}
	if ref := env.Spec.ClaimRef; ref != nil && ref.UID == s.claim.UID {
		s.env = env
		return nil
	}
	r.expected().Lower(expectBind, client.ObjectKey{Name: name})
	return nil
}

// bind gives the claim a lab: for a pool, the oldest Ready unbound lab, first come first
// served (its place in the pool's line says which it may take); for a template, a lab
// booted just for it.
func (r *Reconciler) bind(ctx context.Context, s *scope) error {
	if s.claim.Spec.TemplateRef != nil {
		return r.bindCold(ctx, s)
	}
	pool := s.claim.Spec.PoolRef.Name
	// tryBind copies the lab it writes.
	pl, err := r.lines().poolLine(ctx, pool)
	if err != nil {
		return err
	}
	position := pl.position(s.claim, nil)
	for _, candidate := range pl.labsFor(position) {
		bound, err := r.tryBind(ctx, s, candidate)
		if err != nil {
			return err
		}
		if bound {
			return nil
		}
	}
	s.pendingReason = labforgev1alpha1.ReasonWaitingForLab
	var at string
	s.queuePosition, at = place(s.claim.Status.QueuePosition, position)
	s.pendingMessage = fmt.Sprintf("Waiting for a lab of LabPool %s: %s", pool, at)
	return nil
}

// tryBind writes the claim into the lab under optimistic concurrency: if anyone changed the
// lab since it was read, the write fails and the lab is re-read from the API server (not
// the cache) before one more try. Two claims can never hold one lab.
//
// A pass walks a list of free labs read from the cache at its start; in a burst the
// process's other workers bind those labs meanwhile. Before writing, it reserves the lab
// (expectBind), passing over one another of its workers is binding or has bound, and
// re-reads the candidate from the cache: a write from a stale copy can only fail, and
// each failure costs a conflict and a read from the API server (a claim of a burst of 50
// walked past seven labs so, half a second). The bind's write takes the reservation's
// place until the cache shows it.
func (r *Reconciler) tryBind(ctx context.Context, s *scope, candidate *labforgev1alpha1.LabEnvironment) (bound bool, err error) {
	key := client.ObjectKeyFromObject(candidate)
	if !r.expected().Reserve(expectBind, key, string(s.claim.UID)) {
		return false, nil
	}
	defer func() {
		if !bound {
			r.expected().Lower(expectBind, key)
		}
	}()
	cached := &labforgev1alpha1.LabEnvironment{}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(candidate), cached, client.UnsafeDisableDeepCopy); err != nil {
		return false, client.IgnoreNotFound(err)
	}
	env := cached.DeepCopy()
	var terms *labforgev1alpha1.ClaimTerms
	for attempt := 0; attempt < 2; attempt++ {
		if env.Spec.ClaimRef != nil || !env.DeletionTimestamp.IsZero() || !meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionReady) {
			return false, nil
		}
		if terms == nil {
			var err error
			if terms, err = r.termsFor(ctx, env, s.template, s.now); err != nil {
				return false, err
			}
		}
		env.Spec.ClaimRef = &labforgev1alpha1.ClaimReference{Namespace: s.claim.Namespace, Name: s.claim.Name, UID: s.claim.UID}
		// The claim's lifetime and login are frozen in the same write (decision 57).
		env.Spec.Terms = terms.DeepCopy()
		// The lab leaves its pool in the same write: deleting the pool must not take a
		// student's lab with it.
		env.OwnerReferences = withoutPool(env.OwnerReferences)
		err := r.Client.Update(ctx, env)
		if err == nil {
			r.expected().ExpectBy(expectBind, env, string(s.claim.UID))
			s.env, s.boundNow = env, true
			s.launch = launchType(s.claim, env)
			s.bound(env)
			bindsTotal.WithLabelValues(s.claim.Spec.PoolRef.Name, "bound").Inc()
			return true, nil
		}
		if !apierrors.IsConflict(err) {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, fmt.Errorf("binding LabEnvironment %s: %w", env.Name, err)
		}
		bindsTotal.WithLabelValues(s.claim.Spec.PoolRef.Name, "conflict").Inc()
		env = &labforgev1alpha1.LabEnvironment{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(candidate), env); err != nil {
			return false, client.IgnoreNotFound(err)
		}
	}
	return false, nil
}

// launchType says how env served claim. A lab booted for a template claim is Cold. A
// pool's lab is Warm when it was Ready before the claim came: the claim never had to wait
// in line, or the lab was Ready before the claim was created. Its age says nothing: a lab
// the pool started for the class before a student came may still have kept that student
// waiting for its boot (the class-start benchmark found such claims called Warm). Times
// have second precision, so a lab Ready in the second the claim came counts as Cold.
func launchType(claim *labforgev1alpha1.LabClaim, env *labforgev1alpha1.LabEnvironment) labforgev1alpha1.LaunchType {
	if claim.Spec.TemplateRef != nil {
		return labforgev1alpha1.LaunchCold
	}
	if claim.Status.QueuePosition == 0 {
		return labforgev1alpha1.LaunchWarm
	}
	if ready := env.Status.ReadyTime; ready != nil && ready.Before(&claim.CreationTimestamp) {
		return labforgev1alpha1.LaunchWarm
	}
	return labforgev1alpha1.LaunchCold
}

// withoutPool returns refs without the owner reference of a LabPool.
func withoutPool(refs []metav1.OwnerReference) []metav1.OwnerReference {
	kept := make([]metav1.OwnerReference, 0, len(refs))
	for _, r := range refs {
		if r.Kind != "LabPool" || r.APIVersion != labforgev1alpha1.GroupVersion.String() {
			kept = append(kept, r)
		}
	}
	return kept
}

// bindCold creates a lab for a claim that names a template, within the template's caps
// (reserveColdLab). The lab is born bound.
func (r *Reconciler) bindCold(ctx context.Context, s *scope) error {
	if ok, err := r.reserveColdLab(ctx, s); err != nil || !ok {
		return err
	}
	env := &labforgev1alpha1.LabEnvironment{
		ObjectMeta: metav1.ObjectMeta{
			Name: coldLabName(s.claim),
			Labels: map[string]string{
				labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue,
				labforgev1alpha1.LabelTemplate:  s.claim.Spec.TemplateRef.Name,
			},
			Finalizers: []string{labforgev1alpha1.LabEnvironmentFinalizer},
		},
		Spec: labforgev1alpha1.LabEnvironmentSpec{
			TemplateRef: *s.claim.Spec.TemplateRef,
			ClaimRef:    &labforgev1alpha1.ClaimReference{Namespace: s.claim.Namespace, Name: s.claim.Name, UID: s.claim.UID},
			// The lab has no snapshot yet: it is built from this template, as it is now.
			Terms: chooseTerms(s.template, nil, s.now),
		},
	}
	if err := r.Client.Create(ctx, env); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// Created by an earlier pass the cache has not shown yet: expect it, so the
			// next pass asks the API server for it (findLaggingLab).
			r.expected().ExpectBy(expectBind, env, string(s.claim.UID))
			return nil
		}
		r.lines().coldLabFailed(env.Spec.TemplateRef.Name, env.Name)
		return fmt.Errorf("creating a lab for LabClaim %s/%s: %w", s.claim.Namespace, s.claim.Name, err)
	}
	r.expected().ExpectBy(expectBind, env, string(s.claim.UID))
	s.env, s.boundNow, s.launch = env, true, labforgev1alpha1.LaunchCold
	s.bound(env)
	return nil
}

// bound holds the claim this pass bound to env to the terms the bind recorded.
func (s *scope) bound(env *labforgev1alpha1.LabEnvironment) {
	s.terms = env.Spec.Terms
	s.applyTerms(env.Spec.TemplateRef.Name)
}

// expiresAt is when the claim's lab ends: its duration after the bind.
func (s *scope) expiresAt() time.Time {
	bound := s.now
	switch {
	case s.terms != nil:
		bound = s.terms.BoundTime.Time
	case s.claim.Status.BoundTime != nil:
		bound = s.claim.Status.BoundTime.Time
	}
	return bound.Add(s.duration)
}
