package config

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestLabGuardsPolicyNamesTheOperator: the lab-guards admission policy lets only the
// operator's service account write a lab's guards, by its username, which config/default
// makes from its namespace, its namePrefix and the ServiceAccount's name. A change to any
// of them without the policy would make the API server refuse the operator's own writes.
func TestLabGuardsPolicyNamesTheOperator(t *testing.T) {
	var kustomization struct {
		Namespace  string   `json:"namespace"`
		NamePrefix string   `json:"namePrefix"`
		Resources  []string `json:"resources"`
	}
	var sa struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	read(t, "default/kustomization.yaml", &kustomization)
	read(t, "rbac/service_account.yaml", &sa)
	policy, err := os.ReadFile("policy/lab-guards.yaml")
	if err != nil {
		t.Fatal(err)
	}
	user := "system:serviceaccount:" + kustomization.Namespace + ":" + kustomization.NamePrefix + sa.Metadata.Name
	if got := strings.Count(string(policy), "system:serviceaccount:"); got != 1 {
		t.Errorf("policy/lab-guards.yaml names %d service accounts, want 1", got)
	}
	if !strings.Contains(string(policy), "request.userInfo.username == '"+user+"'") {
		t.Errorf("policy/lab-guards.yaml does not let %s (config/default's operator) through", user)
	}
	found := false
	for _, r := range kustomization.Resources {
		found = found || r == "../policy"
	}
	if !found {
		t.Error("config/default does not install ../policy")
	}
}

func read(t *testing.T, path string, into any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, into); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
}
