package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	cryptorand "crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/util/keyutil"

	"github.com/labforge/labforge/internal/pki"
)

// certSummary is the part of a certificate the tests assert on, in a form
// cmp.Diff prints readably.
type certSummary struct {
	Subject        string
	Issuer         string
	IsCA           bool
	MaxPathLenZero bool
	KeyUsage       x509.KeyUsage
	ExtKeyUsage    []x509.ExtKeyUsage
	NotBefore      time.Time
	NotAfter       time.Time
	DNSNames       []string
	IPs            []string
	PublicKey      string
	SignatureAlg   string
}

func summarize(c *x509.Certificate) certSummary {
	s := certSummary{
		Subject:        c.Subject.String(),
		Issuer:         c.Issuer.String(),
		IsCA:           c.IsCA,
		MaxPathLenZero: c.MaxPathLenZero,
		KeyUsage:       c.KeyUsage,
		ExtKeyUsage:    c.ExtKeyUsage,
		NotBefore:      c.NotBefore,
		NotAfter:       c.NotAfter,
		DNSNames:       c.DNSNames,
		SignatureAlg:   c.SignatureAlgorithm.String(),
	}
	for _, ip := range c.IPAddresses {
		s.IPs = append(s.IPs, ip.String())
	}
	if k, ok := c.PublicKey.(*ecdsa.PublicKey); ok {
		s.PublicKey = "ECDSA " + k.Curve.Params().Name
	} else {
		s.PublicKey = fmt.Sprintf("%T", c.PublicKey)
	}
	return s
}

func TestNewCA(t *testing.T) {
	const year = 365 * 24 * time.Hour
	wantCA := certSummary{
		Subject:        "CN=lab-ca",
		Issuer:         "CN=lab-ca",
		IsCA:           true,
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		NotBefore:      t0.Add(-5 * time.Minute),
		NotAfter:       t0.Add(year),
		PublicKey:      "ECDSA P-256",
		SignatureAlg:   "ECDSA-SHA256",
	}
	tests := []struct {
		name       string
		commonName string
		validity   time.Duration
		rand       io.Reader
		want       certSummary
		wantErr    string
	}{
		{name: "seeded", commonName: "lab-ca", validity: year, rand: seeded(1), want: wantCA},
		{name: "nil rand means crypto/rand", commonName: "lab-ca", validity: year, rand: nil, want: wantCA},
		{name: "empty common name", validity: year, rand: seeded(1),
			wantErr: "pki: CA common name is empty"},
		{name: "zero validity", commonName: "lab-ca", rand: seeded(1),
			wantErr: "pki: CA validity must be positive, got 0s"},
		{name: "negative validity", commonName: "lab-ca", validity: -time.Hour, rand: seeded(1),
			wantErr: "pki: CA validity must be positive, got -1h0m0s"},
		{name: "random source empty", commonName: "lab-ca", validity: year, rand: shortReader(0),
			wantErr: "pki: reading random bytes for a private key: EOF"},
		{name: "random source ends inside the key", commonName: "lab-ca", validity: year, rand: shortReader(10),
			wantErr: "pki: reading random bytes for a private key: unexpected EOF"},
		{name: "random source ends before the serial", commonName: "lab-ca", validity: year, rand: shortReader(32),
			wantErr: "pki: reading random bytes for a serial number: EOF"},
		{name: "random source all ones is never a valid scalar", commonName: "lab-ca", validity: year, rand: constReader(0xff),
			wantErr: "pki: random source produced no valid P-256 scalar in 8 attempts"},
		{name: "random source all zeros is never a valid scalar", commonName: "lab-ca", validity: year, rand: constReader(0),
			wantErr: "pki: random source produced no valid P-256 scalar in 8 attempts"},
		{name: "all-zero serial is refused", commonName: "lab-ca", validity: year,
			rand:    io.MultiReader(bytesReader(bytes.Repeat([]byte{1}, 32)...), constReader(0)),
			wantErr: "pki: random source produced an all-zero serial number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, err := pki.NewCA(tt.commonName, t0, tt.validity, tt.rand)
			if diff := cmp.Diff(tt.wantErr, errString(err)); diff != "" {
				t.Fatalf("error mismatch (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, summarize(ca.Cert)); diff != "" {
				t.Errorf("certificate mismatch (-want +got):\n%s", diff)
			}
			if err := ca.Cert.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("CA is not validly self-signed: %v", err)
			}
			if len(ca.Cert.SubjectKeyId) == 0 {
				t.Error("CA has no SubjectKeyId")
			}
			if n := ca.Cert.SerialNumber; n.Sign() <= 0 || n.BitLen() > 128 {
				t.Errorf("serial %v is not a positive 128-bit number", n)
			}
			if !ca.Key.Public().(*ecdsa.PublicKey).Equal(ca.Cert.PublicKey) {
				t.Error("key does not match certificate")
			}
		})
	}
}

