package labclaim

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/render"
)

func lifetime(dflt, maximum time.Duration) labforgev1alpha1.Lifetime {
	return labforgev1alpha1.Lifetime{Default: metav1.Duration{Duration: dflt}, Maximum: metav1.Duration{Duration: maximum}}
}

func TestChooseTerms(t *testing.T) {
	bound := time.Date(2026, 12, 6, 9, 30, 15, 999, time.UTC)
	tmpl := &labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Name: "t"},
		Spec: labforgev1alpha1.LabTemplateSpec{SSHUser: "trainee", Lifetime: lifetime(time.Hour, 2*time.Hour)}}
	snapshot := &labforgev1alpha1.LabTemplateSpec{SSHUser: "student", Lifetime: lifetime(24*time.Hour, 48*time.Hour)}
	tests := map[string]struct {
		tmpl     *labforgev1alpha1.LabTemplate
		snapshot *labforgev1alpha1.LabTemplateSpec
		want     labforgev1alpha1.ClaimTerms
	}{
		"a cold lab, not built yet: all from the template": {
			tmpl: tmpl, want: labforgev1alpha1.ClaimTerms{Lifetime: lifetime(time.Hour, 2*time.Hour), SSHUser: "trainee"}},
		"a warm lab built before the template's edit: the lifetime of now, the login its VMs have": {
			tmpl: tmpl, snapshot: snapshot, want: labforgev1alpha1.ClaimTerms{Lifetime: lifetime(time.Hour, 2*time.Hour), SSHUser: "student"}},
		"the template deleted: all from the lab's snapshot": {
			snapshot: snapshot, want: labforgev1alpha1.ClaimTerms{Lifetime: lifetime(24*time.Hour, 48*time.Hour), SSHUser: "student"}},
		"neither: the API's defaults": {
			want: labforgev1alpha1.ClaimTerms{Lifetime: lifetime(2*time.Hour, 8*time.Hour), SSHUser: "ubuntu"}},
		"a snapshot from before lifetimes were defaulted": {
			snapshot: &labforgev1alpha1.LabTemplateSpec{SSHUser: "student"},
			want:     labforgev1alpha1.ClaimTerms{Lifetime: lifetime(2*time.Hour, 8*time.Hour), SSHUser: "student"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			tc.want.BoundTime = metav1.NewTime(time.Date(2026, 12, 6, 9, 30, 15, 0, time.UTC))
			if diff := cmp.Diff(&tc.want, chooseTerms(tc.tmpl, tc.snapshot, bound)); diff != "" {
				t.Errorf("terms (-want +got):\n%s", diff)
			}
		})
	}
}

// A bound claim's duration comes from its terms alone: the default when it asks for
// none, its own within the maximum, and past the maximum what its status shows (or the
// maximum when its status lost it).
func TestApplyTerms(t *testing.T) {
	bound := time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)
	terms := &labforgev1alpha1.ClaimTerms{BoundTime: metav1.NewTime(bound), SSHUser: "ubuntu", Lifetime: lifetime(24*time.Hour, 48*time.Hour)}
	tests := map[string]struct {
		duration    *time.Duration
		expiresAt   *time.Time
		want        time.Duration
		wantRefusal string
	}{
		"no duration asked: the default of the bind": {want: 24 * time.Hour},
		"an extension within the maximum":            {duration: ptr.To(40 * time.Hour), want: 40 * time.Hour},
		"an extension past the maximum keeps the expiry": {duration: ptr.To(72 * time.Hour), expiresAt: ptr.To(bound.Add(30 * time.Hour)), want: 30 * time.Hour,
			wantRefusal: "spec.duration 72h0m0s is longer than LabTemplate t allowed when the claim was bound (lifetime.maximum 48h0m0s); the claim keeps its duration of 30h0m0s and expires at 2026-12-07T15:00:00Z"},
		"past the maximum with its status lost: the maximum, never less": {duration: ptr.To(72 * time.Hour), want: 48 * time.Hour,
			wantRefusal: "spec.duration 72h0m0s is longer than LabTemplate t allowed when the claim was bound (lifetime.maximum 48h0m0s); the claim keeps its duration of 48h0m0s and expires at 2026-12-08T09:00:00Z"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := &scope{claim: &labforgev1alpha1.LabClaim{}, terms: terms}
			if tc.duration != nil {
				s.claim.Spec.Duration = &metav1.Duration{Duration: *tc.duration}
			}
			if tc.expiresAt != nil {
				s.claim.Status.ExpiresAt = &metav1.Time{Time: *tc.expiresAt}
			}
			s.applyTerms("t")
			if s.duration != tc.want || s.extensionRefused != tc.wantRefusal {
				t.Errorf("duration %s, refusal %q; want %s, %q", s.duration, s.extensionRefused, tc.want, tc.wantRefusal)
			}
		})
	}
}

