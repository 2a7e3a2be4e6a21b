package orphans

import (
	"bytes"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/ownership"
)

var (
	managed  = map[string]string{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue}
	deleting = ptr.To(metav1.Now())
	owned    = []metav1.OwnerReference{{APIVersion: "labforge.dev/v1alpha1", Kind: "LabEnvironment", Name: "e", UID: "u1", Controller: ptr.To(true)}}
)

func with(labels map[string]string, extra ...string) map[string]string {
	out := map[string]string{}
	for k, v := range labels {
		out[k] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		out[extra[i]] = extra[i+1]
	}
	return out
}

type verdict struct {
	Owner Owner
	OK    bool
}

func TestNamespaceOwner(t *testing.T) {
	prover, err := ownership.NewProver(bytes.Repeat([]byte{7}, ownership.KeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	other, err := ownership.NewProver(bytes.Repeat([]byte{8}, ownership.KeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	proof := map[string]string{ownership.AnnotationProof: prover.Proof(ownership.LabNamespace("lab-e", "e", "u1", "p"))}
	pooled := with(managed, labforgev1alpha1.LabelEnvironment, "e", labforgev1alpha1.LabelPool, "p")
	tests := map[string]struct {
		ns   metav1.ObjectMeta
		want verdict
	}{
		"lab namespace with no owner, proven": {
			ns:   metav1.ObjectMeta{Name: "lab-e", Labels: pooled, Annotations: proof},
			want: verdict{Owner{Kind: KindLabEnvironment, Name: "e", UID: "u1"}, true},
		},
		"labelled, with no proof: not labforge's to delete": {
			ns: metav1.ObjectMeta{Name: "lab-e", Labels: pooled},
		},
		"a proof made with another key": {
			ns: metav1.ObjectMeta{Name: "lab-e", Labels: pooled, Annotations: map[string]string{
				ownership.AnnotationProof: other.Proof(ownership.LabNamespace("lab-e", "e", "u1", "p"))}},
		},
		"a proof for another pool": {
			ns: metav1.ObjectMeta{Name: "lab-e", Labels: with(pooled, labforgev1alpha1.LabelPool, "q"), Annotations: proof},
		},
		"a proof copied from another lab's namespace": {
			ns: metav1.ObjectMeta{Name: "lab-f", Labels: with(pooled, labforgev1alpha1.LabelEnvironment, "f"), Annotations: proof},
		},
		"a forged proof": {
			ns: metav1.ObjectMeta{Name: "lab-e", Labels: pooled, Annotations: map[string]string{ownership.AnnotationProof: "v1.u1.AAAA"}},
		},
		"owned: the garbage collector's": {
			ns: metav1.ObjectMeta{Name: "lab-e", Labels: with(managed, labforgev1alpha1.LabelEnvironment, "e"), OwnerReferences: owned},
		},
		"not labelled as labforge's": {
			ns: metav1.ObjectMeta{Name: "lab-e", Labels: map[string]string{labforgev1alpha1.LabelEnvironment: "e"}},
		},
		"labelled for another lab than its name says": {
			ns: metav1.ObjectMeta{Name: "team-a", Labels: with(managed, labforgev1alpha1.LabelEnvironment, "e")},
		},
		"no environment label": {ns: metav1.ObjectMeta{Name: "lab-e", Labels: managed}},
		"already being deleted": {
			ns: metav1.ObjectMeta{Name: "lab-e", Labels: with(managed, labforgev1alpha1.LabelEnvironment, "e"), DeletionTimestamp: deleting},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			owner, ok := NamespaceOwner(&corev1.Namespace{ObjectMeta: tc.ns}, prover)
			if diff := cmp.Diff(tc.want, verdict{owner, ok}); diff != "" {
				t.Errorf("NamespaceOwner (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnvironmentOwner(t *testing.T) {
	claim := &labforgev1alpha1.ClaimReference{Namespace: "students", Name: "alice", UID: "c1"}
	pool := &labforgev1alpha1.LocalObjectReference{Name: "p"}
	poolOwned := []metav1.OwnerReference{{APIVersion: "labforge.dev/v1alpha1", Kind: "LabPool", Name: "p", UID: "p1", Controller: ptr.To(true)}}
	tests := map[string]struct {
		meta metav1.ObjectMeta
		spec labforgev1alpha1.LabEnvironmentSpec
		want verdict
	}{
		"bound: its claim, by UID": {
			meta: metav1.ObjectMeta{Name: "e", Labels: managed},
			spec: labforgev1alpha1.LabEnvironmentSpec{PoolRef: pool, ClaimRef: claim},
			want: verdict{Owner{Kind: KindLabClaim, Namespace: "students", Name: "alice", UID: "c1"}, true},
		},
		"bound and, wrongly, still owned: its claim all the same": {
			meta: metav1.ObjectMeta{Name: "e", Labels: managed, OwnerReferences: poolOwned},
			spec: labforgev1alpha1.LabEnvironmentSpec{PoolRef: pool, ClaimRef: claim},
			want: verdict{Owner{Kind: KindLabClaim, Namespace: "students", Name: "alice", UID: "c1"}, true},
		},
		"unbound with no owner: its pool, by name": {
			meta: metav1.ObjectMeta{Name: "e", Labels: managed},
			spec: labforgev1alpha1.LabEnvironmentSpec{PoolRef: pool},
			want: verdict{Owner{Kind: KindLabPool, Name: "p"}, true},
		},
		"unbound and owned: the garbage collector's": {
			meta: metav1.ObjectMeta{Name: "e", Labels: managed, OwnerReferences: poolOwned},
			spec: labforgev1alpha1.LabEnvironmentSpec{PoolRef: pool},
		},
		"an admin's one-off lab": {meta: metav1.ObjectMeta{Name: "e", Labels: managed}},
		"not labelled as labforge's": {
			meta: metav1.ObjectMeta{Name: "e"},
			spec: labforgev1alpha1.LabEnvironmentSpec{ClaimRef: claim},
		},
		"already being deleted": {
			meta: metav1.ObjectMeta{Name: "e", Labels: managed, DeletionTimestamp: deleting},
			spec: labforgev1alpha1.LabEnvironmentSpec{ClaimRef: claim},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			owner, ok := EnvironmentOwner(&labforgev1alpha1.LabEnvironment{ObjectMeta: tc.meta, Spec: tc.spec})
			if diff := cmp.Diff(tc.want, verdict{owner, ok}); diff != "" {
				t.Errorf("EnvironmentOwner (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSecretOwner(t *testing.T) {
	claimed := with(managed, "labforge.dev/claim", "alice")
	tests := map[string]struct {
		meta metav1.ObjectMeta
		want verdict
	}{
		"kubeconfig with no owner": {
			meta: metav1.ObjectMeta{Namespace: "students", Name: "alice-kubeconfig", Labels: claimed},
			want: verdict{Owner{Kind: KindLabClaim, Namespace: "students", Name: "alice"}, true},
		},
		"key pair with no owner": {
			meta: metav1.ObjectMeta{Namespace: "students", Name: "alice-ssh", Labels: claimed},
			want: verdict{Owner{Kind: KindLabClaim, Namespace: "students", Name: "alice"}, true},
		},
		"owned: the garbage collector's": {
			meta: metav1.ObjectMeta{Namespace: "students", Name: "alice-ssh", Labels: claimed, OwnerReferences: owned},
		},
		"a name no claim Secret has": {
			meta: metav1.ObjectMeta{Namespace: "students", Name: "alice-notes", Labels: claimed},
		},
		"another claim's name": {
			meta: metav1.ObjectMeta{Namespace: "students", Name: "bob-kubeconfig", Labels: claimed},
		},
		"not labelled as labforge's": {
			meta: metav1.ObjectMeta{Namespace: "students", Name: "alice-kubeconfig", Labels: map[string]string{"labforge.dev/claim": "alice"}},
		},
		"already being deleted": {
			meta: metav1.ObjectMeta{Namespace: "students", Name: "alice-kubeconfig", Labels: claimed, DeletionTimestamp: deleting},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			owner, ok := SecretOwner(&corev1.Secret{ObjectMeta: tc.meta})
			if diff := cmp.Diff(tc.want, verdict{owner, ok}); diff != "" {
				t.Errorf("SecretOwner (-want +got):\n%s", diff)
			}
		})
	}
}