// TestNewCADeterministic shows that the injected reader fully determines the
// key and serial (Go 1.26's ecdsa.GenerateKey would ignore it).
func TestNewCADeterministic(t *testing.T) {
	a, b, c := newTestCA(t, 1), newTestCA(t, 1), newTestCA(t, 2)
	keyA, _ := a.KeyPEM()
	keyB, _ := b.KeyPEM()
	keyC, _ := c.KeyPEM()
	if !bytes.Equal(keyA, keyB) || a.Cert.SerialNumber.Cmp(b.Cert.SerialNumber) != 0 {
		t.Error("same seed gave different key or serial")
	}
	if bytes.Equal(keyA, keyC) || a.Cert.SerialNumber.Cmp(c.Cert.SerialNumber) == 0 {
		t.Error("different seeds gave the same key or serial")
	}
}

func TestKeyPairPEMRoundTrip(t *testing.T) {
	ca := newTestCA(t, 1)
	client, err := ca.IssueClient("student", nil, t0, t0.Add(time.Hour), seeded(2))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		kp   *pki.KeyPair
	}{
		{name: "CA", kp: ca},
		{name: "client", kp: client},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keyPEM, err := tt.kp.KeyPEM()
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode(keyPEM)
			if diff := cmp.Diff("EC PRIVATE KEY", block.Type); diff != "" {
				t.Errorf("key block type (-want +got):\n%s", diff)
			}
			// keyutil is what kubeadm uses to load /etc/kubernetes/pki/ca.key.
			kubeadmKey, err := keyutil.ParsePrivateKeyPEM(keyPEM)
			if err != nil {
				t.Fatalf("keyutil cannot read the key: %v", err)
			}
			if !tt.kp.Key.Public().(*ecdsa.PublicKey).Equal(kubeadmKey.(*ecdsa.PrivateKey).Public()) {
				t.Error("keyutil read a different key")
			}
			got, err := pki.ParseKeyPair(tt.kp.CertPEM(), keyPEM)
			if err != nil {
				t.Fatalf("ParseKeyPair: %v", err)
			}
			if !bytes.Equal(got.Cert.Raw, tt.kp.Cert.Raw) {
				t.Error("certificate changed in the round trip")
			}
			if !got.Key.(*ecdsa.PrivateKey).Equal(tt.kp.Key) {
				t.Error("key changed in the round trip")
			}
		})
	}
}

