package pki_test

import (
	"testing"
	"time"

	"github.com/labforge/labforge/internal/pki"
)

func TestVerifyKubeconfig(t *testing.T) {
	ca, other := newTestCA(t, 1), newTestCA(t, 2)
	kubeconfig := func(issuer *pki.KeyPair, user string, notAfter time.Time) []byte {
		t.Helper()
		client, err := issuer.IssueClient(user, []string{"kubeadm:cluster-admins"}, t0, notAfter, seeded(3))
		if err != nil {
			t.Fatal(err)
		}
		out, err := pki.Kubeconfig("lab", "https://10.0.0.1:6443", "", ca.CertPEM(), user, client)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	const student = "student:ns:alice"
	expiry := t0.Add(2 * time.Hour)
	tests := map[string]struct {
		kubeconfig []byte
		caPEM      []byte
		user       string
		now        time.Time
		wantErr    string
	}{
		"minted by the lab's CA for the claim's user": {
			kubeconfig: kubeconfig(ca, student, expiry), caPEM: ca.CertPEM(), user: student, now: t0.Add(time.Hour),
		},
		"signed by another CA": {
			kubeconfig: kubeconfig(other, student, expiry), caPEM: ca.CertPEM(), user: student, now: t0.Add(time.Hour),
			wantErr: `pki: kubeconfig client certificate: x509: certificate signed by unknown authority ` +
				`(possibly because of "x509: ECDSA verification failure" while trying to verify candidate authority certificate "lab-ca")`,
		},
		"for another user": {
			kubeconfig: kubeconfig(ca, "student:ns:bob", expiry), caPEM: ca.CertPEM(), user: student, now: t0.Add(time.Hour),
			wantErr: `pki: kubeconfig client certificate is for "student:ns:bob", not "student:ns:alice"`,
		},
		"expired": {
			kubeconfig: kubeconfig(ca, student, expiry), caPEM: ca.CertPEM(), user: student, now: expiry.Add(time.Minute),
			wantErr: "pki: kubeconfig client certificate: x509: certificate has expired or is not yet valid: " +
				"current time 2026-01-15T14:01:00Z is after 2026-01-15T14:00:00Z",
		},
		"a kubeconfig with no context": {
			kubeconfig: []byte("apiVersion: v1\nkind: Config\n"), caPEM: ca.CertPEM(), user: student, now: t0,
			wantErr: "pki: kubeconfig has no current context",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := errString(pki.VerifyKubeconfig(tc.kubeconfig, tc.caPEM, tc.user, tc.now)); got != tc.wantErr {
				t.Errorf("VerifyKubeconfig() error = %q, want %q", got, tc.wantErr)
			}
		})
	}
}

func TestSSHKeyPairMatches(t *testing.T) {
	pub, priv, err := pki.NewSSHKeyPair(seeded(1), "alice")
	if err != nil {
		t.Fatal(err)
	}
	otherPub, _, err := pki.NewSSHKeyPair(seeded(2), "mallory")
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		priv    []byte
		pub     string
		wantErr string
	}{
		"the pair":            {priv: priv, pub: pub},
		"another public key":  {priv: priv, pub: otherPub, wantErr: "pki: the SSH private key is not the public key's"},
		"not a private key":   {priv: []byte("nothing"), pub: pub, wantErr: "pki: SSH private key: ssh: no key found"},
		"not a public key":    {priv: priv, pub: "ssh-ed25519", wantErr: "pki: SSH public key: ssh: no key found"},
		"an empty public key": {priv: priv, pub: "", wantErr: "pki: SSH public key: ssh: no key found"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := errString(pki.SSHKeyPairMatches(tc.priv, tc.pub)); got != tc.wantErr {
				t.Errorf("SSHKeyPairMatches() error = %q, want %q", got, tc.wantErr)
			}
		})
	}
}
