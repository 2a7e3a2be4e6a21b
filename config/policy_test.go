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

// TestFlowSchemasNameTheOperator: config/apf's FlowSchemas match the operator's service
// account by namespace and name, which config/default makes from its namespace, its
// namePrefix and the ServiceAccount's name; a change to any of them without the schemas
// would send the operator's requests back to the built-in service-accounts schema.
func TestFlowSchemasNameTheOperator(t *testing.T) {
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
	data, err := os.ReadFile("apf/flow-schemas.yaml")
	if err != nil {
		t.Fatal(err)
	}
	schemas := 0
	for _, doc := range strings.Split(string(data), "\n---\n") {
		var fs struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				Rules []struct {
					Subjects []struct {
						Kind           string `json:"kind"`
						ServiceAccount struct {
							Namespace string `json:"namespace"`
							Name      string `json:"name"`
						} `json:"serviceAccount"`
					} `json:"subjects"`
				} `json:"rules"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &fs); err != nil {
			t.Fatal(err)
		}
		schemas++
		for _, rule := range fs.Spec.Rules {
			for _, s := range rule.Subjects {
				if s.Kind != "ServiceAccount" || s.ServiceAccount.Namespace != kustomization.Namespace || s.ServiceAccount.Name != kustomization.NamePrefix+sa.Metadata.Name {
					t.Errorf("FlowSchema %s matches %s %s/%s, want the operator's ServiceAccount %s/%s", fs.Metadata.Name, s.Kind,
						s.ServiceAccount.Namespace, s.ServiceAccount.Name, kustomization.Namespace, kustomization.NamePrefix+sa.Metadata.Name)
				}
			}
		}
	}
	if schemas != 2 {
		t.Errorf("apf/flow-schemas.yaml holds %d FlowSchemas, want 2", schemas)
	}
	found := false
	for _, r := range kustomization.Resources {
		found = found || r == "../apf"
	}
	if !found {
		t.Error("config/default does not install ../apf")
	}
}
