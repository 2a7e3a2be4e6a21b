package controlplane

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Files of the PKI directory (StateDir/pki). The CA and the service-account
// key are reused when they already exist, so a persistent StateDir keeps its
// kubeconfigs' trust and its service-account tokens valid across restarts;
// leaf certificates are cheap and are reissued on every Start.
const (
	caCertFile      = "ca.crt"
	caKeyFile       = "ca.key"
	saKeyFile       = "sa.key"
	saPubFile       = "sa.pub"
	servingCertFile = "apiserver.crt"
	servingKeyFile  = "apiserver.key"
)

const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
	// clockSkew backdates certificates so that a freshly issued one is
	// already valid for a process whose clock is slightly behind ours.
	clockSkew = 5 * time.Minute
)

// authority is the certificate authority that every certificate of one
// control plane chains to: the apiserver's serving certificate and all client
// certificates (the apiserver trusts it via --client-ca-file).
type authority struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

// keyPair is a PEM-encoded certificate and its private key.
type keyPair struct {
	certPEM, keyPEM []byte
}

// loadOrCreateAuthority reads the CA from dir, or creates and writes one.
func loadOrCreateAuthority(dir string) (*authority, error) {
	certPath, keyPath := filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	if certErr == nil && keyErr == nil {
		return parseAuthority(certPEM, keyPEM)
	}
	if !errors.Is(certErr, os.ErrNotExist) || !errors.Is(keyErr, os.ErrNotExist) {
		return nil, fmt.Errorf("reading CA from %s: need both %s and %s: %w", dir, caCertFile, caKeyFile, errors.Join(certErr, keyErr))
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "labforge-controlplane-ca"},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	certPEM, err = sign(tmpl, key, nil, nil)
	if err != nil {
		return nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeFiles(map[string][]byte{certPath: certPEM, keyPath: keyPEM}); err != nil {
		return nil, err
	}
	return parseAuthority(certPEM, keyPEM)
}

// useAuthority returns the external CA ca, writing only its certificate to
// dir (the apiserver's --client-ca-file): its key stays in memory.
func useAuthority(dir string, ca *CA) (*authority, error) {
	a, err := parseAuthority(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("Options.CA: %w", err)
	}
	if !a.cert.IsCA {
		return nil, errors.New("Options.CA: the certificate is not a CA")
	}
	if err := writeFiles(map[string][]byte{filepath.Join(dir, caCertFile): a.certPEM}); err != nil {
		return nil, err
	}
	return a, nil
}

func parseAuthority(certPEM, keyPEM []byte) (*authority, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("CA certificate: no CERTIFICATE PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := decodeKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	return &authority{cert: cert, key: key, certPEM: certPEM}, nil
}

// clientCert issues a client certificate. The apiserver maps the common name
// to the user name and each organization to a group.
func (a *authority) clientCert(user string, groups ...string) (keyPair, error) {
	return a.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// servingCert issues a TLS server certificate for the given names.
func (a *authority) servingCert(cn string, ips []net.IP, dnsNames []string) (keyPair, error) {
	return a.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips,
		DNSNames:    dnsNames,
	})
}

func (a *authority) issue(tmpl *x509.Certificate) (keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, err
	}
	now := time.Now()
	tmpl.NotBefore = now.Add(-clockSkew)
	tmpl.NotAfter = now.Add(leafValidity)
	if tmpl.NotAfter.After(a.cert.NotAfter) {
		// An external CA (a lab's) may expire sooner; nothing it signs outlives it.
		tmpl.NotAfter = a.cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	certPEM, err := sign(tmpl, key, a.cert, a.key)
	if err != nil {
		return keyPair{}, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return keyPair{}, err
	}
	return keyPair{certPEM: certPEM, keyPEM: keyPEM}, nil
}

// sign creates the certificate tmpl for key, signed by parent; a nil parent
// makes it self-signed.
func sign(tmpl *x509.Certificate, key *ecdsa.PrivateKey, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, fmt.Errorf("signing certificate for %q: %w", tmpl.Subject.CommonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// ensureServiceAccountKey makes sure dir holds the key pair the apiserver
// signs and verifies service-account tokens with (and the token controller
// of kube-controller-manager signs legacy token Secrets with).
func ensureServiceAccountKey(dir string) error {
	keyPath, pubPath := filepath.Join(dir, saKeyFile), filepath.Join(dir, saPubFile)
	_, keyErr := os.Stat(keyPath)
	_, pubErr := os.Stat(pubPath)
	if keyErr == nil && pubErr == nil {
		return nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	return writeFiles(map[string][]byte{keyPath: keyPEM, pubPath: pubPEM})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func decodeKey(keyPEM []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(keyPEM)
	if block != nil && block.Type == "EC PRIVATE KEY" {
		return x509.ParseECPrivateKey(block.Bytes)
	}
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PKCS#8 PRIVATE KEY or EC PRIVATE KEY PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ecKey, ok := key.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("want an ECDSA key, got %T", key)
	}
	return ecKey, nil
}

// writeFiles writes private material, so everything is owner-only.
func writeFiles(files map[string][]byte) error {
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
