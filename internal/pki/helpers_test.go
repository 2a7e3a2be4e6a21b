package pki_test

import (
	"bytes"
	"io"
	mathrand "math/rand/v2"
	"testing"
	"time"

	"github.com/labforge/labforge/internal/pki"
)

// t0 is the fixed "now" of the tests. Whole seconds, because X.509 stores
// times with second precision and the tests compare times exactly.
var t0 = time.Date(2026, time.January, 15, 12, 0, 0, 0, time.UTC)

// seeded returns a deterministic random stream. ChaCha8's output is fixed by
// the C2SP chacha8rand spec, so vectors derived from it are stable across Go
// releases.
func seeded(seed byte) io.Reader {
	return mathrand.NewChaCha8([32]byte{seed})
}

// constReader returns an endless stream of one byte value.
type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// shortReader returns n bytes from a seeded stream and then io.EOF, to
// exercise the error path of every random read.
func shortReader(n int) io.Reader {
	return io.LimitReader(seeded(99), int64(n))
}

// bytesReader yields exactly b, then io.EOF.
func bytesReader(b ...byte) io.Reader { return bytes.NewReader(b) }

// newTestCA returns a CA valid for a year from t0.
func newTestCA(t testing.TB, seed byte) *pki.KeyPair {
	t.Helper()
	ca, err := pki.NewCA("lab-ca", t0, 365*24*time.Hour, seeded(seed))
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

// errString returns err's message, or "" for nil, so tables can hold exact
// expected messages.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
