package cloudinit

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/pki"
)

// yamlInputs are a control plane's and a worker's inputs, with a solution check (the
// operator's RBAC grows with it) and a scenario.
func yamlInputs(tb testing.TB) []Input {
	tb.Helper()
	ca, err := pki.NewCA("labforge-yaml", time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), 24*time.Hour, rand.NewChaCha8([32]byte{'y'}))
	if err != nil {
		tb.Fatal(err)
	}
	key, err := ca.KeyPEM()
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := labforgev1alpha1.LabTemplateSpec{
		KubernetesVersion: "v1.36.3",
		Image:             labforgev1alpha1.LabImage{ContainerDisk: "quay.io/containerdisks/ubuntu:22.04"},
		ControlPlane:      labforgev1alpha1.ControlPlaneSize{Cores: 2, Threads: 1, Memory: resource.MustParse("2Gi"), Disk: resource.MustParse("20Gi")},
		Workers: labforgev1alpha1.WorkerSpec{Count: 1,
			NodeSize: labforgev1alpha1.NodeSize{Cores: 1, Threads: 1, Memory: resource.MustParse("1Gi"), Disk: resource.MustParse("20Gi")}},
		SSHUser:     "ubuntu",
		Lifetime:    labforgev1alpha1.Lifetime{Default: metav1.Duration{Duration: 2 * time.Hour}, Maximum: metav1.Duration{Duration: 8 * time.Hour}},
		BootTimeout: metav1.Duration{Duration: 15 * time.Minute},
		Network:     labforgev1alpha1.LabNetwork{PodCIDR: "10.200.0.0/16", ServiceCIDR: "10.201.0.0/16", TunnelPort: 8475},
		Scenario:    &labforgev1alpha1.Scenario{Script: "#!/bin/bash\nkubectl -n kube-system delete deployment coredns\n"},
		Checks: []labforgev1alpha1.SolutionCheck{{Name: "dns", Resource: labforgev1alpha1.CheckResource{
			Version: "v1", Kind: "Deployment", Group: "apps", Namespace: "kube-system", Name: "coredns"}, Expression: "object.status.readyReplicas >= 1"}},
	}
	base := Input{Environment: "yaml", Template: tmpl, CACertPEM: ca.CertPEM(), BootstrapToken: "abcdef.0123456789abcdef",
		TokenTTL: 25 * time.Minute, DiscoveryHash: pki.DiscoveryHash(ca.Cert), ClusterDomain: "cluster.local"}
	cp, worker := base, base
	cp.Node, cp.CAKeyPEM = Node{Name: lab.ControlPlaneVM, Role: lab.RoleControlPlane}, key
	worker.Node = Node{Name: lab.WorkerVM(1), Role: lab.RoleWorker}
	return []Input{cp, worker}
}

// TestMarshalYAMLMatchesSigsYAML holds marshalYAML to what sigs.k8s.io/yaml.Marshal
// writes, byte for byte, for every document the user-data is made of and for the kinds
// of values they could hold.
func TestMarshalYAMLMatchesSigsYAML(t *testing.T) {
	values := []any{
		map[string]any{"port": 6443, "ttl": int64(1500), "half": 1.5, "big": int64(1) << 40, "null": nil, "empty": map[string]int{},
			"none": []string{}, "octal": "0644", "yes": "true", "bool": false, "multi": "a\nb\n", "colon": "a: b", "unicode": "dönë ✓"},
		[]any{"---", "#cloud-config", 0, -1, "~"},
	}
	for _, in := range yamlInputs(t) {
		c, err := newConfig(in)
		if err != nil {
			t.Fatal(err)
		}
		files, err := c.writeFiles()
		if err != nil {
			t.Fatal(err)
		}
		values = append(values, c.cloudConfig(files), c.clusterConfiguration(), c.initConfiguration(), c.joinConfiguration())
	}
	for i, v := range values {
		want, err := yaml.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshalYAML(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("value %d: marshalYAML wrote\n%s\nsigs.k8s.io/yaml wrote\n%s", i, got, want)
		}
	}
}

// BenchmarkUserData is what rendering one node's user-data costs the operator: once per
// VM of every lab built.
func BenchmarkUserData(b *testing.B) {
	in := yamlInputs(b)[0]
	for b.Loop() {
		if _, err := UserData(in); err != nil {
			b.Fatal(err)
		}
	}
}
