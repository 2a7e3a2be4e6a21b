package ownership

import (
	"bytes"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestProves(t *testing.T) {
	p, err := NewProver(bytes.Repeat([]byte{1}, KeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewProver(bytes.Repeat([]byte{2}, KeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	id := LabNamespace("lab-p-0", "p-0", "uid-1", "p")
	signed := func(v string) metav1.Object {
		return &metav1.ObjectMeta{Annotations: map[string]string{AnnotationProof: v}}
	}
	tests := map[string]struct {
		prover *Prover
		obj    metav1.Object
		id     Identity
		want   bool
	}{
		"its own proof":           {prover: p, obj: signed(p.Proof(id)), id: id, want: true},
		"no annotation":           {prover: p, obj: &metav1.ObjectMeta{}, id: id},
		"made with another key":   {prover: p, obj: signed(other.Proof(id)), id: id},
		"another namespace":       {prover: p, obj: signed(p.Proof(id)), id: LabNamespace("lab-p-1", "p-0", "uid-1", "p")},
		"another lab":             {prover: p, obj: signed(p.Proof(id)), id: LabNamespace("lab-p-0", "p-1", "uid-1", "p")},
		"another lab UID":         {prover: p, obj: signed(p.Proof(id)), id: LabNamespace("lab-p-0", "p-0", "uid-2", "p")},
		"another pool":            {prover: p, obj: signed(p.Proof(id)), id: LabNamespace("lab-p-0", "p-0", "uid-1", "")},
		"fields shifted":          {prover: p, obj: signed(p.Proof(LabNamespace("lab-p-0p-0", "", "uid-1", "p"))), id: LabNamespace("lab-p-0", "p-0", "uid-1", "p")},
		"the UID stated, MAC cut": {prover: p, obj: signed("v1.uid-1." + p.Proof(id)[len("v1.uid-1."):][:10]), id: id},
		"another version":         {prover: p, obj: signed("v2" + p.Proof(id)[2:]), id: id},
		"a prover without a key":  {prover: nil, obj: signed(p.Proof(id)), id: id},
	}
	for name, tc := range tests {
		if got := tc.prover.Proves(tc.obj, tc.id); got != tc.want {
			t.Errorf("%s: Proves = %v, want %v", name, got, tc.want)
		}
	}
	if uid, ok := p.OwnerUID(signed(p.Proof(id)), LabNamespace("lab-p-0", "p-0", "", "p")); !ok || uid != "uid-1" {
		t.Errorf("OwnerUID = %q, %v; want uid-1, true", uid, ok)
	}
	if _, err := NewProver(make([]byte, KeyBytes-1)); err == nil {
		t.Error("NewProver took a short key")
	}
	if got := (*Prover)(nil).Proof(id); got != "" {
		t.Errorf("a nil Prover's proof = %q, want none", got)
	}
}
