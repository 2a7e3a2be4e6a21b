package labclaim

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/expectations"
	"github.com/labforge/labforge/internal/index"
)

// TestDeleteOrphanedLabs covers the decisions the integration story cannot provoke at
// will: a cache that has not seen a claim another operator just bound must never cost
// that claim its lab. The fake clients stand in for the cache and the API server only to
// disagree on purpose.
func TestDeleteOrphanedLabs(t *testing.T) {
	key := client.ObjectKey{Namespace: "students", Name: "alice"}
	bound := func(name string, uid types.UID) *labforgev1alpha1.LabEnvironment {
		return &labforgev1alpha1.LabEnvironment{
			ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID(name + "-uid"),
				Labels: map[string]string{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue}},
			Spec: labforgev1alpha1.LabEnvironmentSpec{
				TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "t"},
				ClaimRef:    &labforgev1alpha1.ClaimReference{Namespace: key.Namespace, Name: key.Name, UID: uid},
			},
		}
	}
	handMade := func(name string, uid types.UID) *labforgev1alpha1.LabEnvironment {
		env := bound(name, uid)
		env.Labels = nil
		return env
	}
	claim := func(uid types.UID) *labforgev1alpha1.LabClaim {
		return &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, UID: uid}}
	}
	tests := map[string]struct {
		envs []*labforgev1alpha1.LabEnvironment
		// cached is the claim's UID as the cache has it ("" for none); live is the claim
		// the API server has, if any.
		cached    types.UID
		live      *labforgev1alpha1.LabClaim
		wantKept  []string
		wantEvent bool
	}{
		"the claim is gone everywhere: its lab goes": {
			envs: []*labforgev1alpha1.LabEnvironment{bound("lab-a", "old")}, wantEvent: true,
		},
		"a new claim of the same name: the old claim's lab goes, the new one's stays": {
			envs:   []*labforgev1alpha1.LabEnvironment{bound("lab-a", "old"), bound("lab-b", "new")},
			cached: "new", live: claim("new"), wantKept: []string{"lab-b"}, wantEvent: true,
		},
		"the cache has not seen the claim yet: the lab stays": {
			envs: []*labforgev1alpha1.LabEnvironment{bound("lab-a", "fresh")}, live: claim("fresh"), wantKept: []string{"lab-a"},
		},
		"a lab labforge did not make: the admin's to end": {
			envs: []*labforgev1alpha1.LabEnvironment{handMade("lab-a", "old")}, wantKept: []string{"lab-a"},
		},
		"the claim exists: nothing to do": {
			envs: []*labforgev1alpha1.LabEnvironment{bound("lab-a", "same")}, cached: "same", live: claim("same"), wantKept: []string{"lab-a"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			scheme := testScheme(t)
			var objs []client.Object
			for _, e := range tc.envs {
				objs = append(objs, e)
			}
			cache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(objs...).WithIndex(&labforgev1alpha1.LabEnvironment{}, index.LabByClaimName, index.LabClaimName).Build()
			apiServer := fake.NewClientBuilder().WithScheme(scheme)
			if tc.live != nil {
				apiServer = apiServer.WithObjects(tc.live)
			}
			recorder := events.NewFakeRecorder(10)
			r := &Reconciler{Client: cache, APIReader: apiServer.Build(), Recorder: recorder}
			if err := r.deleteOrphanedLabs(context.Background(), key, tc.cached); err != nil {
				t.Fatal(err)
			}
			var left labforgev1alpha1.LabEnvironmentList
			if err := cache.List(context.Background(), &left); err != nil {
				t.Fatal(err)
			}
			var kept []string
			for _, e := range left.Items {
				kept = append(kept, e.Name)
			}
			if diff := cmp.Diff(tc.wantKept, kept); diff != "" {
				t.Errorf("labs left (-want +got):\n%s", diff)
			}
			if got := len(recorder.Events) > 0; got != tc.wantEvent {
				t.Errorf("event recorded: %v, want %v", got, tc.wantEvent)
			}
		})
	}
}

// TestDeleteOrphanedLabsOnce: a gone claim is reconciled again (its Secrets' deletions)
// before the cache shows its lab deleting; the lab is deleted and reported once, and a
// lab the cache shows deleting is forgotten.
func TestDeleteOrphanedLabsOnce(t *testing.T) {
	ctx := context.Background()
	key := client.ObjectKey{Namespace: "students", Name: "alice"}
	env := &labforgev1alpha1.LabEnvironment{
		ObjectMeta: metav1.ObjectMeta{Name: "lab-a", UID: "lab-a-uid",
			Labels: map[string]string{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue}},
		Spec: labforgev1alpha1.LabEnvironmentSpec{
			TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "t"},
			ClaimRef:    &labforgev1alpha1.ClaimReference{Namespace: key.Namespace, Name: key.Name, UID: "gone"},
		},
	}
	scheme := testScheme(t)
	deletes := 0
	// The delete reaches the API server; the cache goes on showing the lab as it was.
	cache := fake.NewClientBuilder().WithScheme(scheme).WithObjects(env).
		WithIndex(&labforgev1alpha1.LabEnvironment{}, index.LabByClaimName, index.LabClaimName).
		WithInterceptorFuncs(interceptor.Funcs{Delete: func(context.Context, client.WithWatch, client.Object, ...client.DeleteOption) error {
			deletes++
			return nil
		}}).Build()
	recorder := events.NewFakeRecorder(10)
	clk := testingclock.NewFakePassiveClock(time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC))
	r := &Reconciler{Client: cache, APIReader: fake.NewClientBuilder().WithScheme(scheme).Build(), Recorder: recorder, Clock: clk}
	for range 3 {
		if err := r.deleteOrphanedLabs(ctx, key, ""); err != nil {
			t.Fatal(err)
		}
	}
	if deletes != 1 || len(recorder.Events) != 1 {
		t.Fatalf("lab deleted %d times, %d events; want 1 and 1", deletes, len(recorder.Events))
	}
	released := client.ObjectKeyFromObject(env)
	if !r.expected().Expected(expectRelease, released) {
		t.Fatal("the deleted lab is not remembered")
	}
	// A cache that never shows it deleting (the lab went before a pass looked) costs at
	// most one more delete, once the expectation lapsed.
	clk.SetTime(clk.Now().Add(expectations.DefaultTTL))
	if err := r.deleteOrphanedLabs(ctx, key, ""); err != nil {
		t.Fatal(err)
	}
	if deletes != 2 || !r.expected().Expected(expectRelease, released) {
		t.Fatalf("after the TTL: lab deleted %d times in all, remembered %t; want 2, true", deletes, r.expected().Expected(expectRelease, released))
	}

	// Once the cache shows it deleting, it is forgotten.
	deleting := env.DeepCopy()
	now := metav1.Now()
	deleting.DeletionTimestamp = &now
	deleting.Finalizers = []string{"labforge.dev/teardown"}
	cache = fake.NewClientBuilder().WithScheme(scheme).WithObjects(deleting).
		WithIndex(&labforgev1alpha1.LabEnvironment{}, index.LabByClaimName, index.LabClaimName).Build()
	r.Client = cache
	if err := r.deleteOrphanedLabs(ctx, key, ""); err != nil {
		t.Fatal(err)
	}
	if r.expected().Expected(expectRelease, released) {
		t.Fatal("a lab the cache shows deleting is still remembered")
	}
}
