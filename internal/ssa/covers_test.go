package ssa

import (
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func decode(t *testing.T, s string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("decoding %s: %v", s, err)
	}
	return v
}

func TestCovers(t *testing.T) {
	tests := map[string]struct {
		desired, observed string
		want              bool
	}{
		"equal":                          {`{"a":1,"b":"x"}`, `{"a":1,"b":"x"}`, true},
		"observed has defaults":          {`{"a":1}`, `{"a":1,"b":{"c":true}}`, true},
		"a value differs":                {`{"a":1}`, `{"a":2}`, false},
		"a field is missing":             {`{"a":1,"b":"x"}`, `{"a":1}`, false},
		"nested value differs":           {`{"s":{"p":[{"port":22}]}}`, `{"s":{"p":[{"port":23,"protocol":"TCP"}]}}`, false},
		"list element has defaults":      {`{"p":[{"port":22}]}`, `{"p":[{"port":22,"protocol":"TCP"}]}`, true},
		"list longer than desired":       {`{"p":[1]}`, `{"p":[1,2]}`, false},
		"list shorter than desired":      {`{"p":[1,2]}`, `{"p":[1]}`, false},
		"list order matters":             {`{"p":[1,2]}`, `{"p":[2,1]}`, false},
		"null asks for nothing":          {`{"a":null}`, `{"a":5}`, true},
		"empty map may be absent":        {`{"a":{}}`, `{}`, true},
		"empty list may be absent":       {`{"a":[]}`, `{}`, true},
		"map where a scalar is":          {`{"a":{"b":1}}`, `{"a":1}`, false},
		"scalar where a map is":          {`{"a":1}`, `{"a":{"b":1}}`, false},
		"extra label is somebody else's": {`{"labels":{"x":"1"}}`, `{"labels":{"x":"1","y":"2"}}`, true},
		"removed label":                  {`{"labels":{"x":"1","y":"2"}}`, `{"labels":{"x":"1"}}`, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Covers(decode(t, tc.desired), decode(t, tc.observed)); got != tc.want {
				t.Errorf("Covers(%s, %s) = %v, want %v", tc.desired, tc.observed, got, tc.want)
			}
		})
	}
}

// The comparison runs on typed objects encoded by the same Go types, so a quantity or a
// byte slice compares equal to the server's copy of it.
func TestCoversTypedObjects(t *testing.T) {
	desired := &corev1.ResourceQuota{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ResourceQuota"},
		ObjectMeta: metav1.ObjectMeta{Name: "q", Namespace: "n", Labels: map[string]string{"a": "b"}},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			corev1.ResourceRequestsMemory: resource.MustParse("1536Mi"),
		}},
	}
	body, err := json.Marshal(desired)
	if err != nil {
		t.Fatal(err)
	}
	// What the cache holds: no kind, server fields, the quantity parsed back.
	observed := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "q", Namespace: "n", Labels: map[string]string{"a": "b"},
			ResourceVersion: "42", UID: "u", CreationTimestamp: metav1.Now()},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			corev1.ResourceRequestsMemory: resource.MustParse("1536Mi"),
		}},
		Status: corev1.ResourceQuotaStatus{Used: corev1.ResourceList{corev1.ResourceRequestsMemory: resource.MustParse("1Gi")}},
	}
	ok, err := covers(body, observed)
	if err != nil || !ok {
		t.Fatalf("covers(unchanged quota) = %v, %v; want true", ok, err)
	}
	observed.Spec.Hard[corev1.ResourceRequestsMemory] = resource.MustParse("64Gi")
	if ok, _ := covers(body, observed); ok {
		t.Fatal("covers(quota raised by someone else) = true; want false")
	}

	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "n"},
		Data:       map[string][]byte{"k": []byte("v")},
	}
	body, _ = json.Marshal(secret)
	tampered := secret.DeepCopy()
	tampered.Data["k"] = []byte("w")
	if ok, _ := covers(body, tampered); ok {
		t.Fatal("covers(tampered Secret) = true; want false")
	}
	if ok, _ := covers(body, secret.DeepCopy()); !ok {
		t.Fatal("covers(same Secret) = false; want true")
	}
}