// A lab bound by a labforge version that recorded no terms gets them once, on its claim's
// first pass: the claim's bound time, the template's lifetime as it is now, and the login
// of the lab's snapshot. The fake client stands in for the API server only to read what
// was written.
func TestRecordTermsOfALabBoundBefore(t *testing.T) {
	ctx := context.Background()
	boundAt := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	env := &labforgev1alpha1.LabEnvironment{
		ObjectMeta: metav1.ObjectMeta{Name: "pool-0", UID: "env-uid", ResourceVersion: "7"},
		Spec: labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "t"},
			ClaimRef: &labforgev1alpha1.ClaimReference{Namespace: "students", Name: "bob", UID: "bob-uid"}},
	}
	tmpl := &labforgev1alpha1.LabTemplate{ObjectMeta: metav1.ObjectMeta{Name: "t"},
		Spec: labforgev1alpha1.LabTemplateSpec{SSHUser: "trainee", Lifetime: lifetime(3*time.Hour, 6*time.Hour)}}
	snapshot, err := render.TemplateSnapshotConfigMap(render.Lab{Env: env, Template: labforgev1alpha1.LabTemplateSpec{SSHUser: "student"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if snapshot.Namespace != lab.Namespace(env.Name) {
		t.Fatalf("snapshot in %s", snapshot.Namespace)
	}
	c := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(env.DeepCopy(), tmpl, snapshot).Build()
	r := &Reconciler{Client: c, APIReader: c}
	claim := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "students", Name: "bob", UID: "bob-uid"},
		Status: labforgev1alpha1.LabClaimStatus{Lab: "pool-0", BoundTime: &metav1.Time{Time: boundAt}}}
	s := &scope{claim: claim, env: env.DeepCopy(), now: boundAt.Add(5 * time.Hour)}
	if _, err := r.reconcileRequest(ctx, s); err != nil {
		t.Fatal(err)
	}
	want := &labforgev1alpha1.ClaimTerms{BoundTime: metav1.NewTime(boundAt), Lifetime: lifetime(3*time.Hour, 6*time.Hour), SSHUser: "student"}
	if diff := cmp.Diff(want, s.terms); diff != "" {
		t.Errorf("terms (-want +got):\n%s", diff)
	}
	if s.duration != 3*time.Hour || !s.expiresAt().Equal(boundAt.Add(3*time.Hour)) {
		t.Errorf("duration %s expiring %v, want 3h from the claim's bound time", s.duration, s.expiresAt())
	}
	stored := &labforgev1alpha1.LabEnvironment{}
	if err := c.Get(ctx, client.ObjectKey{Name: "pool-0"}, stored); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, stored.Spec.Terms); diff != "" {
		t.Errorf("recorded terms (-want +got):\n%s", diff)
	}

	// The template deleted: the recorded terms hold.
	if err := c.Delete(ctx, tmpl); err != nil {
		t.Fatal(err)
	}
	s = &scope{claim: claim, env: stored, now: boundAt.Add(5 * time.Hour)}
	if _, err := r.reconcileRequest(ctx, s); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, s.terms); diff != "" || s.duration != 3*time.Hour {
		t.Errorf("after the template's deletion: duration %s, terms (-want +got):\n%s", s.duration, diff)
	}
}
