package pki_test

import (
	"crypto/sha256"
	"crypto/x509"
	_ "embed"
	"encoding/hex"
	"encoding/pem"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/labforge/labforge/internal/pki"
)

// kubeadmPubkeypinCert is kubeadm's own test vector, copied unchanged from
// k8s.io/kubernetes v1.36.3 cmd/kubeadm/app/util/pubkeypin/testdata/test-cert.pem
// (Apache-2.0). kubeadm's pubkeypin_test.go asserts the hash below for it.
//
//go:embed testdata/kubeadm-pubkeypin-test-cert.pem
var kubeadmPubkeypinCert []byte

// tokenPattern is k8s.io/cluster-bootstrap's BootstrapTokenPattern.
var tokenPattern = regexp.MustCompile(`\A([a-z0-9]{6})\.([a-z0-9]{16})\z`)

func TestDiscoveryHash(t *testing.T) {
	block, _ := pem.Decode(kubeadmPubkeypinCert)
	kubeadmCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{
			// RSA-2048 key; the value kubeadm's own test expects.
			name: "kubeadm pubkeypin test vector",
			cert: kubeadmCert,
			want: "sha256:345959acb2c3b2feb87d281961c893f62a314207ef02599f1cc4a5fb255480b3",
		},
		{
			// Our ECDSA P-256 CA from a fixed seed. Cross-checked once with
			//   openssl x509 -pubkey -noout -in ca.crt | openssl pkey -pubin -outform der | openssl dgst -sha256
			name: "seeded ECDSA CA",
			cert: newTestCA(t, 1).Cert,
			want: "sha256:a55eff984ba3b559940a69b63642e53439c829b3bfdad630536f98a204b054be",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, pki.DiscoveryHash(tt.cert)); diff != "" {
				t.Errorf("DiscoveryHash (-want +got):\n%s", diff)
			}
		})
	}
}

// TestDiscoveryHashIndependent recomputes the hash from the parsed public key
// (re-marshalled, not the certificate's raw bytes) for fresh random CAs.
func TestDiscoveryHashIndependent(t *testing.T) {
	for i := range 20 {
		ca, err := pki.NewCA("lab-ca", t0, time.Hour, nil)
		if err != nil {
			t.Fatal(err)
		}
		spki, err := x509.MarshalPKIXPublicKey(ca.Cert.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(spki)
		want := "sha256:" + hex.EncodeToString(sum[:])
		if diff := cmp.Diff(want, pki.DiscoveryHash(ca.Cert)); diff != "" {
			t.Errorf("CA %d: DiscoveryHash (-want +got):\n%s", i, diff)
		}
	}
}

func TestNewBootstrapTokenFormatAndUniqueness(t *testing.T) {
	const draws = 10000
	seen := make(map[string]bool, draws)
	for range draws {
		tok, err := pki.NewBootstrapToken(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !tokenPattern.MatchString(tok) {
			t.Fatalf("token %q does not match %s", tok, tokenPattern)
		}
		if err := pki.ValidateBootstrapToken(tok); err != nil {
			t.Fatalf("ValidateBootstrapToken(%q): %v", tok, err)
		}
		id, err := pki.TokenID(tok)
		if err != nil || id != tok[:6] {
			t.Fatalf("TokenID(%q) = %q, %v", tok, id, err)
		}
		// Whole tokens only: with 36^6 ids, 10k draws share an id with
		// probability ~2%, which is fine for kubeadm (ids are per cluster).
		if seen[tok] {
			t.Fatalf("token %q drawn twice", tok)
		}
		seen[tok] = true
	}
}

func TestNewBootstrapTokenSampling(t *testing.T) {
	first22 := make([]byte, 22)
	for i := range first22 {
		first22[i] = byte(i)
	}
	tests := []struct {
		name    string
		rand    []byte
		want    string
		wantErr string
	}{
		{name: "bytes map onto the alphabet in order", rand: first22,
			want: "012345.6789abcdefghijkl"},
		{name: "bytes 36 and 251 wrap around", rand: append([]byte{36, 71, 251, 0, 0, 0}, first22[:16]...),
			want: "0zz000.0123456789abcdef"},
		{name: "bytes 252-255 are rejected, not folded onto 0-3", rand: append([]byte{252, 253, 254, 255}, first22...),
			want: "012345.6789abcdefghijkl"},
		{name: "random source ends", rand: first22[:21],
			wantErr: "pki: reading random bytes for a token: unexpected EOF"},
		{name: "random source ends while replacing rejected bytes", rand: append([]byte{255}, first22[:21]...),
			wantErr: "pki: reading random bytes for a token: EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pki.NewBootstrapToken(bytesReader(tt.rand...))
			if diff := cmp.Diff(tt.wantErr, errString(err)); diff != "" {
				t.Fatalf("error mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("token (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateBootstrapToken(t *testing.T) {
	tests := []struct {
		name    string
		token   string
		wantID  string
		wantErr string
	}{
		{name: "valid", token: "abcdef.0123456789abcdef", wantID: "abcdef"},
		{name: "empty", token: "",
			wantErr: `invalid bootstrap token: length is 0, want 23 ("<6 chars>.<16 chars>")`},
		{name: "secret too short", token: "abcdef.0123456789abcde",
			wantErr: `invalid bootstrap token: length is 22, want 23 ("<6 chars>.<16 chars>")`},
		{name: "separator in the wrong place", token: "abcde.f0123456789abcdef",
			wantErr: "invalid bootstrap token: position 7 must be '.'"},
		{name: "colon instead of dot", token: "abcdef:0123456789abcdef",
			wantErr: "invalid bootstrap token: position 7 must be '.'"},
		{name: "upper case in the id", token: "Abcdef.0123456789abcdef",
			wantErr: "invalid bootstrap token: position 1 is not in [a-z0-9]"},
		{name: "dash in the secret", token: "abcdef.0123456789abcde-",
			wantErr: "invalid bootstrap token: position 23 is not in [a-z0-9]"},
		{name: "surrounding whitespace", token: " abcdef.0123456789abcdef",
			wantErr: `invalid bootstrap token: length is 24, want 23 ("<6 chars>.<16 chars>")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := pki.TokenID(tt.token)
			if diff := cmp.Diff(tt.wantErr, errString(err)); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantID, id); diff != "" {
				t.Errorf("TokenID (-want +got):\n%s", diff)
			}
			if err := pki.ValidateBootstrapToken(tt.token); errString(err) != tt.wantErr {
				t.Errorf("ValidateBootstrapToken disagrees with TokenID: %v", err)
			}
			// The secret half is a credential: it must never reach an error.
			if len(tt.token) > 7 && err != nil && strings.Contains(err.Error(), tt.token[7:]) {
				t.Errorf("error leaks the token secret: %v", err)
			}
		})
	}
}
