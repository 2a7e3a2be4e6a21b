package manager

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/labforge/labforge/internal/lab"
)

func TestDropUserData(t *testing.T) {
	tests := map[string]struct {
		labels   map[string]string
		wantData bool
	}{
		"a cloud-init Secret keeps its metadata only": {labels: map[string]string{lab.LabelUserData: "worker-1"}, wantData: false},
		"the PKI Secret keeps its data":               {labels: nil, wantData: true},
		"a claim's kubeconfig Secret keeps its data":  {labels: map[string]string{"labforge.dev/claim": "c"}, wantData: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: "s", Labels: tc.labels,
					ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "labforge"}}},
				Data: map[string][]byte{"k": []byte("v")},
			}
			out, err := dropUserData(in)
			if err != nil {
				t.Fatal(err)
			}
			s := out.(*corev1.Secret)
			if s.ManagedFields != nil {
				t.Error("managedFields kept in the cache")
			}
			if got := s.Data != nil; got != tc.wantData {
				t.Errorf("data kept = %v, want %v", got, tc.wantData)
			}
			if s.Name != "s" || len(s.Labels) != len(tc.labels) {
				t.Errorf("metadata changed: %+v", s.ObjectMeta)
			}
		})
	}
}