func TestParseKeyPair(t *testing.T) {
	ca := newTestCA(t, 1)
	other := newTestCA(t, 2)
	caKey, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	pkcs8DER, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8DER})
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	rsaCert, rsaKey := kubeadmStyleRSACA(t)

	tests := []struct {
		name    string
		certPEM []byte
		keyPEM  []byte
		wantCN  string
		wantErr string
	}{
		{name: "SEC 1 key", certPEM: ca.CertPEM(), keyPEM: caKey, wantCN: "lab-ca"},
		{name: "PKCS #8 key", certPEM: ca.CertPEM(), keyPEM: pkcs8, wantCN: "lab-ca"},
		{name: "openssl ecparam output with EC PARAMETERS first", certPEM: ca.CertPEM(),
			keyPEM: append(ecParams, caKey...), wantCN: "lab-ca"},
		{name: "RSA PKCS #1 key as kubeadm generates by default", certPEM: rsaCert, keyPEM: rsaKey, wantCN: "kubernetes"},
		{name: "bundle uses the first certificate", certPEM: append(ca.CertPEM(), other.CertPEM()...), keyPEM: caKey, wantCN: "lab-ca"},
		{name: "no certificate", certPEM: caKey, keyPEM: caKey,
			wantErr: "pki: no CERTIFICATE block in certificate PEM"},
		{name: "corrupt certificate", certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}), keyPEM: caKey,
			wantErr: "pki: parsing certificate: x509: malformed certificate"},
		{name: "no key", certPEM: ca.CertPEM(), keyPEM: ca.CertPEM(),
			wantErr: "pki: no private key block in key PEM"},
		{name: "key of another CA", certPEM: ca.CertPEM(), keyPEM: mustKeyPEM(t, other),
			wantErr: `pki: private key does not match the public key of certificate "lab-ca"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := pki.ParseKeyPair(tt.certPEM, tt.keyPEM)
			if diff := cmp.Diff(tt.wantErr, errString(err)); diff != "" {
				t.Fatalf("error mismatch (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.wantCN, kp.Cert.Subject.CommonName); diff != "" {
				t.Errorf("common name (-want +got):\n%s", diff)
			}
		})
	}
}

// kubeadmStyleRSACA returns a self-signed RSA CA in the encodings kubeadm
// writes by default ("CERTIFICATE" and PKCS #1 "RSA PRIVATE KEY").
func kubeadmStyleRSACA(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(cryptorand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubernetes"},
		NotBefore:             t0,
		NotAfter:              t0.Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(cryptorand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
}

func mustKeyPEM(t *testing.T, kp *pki.KeyPair) []byte {
	t.Helper()
	b, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIssuedCertificates(t *testing.T) {
	ca := newTestCA(t, 1)
	notAfter := t0.Add(30 * 24 * time.Hour)
	tests := []struct {
		name  string
		issue func() (*pki.KeyPair, error)
		want  certSummary
	}{
		{
			name: "client with groups",
			issue: func() (*pki.KeyPair, error) {
				return ca.IssueClient("labforge-operator", []string{"system:masters"}, t0, notAfter, seeded(2))
			},
			want: certSummary{
				Subject:      "CN=labforge-operator,O=system:masters",
				Issuer:       "CN=lab-ca",
				KeyUsage:     x509.KeyUsageDigitalSignature,
				ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
				NotBefore:    t0,
				NotAfter:     notAfter,
				PublicKey:    "ECDSA P-256",
				SignatureAlg: "ECDSA-SHA256",
			},
		},
		{
			name: "serving with DNS names and IPs",
			issue: func() (*pki.KeyPair, error) {
				return ca.IssueServing("kube-apiserver", []string{"api.lab-1.example", "kubernetes.default.svc"},
					[]net.IP{net.ParseIP("10.0.0.10"), net.ParseIP("fd00::10")}, t0, notAfter, seeded(3))
			},
			want: certSummary{
				Subject:      "CN=kube-apiserver",
				Issuer:       "CN=lab-ca",
				KeyUsage:     x509.KeyUsageDigitalSignature,
				ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
				NotBefore:    t0,
				NotAfter:     notAfter,
				DNSNames:     []string{"api.lab-1.example", "kubernetes.default.svc"},
				IPs:          []string{"10.0.0.10", "fd00::10"},
				PublicKey:    "ECDSA P-256",
				SignatureAlg: "ECDSA-SHA256",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := tt.issue()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, summarize(kp.Cert)); diff != "" {
				t.Errorf("certificate mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(ca.Cert.SubjectKeyId, kp.Cert.AuthorityKeyId); diff != "" {
				t.Errorf("AuthorityKeyId is not the CA's SubjectKeyId (-want +got):\n%s", diff)
			}
			if kp.Cert.SerialNumber.Cmp(ca.Cert.SerialNumber) == 0 {
				t.Error("leaf reuses the CA's serial number")
			}
		})
	}
}

// TestIssuedCertificatesVerify checks the chain with x509.Verify, the same
// check a TLS peer makes, including the extended key usage.
func TestIssuedCertificatesVerify(t *testing.T) {
	ca := newTestCA(t, 1)
	otherCA := newTestCA(t, 2)
	client, err := ca.IssueClient("student-1", []string{"students"}, t0, t0.Add(24*time.Hour), seeded(3))
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.IssueServing("kube-apiserver", []string{"api.lab-1.example"}, []net.IP{net.ParseIP("10.0.0.10")},
		t0, t0.Add(24*time.Hour), seeded(4))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		leaf     *pki.KeyPair
		roots    *pki.KeyPair
		usage    x509.ExtKeyUsage
		host     string
		at       time.Time
		wantFail string // "" means the chain must verify
	}{
		{name: "client cert for client auth", leaf: client, roots: ca, usage: x509.ExtKeyUsageClientAuth, at: t0.Add(time.Hour)},
		{name: "client cert refused for server auth", leaf: client, roots: ca, usage: x509.ExtKeyUsageServerAuth, at: t0.Add(time.Hour),
			wantFail: "incompatible usage"},
		{name: "serving cert for its DNS name", leaf: serving, roots: ca, usage: x509.ExtKeyUsageServerAuth, host: "api.lab-1.example", at: t0.Add(time.Hour)},
		{name: "serving cert for its IP", leaf: serving, roots: ca, usage: x509.ExtKeyUsageServerAuth, host: "10.0.0.10", at: t0.Add(time.Hour)},
		{name: "serving cert for another host", leaf: serving, roots: ca, usage: x509.ExtKeyUsageServerAuth, host: "api.lab-2.example", at: t0.Add(time.Hour),
			wantFail: "hostname mismatch"},
		{name: "serving cert refused for client auth", leaf: serving, roots: ca, usage: x509.ExtKeyUsageClientAuth, at: t0.Add(time.Hour),
			wantFail: "incompatible usage"},
		{name: "another lab's CA", leaf: client, roots: otherCA, usage: x509.ExtKeyUsageClientAuth, at: t0.Add(time.Hour),
			wantFail: "unknown authority"},
		{name: "after the leaf expired", leaf: client, roots: ca, usage: x509.ExtKeyUsageClientAuth, at: t0.Add(25 * time.Hour),
			wantFail: "expired"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roots := x509.NewCertPool()
			roots.AddCert(tt.roots.Cert)
			_, err := tt.leaf.Cert.Verify(x509.VerifyOptions{
				Roots:       roots,
				DNSName:     tt.host,
				CurrentTime: tt.at,
				KeyUsages:   []x509.ExtKeyUsage{tt.usage},
			})
			if diff := cmp.Diff(tt.wantFail, verifyFailure(err)); diff != "" {
				t.Errorf("verification outcome (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

// verifyFailure classifies an x509.Verify error without depending on its text.
func verifyFailure(err error) string {
	var invalid x509.CertificateInvalidError
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
		return "incompatible usage"
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return "expired"
	case errors.As(err, &hostErr):
		return "hostname mismatch"
	case errors.As(err, &authErr):
		return "unknown authority"
	default:
		return err.Error()
	}
}

func TestIssueValidity(t *testing.T) {
	ca := newTestCA(t, 1) // valid until t0 + 1 year
	caEnd := ca.Cert.NotAfter
	tests := []struct {
		name          string
		notBefore     time.Time
		notAfter      time.Time
		wantNotBefore time.Time
		wantNotAfter  time.Time
		wantErr       string
	}{
		{name: "inside the CA's validity", notBefore: t0, notAfter: t0.Add(8 * time.Hour),
			wantNotBefore: t0, wantNotAfter: t0.Add(8 * time.Hour)},
		{name: "ending exactly with the CA", notBefore: t0, notAfter: caEnd,
			wantNotBefore: t0, wantNotAfter: caEnd},
		{name: "outliving the CA is clamped", notBefore: t0, notAfter: caEnd.Add(90 * 24 * time.Hour),
			wantNotBefore: t0, wantNotAfter: caEnd},
		{name: "one second past the CA is clamped", notBefore: t0, notAfter: caEnd.Add(time.Second),
			wantNotBefore: t0, wantNotAfter: caEnd},
		{name: "sub-second times are truncated by X.509", notBefore: t0.Add(700 * time.Millisecond), notAfter: t0.Add(time.Hour + 300*time.Millisecond),
			wantNotBefore: t0, wantNotAfter: t0.Add(time.Hour)},
		{name: "CA already expired", notBefore: caEnd.Add(time.Hour), notAfter: caEnd.Add(2 * time.Hour),
			wantErr: `pki: empty validity window for "student": notBefore 2027-01-15T13:00:00Z is not before notAfter 2027-01-15T12:00:00Z (CA expires 2027-01-15T12:00:00Z)`},
		{name: "notAfter before notBefore", notBefore: t0, notAfter: t0.Add(-time.Hour),
			wantErr: `pki: empty validity window for "student": notBefore 2026-01-15T12:00:00Z is not before notAfter 2026-01-15T11:00:00Z (CA expires 2027-01-15T12:00:00Z)`},
		{name: "empty window", notBefore: t0, notAfter: t0,
			wantErr: `pki: empty validity window for "student": notBefore 2026-01-15T12:00:00Z is not before notAfter 2026-01-15T12:00:00Z (CA expires 2027-01-15T12:00:00Z)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := ca.IssueClient("student", nil, tt.notBefore, tt.notAfter, seeded(2))
			if diff := cmp.Diff(tt.wantErr, errString(err)); diff != "" {
				t.Fatalf("error mismatch (-want +got):\n%s", diff)
			}
			if err != nil {
				return
			}
			got := [2]time.Time{kp.Cert.NotBefore, kp.Cert.NotAfter}
			if diff := cmp.Diff([2]time.Time{tt.wantNotBefore, tt.wantNotAfter}, got); diff != "" {
				t.Errorf("validity [notBefore notAfter] (-want +got):\n%s", diff)
			}
		})
	}
}

