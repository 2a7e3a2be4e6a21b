package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"

	"github.com/labforge/labforge/internal/pki"
)

// kubeconfigSummary is what a kubeconfig says, minus the key material.
type kubeconfigSummary struct {
	CurrentContext string
	Clusters       map[string]string    // name -> server
	Users          []string             // names
	Contexts       map[string][2]string // name -> [cluster, user]
}

func TestKubeconfig(t *testing.T) {
	ca := newTestCA(t, 1)
	notAfter := t0.Add(4 * time.Hour) // the student's claim expiry
	client, err := ca.IssueClient("student-1", []string{"students"}, t0, notAfter, seeded(2))
	if err != nil {
		t.Fatal(err)
	}
	noKey := &pki.KeyPair{Cert: client.Cert}

	tests := []struct {
		name        string
		clusterName string
		server      string
		caPEM       []byte
		user        string
		client      *pki.KeyPair
		want        kubeconfigSummary
		wantErr     string
	}{
		{
			name: "student kubeconfig", clusterName: "lab-7", server: "https://10.0.0.10:6443",
			caPEM: ca.CertPEM(), user: "student-1", client: client,
			want: kubeconfigSummary{
				CurrentContext: "student-1@lab-7",
				Clusters:       map[string]string{"lab-7": "https://10.0.0.10:6443"},
				Users:          []string{"student-1"},
				Contexts:       map[string][2]string{"student-1@lab-7": {"lab-7", "student-1"}},
			},
		},
		{
			name: "operator kubeconfig for an IPv6 server", clusterName: "lab-8", server: "https://[fd00::10]:6443",
			caPEM: ca.CertPEM(), user: "labforge-operator", client: client,
			want: kubeconfigSummary{
				CurrentContext: "labforge-operator@lab-8",
				Clusters:       map[string]string{"lab-8": "https://[fd00::10]:6443"},
				Users:          []string{"labforge-operator"},
				Contexts:       map[string][2]string{"labforge-operator@lab-8": {"lab-8", "labforge-operator"}},
			},
		},
		{name: "empty cluster name", server: "https://10.0.0.10:6443", caPEM: ca.CertPEM(), user: "u", client: client,
			wantErr: "pki: kubeconfig cluster name is empty"},
		{name: "empty user", clusterName: "lab-7", server: "https://10.0.0.10:6443", caPEM: ca.CertPEM(), client: client,
			wantErr: "pki: kubeconfig user name is empty"},
		{name: "no client", clusterName: "lab-7", server: "https://10.0.0.10:6443", caPEM: ca.CertPEM(), user: "u",
			wantErr: "pki: kubeconfig needs a client certificate and key"},
		{name: "client without key", clusterName: "lab-7", server: "https://10.0.0.10:6443", caPEM: ca.CertPEM(), user: "u", client: noKey,
			wantErr: "pki: kubeconfig needs a client certificate and key"},
		{name: "plain http server", clusterName: "lab-7", server: "http://10.0.0.10:6443", caPEM: ca.CertPEM(), user: "u", client: client,
			wantErr: `pki: kubeconfig server "http://10.0.0.10:6443" is not an https:// URL with a host`},
		{name: "server without host", clusterName: "lab-7", server: "https:///api", caPEM: ca.CertPEM(), user: "u", client: client,
			wantErr: `pki: kubeconfig server "https:///api" is not an https:// URL with a host`},
		{name: "unparsable server", clusterName: "lab-7", server: "https://[::1", caPEM: ca.CertPEM(), user: "u", client: client,
			wantErr: `pki: kubeconfig server "https://[::1" is not an https:// URL with a host`},
		{name: "no CA", clusterName: "lab-7", server: "https://10.0.0.10:6443", user: "u", client: client,
			wantErr: "pki: kubeconfig CA: data does not contain any valid RSA or ECDSA certificates"},
		{name: "CA PEM holds a key", clusterName: "lab-7", server: "https://10.0.0.10:6443", caPEM: mustKeyPEM(t, ca), user: "u", client: client,
			wantErr: "pki: kubeconfig CA: data does not contain any valid RSA or ECDSA certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := pki.Kubeconfig(tt.clusterName, tt.server, "", tt.caPEM, tt.user, tt.client)
			if diff := cmp.Diff(tt.wantErr, errString(err)); diff != "" {
				t.Fatalf("error mismatch (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			if !strings.Contains(string(out), "apiVersion: v1\n") || !strings.Contains(string(out), "kind: Config\n") {
				t.Errorf("not a v1 Config:\n%s", out)
			}
			cfg, err := clientcmd.Load(out)
			if err != nil {
				t.Fatalf("clientcmd.Load: %v", err)
			}
			got := kubeconfigSummary{CurrentContext: cfg.CurrentContext, Clusters: map[string]string{}, Contexts: map[string][2]string{}}
			for name, c := range cfg.Clusters {
				got.Clusters[name] = c.Server
			}
			for name := range cfg.AuthInfos {
				got.Users = append(got.Users, name)
			}
			for name, c := range cfg.Contexts {
				got.Contexts[name] = [2]string{c.Cluster, c.AuthInfo}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("kubeconfig (-want +got):\n%s", diff)
			}

			cluster := cfg.Clusters[tt.clusterName]
			user := cfg.AuthInfos[tt.user]
			if diff := cmp.Diff(string(tt.caPEM), string(cluster.CertificateAuthorityData)); diff != "" {
				t.Errorf("embedded CA (-want +got):\n%s", diff)
			}
			// The embedded client certificate chains to the lab CA, carries the
			// student's identity and expires with the claim.
			certs, err := certutil.ParseCertsPEM(user.ClientCertificateData)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca.Cert)
			if _, err := certs[0].Verify(x509.VerifyOptions{
				Roots: roots, CurrentTime: t0.Add(time.Hour), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			}); err != nil {
				t.Errorf("client certificate does not chain to the CA: %v", err)
			}
			if diff := cmp.Diff("CN=student-1,O=students", certs[0].Subject.String()); diff != "" {
				t.Errorf("client identity (-want +got):\n%s", diff)
			}
			if !certs[0].NotAfter.Equal(notAfter) {
				t.Errorf("client certificate expires %s, want %s", certs[0].NotAfter, notAfter)
			}
			if _, err := tls.X509KeyPair(user.ClientCertificateData, user.ClientKeyData); err != nil {
				t.Errorf("embedded key does not match the certificate: %v", err)
			}
			// client-go turns it into a usable rest.Config.
			restCfg, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig()
			if err != nil {
				t.Fatalf("ClientConfig: %v", err)
			}
			if diff := cmp.Diff(tt.server, restCfg.Host); diff != "" {
				t.Errorf("rest.Config host (-want +got):\n%s", diff)
			}
		})
	}
}

