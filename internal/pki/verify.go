package pki

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/client-go/tools/clientcmd"
	certutil "k8s.io/client-go/util/cert"
)

// VerifyKubeconfig checks that kubeconfig authenticates as user with a client
// certificate issued by the CA caPEM and valid at now: only whoever holds the
// CA key (the operator) can have written it. The operator uses it to tell a
// kubeconfig it minted, whose Secret lost its owner reference in a restore,
// from one a student put under the same name.
func VerifyKubeconfig(kubeconfig, caPEM []byte, user string, now time.Time) error {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return fmt.Errorf("pki: reading kubeconfig: %w", err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		return errors.New("pki: kubeconfig has no current context")
	}
	auth := cfg.AuthInfos[ctx.AuthInfo]
	if auth == nil || len(auth.ClientCertificateData) == 0 {
		return errors.New("pki: kubeconfig's current user has no client certificate")
	}
	certs, err := certutil.ParseCertsPEM(auth.ClientCertificateData)
	if err != nil {
		return fmt.Errorf("pki: kubeconfig client certificate: %w", err)
	}
	cas, err := certutil.ParseCertsPEM(caPEM)
	if err != nil {
		return fmt.Errorf("pki: CA: %w", err)
	}
	roots := x509.NewCertPool()
	for _, ca := range cas {
		roots.AddCert(ca)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{
		Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return fmt.Errorf("pki: kubeconfig client certificate: %w", err)
	}
	if cn := certs[0].Subject.CommonName; cn != user {
		return fmt.Errorf("pki: kubeconfig client certificate is for %q, not %q", cn, user)
	}
	return nil
}

// SSHKeyPairMatches checks that privateKeyPEM (OpenSSH format, unencrypted) is
// the private half of authorizedKey (an authorized_keys line).
func SSHKeyPairMatches(privateKeyPEM []byte, authorizedKey string) error {
	signer, err := ssh.ParsePrivateKey(privateKeyPEM)
	if err != nil {
		return fmt.Errorf("pki: SSH private key: %w", err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedKey))
	if err != nil {
		return fmt.Errorf("pki: SSH public key: %w", err)
	}
	if !bytes.Equal(signer.PublicKey().Marshal(), pub.Marshal()) {
		return errors.New("pki: the SSH private key is not the public key's")
	}
	return nil
}
