package controlplane

import (
	"net"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/labforge/labforge/internal/pki"
)

// TestExternalCA starts an API server the way the simulator starts a lab's: with the
// lab's own CA, names of its own on the serving certificate, and no
// kube-controller-manager.
func TestExternalCA(t *testing.T) {
	bins := binDir(t, etcdBinary, apiserverBinary)
	now := time.Now()
	labCA, err := pki.NewCA("kubernetes", now, 24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := labCA.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	const labHost = "lab-api.lab-x.svc.cluster.local"
	begin := time.Now()
	cp, err := Start(t.Context(), Options{
		BinDir: bins, CA: &CA{CertPEM: labCA.CertPEM(), KeyPEM: keyPEM},
		ServingDNSNames: []string{labHost}, ServingIPs: []net.IP{net.IPv4(127, 0, 0, 11)},
		SkipControllerManager: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %v", time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx := t.Context()

	var names []string
	for name := range cp.PIDs() {
		names = append(names, name)
	}
	slices.Sort(names)
	if diff := cmp.Diff([]string{"etcd", "kube-apiserver"}, names); diff != "" {
		t.Errorf("processes (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(cp.path("pki", caKeyFile)); !os.IsNotExist(err) {
		t.Errorf("the external CA's key was written to the state dir (stat: %v)", err)
	}

	// A client of the lab: trusts the lab CA only, expects the lab's name, presents a
	// certificate the lab CA issued (kubeadm's super-admin is in system:masters).
	labClient := func(t *testing.T, signer *pki.KeyPair, serverName string) kubernetes.Interface {
		t.Helper()
		cert, err := signer.IssueClient("lab-admin", []string{"system:masters"}, now.Add(-pki.ClockSkew), now.Add(time.Hour), nil)
		if err != nil {
			t.Fatal(err)
		}
		key, err := cert.KeyPEM()
		if err != nil {
			t.Fatal(err)
		}
		cfg := &rest.Config{Host: cp.RESTConfig().Host, TLSClientConfig: rest.TLSClientConfig{
			ServerName: serverName, CAData: labCA.CertPEM(), CertData: cert.CertPEM(), KeyData: key,
		}}
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := labClient(t, labCA, labHost).CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("a client of the lab CA, expecting %s: %v", labHost, err)
	}
	if _, err := labClient(t, labCA, "127.0.0.11").CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("a client of the lab CA, expecting 127.0.0.11: %v", err)
	}
	otherCA, err := pki.NewCA("kubernetes", now, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = labClient(t, otherCA, labHost).CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if !apierrors.IsUnauthorized(err) {
		t.Errorf("a client certificate from another CA: got %v, want 401 Unauthorized", err)
	}
	if _, err := labClient(t, labCA, "other.example").CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err == nil {
		t.Error("a client expecting a name the serving certificate does not carry connected")
	}

	// UserConfig issues from the lab CA too.
	user, err := cp.UserConfig("nobody")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(labCA.CertPEM()), string(user.CAData)); diff != "" {
		t.Errorf("UserConfig's CA (-want +got):\n%s", diff)
	}
	c, err := kubernetes.NewForConfig(user)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("a user RBAC grants nothing: got %v, want 403 Forbidden", err)
	}
}

func TestExternalCARefusesALeaf(t *testing.T) {
	bins := binDir(t, etcdBinary, apiserverBinary)
	now := time.Now()
	ca, err := pki.NewCA("kubernetes", now, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueClient("x", nil, now, now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := leaf.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := Start(t.Context(), Options{BinDir: bins, CA: &CA{CertPEM: leaf.CertPEM(), KeyPEM: key}, SkipControllerManager: true})
	if err == nil {
		_ = cp.Stop()
		t.Fatal("Start accepted a leaf certificate as CA")
	}
	if diff := cmp.Diff("controlplane: Options.CA: the certificate is not a CA", err.Error()); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}
