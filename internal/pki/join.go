package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
)

// Bootstrap token shape, as defined by k8s.io/cluster-bootstrap
// (BootstrapTokenPattern `\A([a-z0-9]{6})\.([a-z0-9]{16})\z`).
const (
	tokenAlphabet  = "0123456789abcdefghijklmnopqrstuvwxyz"
	tokenIDLen     = 6
	tokenSecretLen = 16
)

// NewBootstrapToken returns a kubeadm bootstrap token "<id>.<secret>", with
// a 6-character id and a 16-character secret drawn uniformly from [a-z0-9].
// Its expiry is a kubeadm configuration field, not part of the token.
func NewBootstrapToken(rand io.Reader) (string, error) {
	s, err := randomString(randOrDefault(rand), tokenIDLen+tokenSecretLen)
	if err != nil {
		return "", err
	}
	return s[:tokenIDLen] + "." + s[tokenIDLen:], nil
}

// ValidateBootstrapToken reports whether token has the kubeadm bootstrap
// token format. Its errors never include the token, whose secret half is a
// credential that must stay out of logs and events.
func ValidateBootstrapToken(token string) error {
	if len(token) != tokenIDLen+1+tokenSecretLen {
		return fmt.Errorf("invalid bootstrap token: length is %d, want %d (\"<6 chars>.<16 chars>\")",
			len(token), tokenIDLen+1+tokenSecretLen)
	}
	if token[tokenIDLen] != '.' {
		return fmt.Errorf("invalid bootstrap token: position %d must be '.'", tokenIDLen+1)
	}
	for i := range len(token) {
		if i != tokenIDLen && !isTokenChar(token[i]) {
			return fmt.Errorf("invalid bootstrap token: position %d is not in [a-z0-9]", i+1)
		}
	}
	return nil
}

// TokenID returns the public id half of a bootstrap token, which names its
// Secret (bootstrap-token-<id>) in kube-system and is safe to log.
func TokenID(token string) (string, error) {
	if err := ValidateBootstrapToken(token); err != nil {
		return "", err
	}
	return token[:tokenIDLen], nil
}

func isTokenChar(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'z')
}

// randomString returns n characters drawn uniformly from tokenAlphabet.
// A byte modulo 36 would favour the first 256%36 = 4 characters (8/256 vs
// 7/256), so bytes at or above the largest multiple of 36 are rejected.
// It reads only as many bytes per round as characters are still missing, so
// the consumed stream is fully determined by the output (useful in tests).
func randomString(r io.Reader, n int) (string, error) {
	const limit = 256 - 256%len(tokenAlphabet) // 252
	out := make([]byte, 0, n)
	buf := make([]byte, n)
	for len(out) < n {
		chunk := buf[:n-len(out)]
		if _, err := io.ReadFull(r, chunk); err != nil {
			return "", fmt.Errorf("pki: reading random bytes for a token: %w", err)
		}
		for _, b := range chunk {
			if int(b) < limit {
				out = append(out, tokenAlphabet[int(b)%len(tokenAlphabet)])
			}
		}
	}
	return string(out), nil
}

// DiscoveryHash returns the value for kubeadm's
// --discovery-token-ca-cert-hash: "sha256:" and the lowercase hex SHA-256 of
// the CA certificate's DER SubjectPublicKeyInfo. It is the same computation as
// kubeadm's cmd/kubeadm/app/util/pubkeypin.Hash, reimplemented to avoid
// importing k8s.io/kubernetes. Pinning the key rather than the certificate
// means a re-issued CA with the same key keeps the same hash.
func DiscoveryHash(caCert *x509.Certificate) string {
	sum := sha256.Sum256(caCert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}