// TestKubeconfigAgainstTLSServer drives client-go through a kubeconfig against
// a simulated lab API server (IssueServing, mutual TLS against the lab CA).
// TLS checks validity against the wall clock, so this test's certificates are
// anchored at time.Now() rather than t0.
func TestKubeconfigAgainstTLSServer(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA("lab-ca", now, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := pki.NewCA("other-lab-ca", now, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.IssueServing("kube-apiserver", []string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)},
		now.Add(-time.Minute), now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	servingKey, err := serving.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	tlsCert, err := tls.X509KeyPair(serving.CertPEM(), servingKey)
	if err != nil {
		t.Fatal(err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.Cert)

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		peer := r.TLS.PeerCertificates[0].Subject
		fmt.Fprintf(w, "%s %v", peer.CommonName, peer.Organization)
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{tlsCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCAs,
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the rejected handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)

	tests := []struct {
		name     string
		issuer   *pki.KeyPair
		wantBody string
		wantErr  bool
	}{
		{name: "student of this lab", issuer: ca, wantBody: "student-1 [students]"},
		{name: "student of another lab is refused", issuer: otherCA, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := tt.issuer.IssueClient("student-1", []string{"students"}, now.Add(-time.Minute), now.Add(time.Hour), nil)
			if err != nil {
				t.Fatal(err)
			}
			out, err := pki.Kubeconfig("lab-7", srv.URL, "", ca.CertPEM(), "student-1", client)
			if err != nil {
				t.Fatal(err)
			}
			restCfg, err := clientcmd.RESTConfigFromKubeConfig(out)
			if err != nil {
				t.Fatal(err)
			}
			httpClient, err := rest.HTTPClientFor(restCfg)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := httpClient.Get(srv.URL + "/version")
			if tt.wantErr {
				if err == nil {
					resp.Body.Close()
					t.Fatal("request with a foreign client certificate succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantBody, string(body)); diff != "" {
				t.Errorf("identity seen by the server (-want +got):\n%s", diff)
			}
		})
	}
}

// TestKubeconfigTLSServerName: a lab is reached by the address of the node that runs it,
// which its certificate does not name; the kubeconfig's tls-server-name makes client-go
// check the certificate for the lab API Service's name instead. Without it, or with
// another name, client-go refuses the server.
func TestKubeconfigTLSServerName(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA("lab-ca", now, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	const name = "lab-api.lab-7.svc.cluster.local"
	serving, err := ca.IssueServing("kube-apiserver", []string{name}, nil, now.Add(-time.Minute), now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	servingKey, err := serving.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	tlsCert, err := tls.X509KeyPair(serving.CertPEM(), servingKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"major":"1","minor":"36","gitVersion":"v1.36.3"}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{tlsCert}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("server URL %s is not an address", srv.URL)
	}
	client, err := ca.IssueClient("student-1", nil, now.Add(-time.Minute), now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}

	tests := map[string]struct {
		serverName string
		wantErr    string
	}{
		"the certificate's name": {serverName: name},
		"no tls-server-name":     {wantErr: "x509: cannot validate certificate for 127.0.0.1 because it doesn't contain any IP SANs"},
		"another lab's name":     {serverName: "lab-api.lab-8.svc.cluster.local", wantErr: "x509: certificate is valid for " + name + ", not lab-api.lab-8.svc.cluster.local"},
	}
	for tn, tc := range tests {
		t.Run(tn, func(t *testing.T) {
			out, err := pki.Kubeconfig("lab-7", srv.URL, tc.serverName, ca.CertPEM(), "student-1", client)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := clientcmd.Load(out)
			if err != nil {
				t.Fatal(err)
			}
			if got := cfg.Clusters["lab-7"].TLSServerName; got != tc.serverName {
				t.Errorf("tls-server-name = %q, want %q", got, tc.serverName)
			}
			restCfg, err := clientcmd.RESTConfigFromKubeConfig(out)
			if err != nil {
				t.Fatal(err)
			}
			cs, err := kubernetes.NewForConfig(restCfg)
			if err != nil {
				t.Fatal(err)
			}
			v, err := cs.Discovery().ServerVersion()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ServerVersion() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ServerVersion(): %v", err)
			}
			if v.GitVersion != "v1.36.3" {
				t.Errorf("GitVersion = %q", v.GitVersion)
			}
		})
	}
}