func TestIssueErrors(t *testing.T) {
	ca := newTestCA(t, 1)
	other := newTestCA(t, 2)
	leaf, err := ca.IssueClient("student", nil, t0, t0.Add(time.Hour), seeded(3))
	if err != nil {
		t.Fatal(err)
	}
	end := t0.Add(time.Hour)
	tests := []struct {
		name    string
		issue   func() (*pki.KeyPair, error)
		wantErr string
	}{
		{name: "issuer is not a CA",
			issue:   func() (*pki.KeyPair, error) { return leaf.IssueClient("x", nil, t0, end, seeded(4)) },
			wantErr: `pki: issuer "student" is not a CA`},
		{name: "nil issuer",
			issue:   func() (*pki.KeyPair, error) { return (*pki.KeyPair)(nil).IssueClient("x", nil, t0, end, seeded(4)) },
			wantErr: "pki: issuing CA needs both a certificate and a key"},
		{name: "issuer without key",
			issue: func() (*pki.KeyPair, error) {
				return (&pki.KeyPair{Cert: ca.Cert}).IssueClient("x", nil, t0, end, seeded(4))
			},
			wantErr: "pki: issuing CA needs both a certificate and a key"},
		{name: "issuer key from another CA",
			issue: func() (*pki.KeyPair, error) {
				return (&pki.KeyPair{Cert: ca.Cert, Key: other.Key}).IssueClient("x", nil, t0, end, seeded(4))
			},
			wantErr: `pki: signing certificate "x": x509: provided PrivateKey doesn't match parent's PublicKey`},
		{name: "client without common name",
			issue:   func() (*pki.KeyPair, error) { return ca.IssueClient("", []string{"students"}, t0, end, seeded(4)) },
			wantErr: "pki: certificate common name is empty"},
		{name: "serving without names",
			issue:   func() (*pki.KeyPair, error) { return ca.IssueServing("api", nil, nil, t0, end, seeded(4)) },
			wantErr: "pki: serving certificate needs at least one DNS name or IP address"},
		{name: "random source ends",
			issue:   func() (*pki.KeyPair, error) { return ca.IssueClient("x", nil, t0, end, shortReader(0)) },
			wantErr: "pki: reading random bytes for a private key: EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := tt.issue()
			if diff := cmp.Diff(tt.wantErr, errString(err)); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
			if kp != nil {
				t.Errorf("got a key pair together with an error")
			}
		})
	}
}

// BenchmarkNewCA measures what a pool fill pays per lab for its CA.
func BenchmarkNewCA(b *testing.B) {
	for b.Loop() {
		if _, err := pki.NewCA("lab-ca", t0, 365*24*time.Hour, cryptorand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIssueClient measures minting one client certificate (the
// operator's own, or a student's kubeconfig).
func BenchmarkIssueClient(b *testing.B) {
	ca, err := pki.NewCA("lab-ca", t0, 365*24*time.Hour, cryptorand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ca.IssueClient("student", []string{"students"}, t0, t0.Add(8*time.Hour), cryptorand.Reader); err != nil {
			b.Fatal(err)
		}
	}
}
