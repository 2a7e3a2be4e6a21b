package labprobe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/pki"
)

func testCreds(t *testing.T) Credentials {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA("kubernetes", now, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	op, err := ca.IssueClient(lab.OperatorUser, nil, now.Add(-time.Minute), now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := op.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return Credentials{CACertPEM: ca.CertPEM(), ClientCertPEM: op.CertPEM(), ClientKeyPEM: key}
}

func TestClientCache(t *testing.T) {
	a, b := testCreds(t), testCreds(t)
	refused := errors.New("refused")
	p := &HTTPSProber{
		MaxCachedLabs: 3,
		Dialer:        func(context.Context, string, string) (net.Conn, error) { return nil, refused },
	}
	probe := func(env string, creds Credentials) {
		t.Helper()
		if _, err := p.Probe(context.Background(), env, creds); !errors.Is(err, refused) {
			t.Fatalf("Probe(%s) error = %v, want the dial error", env, err)
		}
	}
	builds := func() int {
		p.cache.mu.Lock()
		defer p.cache.mu.Unlock()
		return p.cache.builds
	}

	for range 5 {
		probe("one", a)
	}
	if n := builds(); n != 1 {
		t.Fatalf("5 probes of one lab built %d clients, want 1", n)
	}
	// Same bytes in new slices (a Secret read again) still hit.
	probe("one", Credentials{
		CACertPEM:     append([]byte(nil), a.CACertPEM...),
		ClientCertPEM: append([]byte(nil), a.ClientCertPEM...),
		ClientKeyPEM:  append([]byte(nil), a.ClientKeyPEM...),
	})
	if n := builds(); n != 1 {
		t.Fatalf("equal credentials rebuilt the client (%d builds)", n)
	}
	// The lab recreated with a new CA under the same name: a new client replaces the old.
	probe("one", b)
	if n, l := builds(), p.cache.len(); n != 2 || l != 1 {
		t.Fatalf("after new credentials: %d builds, %d cached; want 2, 1", n, l)
	}
	// Bounded, least recently used out.
	probe("two", a)
	probe("three", a)
	probe("one", b) // one is now most recent
	probe("four", a)
	if l := p.cache.len(); l != 3 {
		t.Fatalf("cache holds %d clients, want at most 3", l)
	}
	if _, ok := p.cache.entries["two"]; ok {
		t.Error("least recently used lab two was not evicted")
	}
	if _, ok := p.cache.entries["one"]; !ok {
		t.Error("recently used lab one was evicted")
	}
	p.Forget("one")
	p.Forget("never-probed")
	if _, ok := p.cache.entries["one"]; ok || p.cache.len() != 2 {
		t.Errorf("Forget left %d entries: %v", p.cache.len(), p.cache.entries)
	}
	// Unusable credentials are not cached.
	before := builds()
	if _, err := p.Probe(context.Background(), "bad", Credentials{}); err == nil {
		t.Fatal("empty credentials accepted")
	}
	if builds() != before || p.cache.len() != 2 {
		t.Error("failed build was cached")
	}
}

// TestClientCacheThousandLabs: a pass over 1,000 labs builds each client once, and
// later passes build none.
func TestClientCacheThousandLabs(t *testing.T) {
	creds := make([]Credentials, 1000)
	for i := range creds {
		creds[i] = testCreds(t)
	}
	p := &HTTPSProber{Dialer: func(context.Context, string, string) (net.Conn, error) { return nil, errors.New("refused") }}
	for range 3 {
		for i, c := range creds {
			_, _ = p.Probe(context.Background(), fmt.Sprintf("lab%d", i), c)
		}
	}
	if p.cache.builds != 1000 || p.cache.len() != 1000 {
		t.Errorf("3 passes over 1000 labs: %d builds, %d cached; want 1000, 1000", p.cache.builds, p.cache.len())
	}
}

// TestNoKeepAlive: every probe is a new, fully verified TLS connection, and nothing stays
// open between probes.
func TestNoKeepAlive(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA("kubernetes", now, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	op, _ := ca.IssueClient(lab.OperatorUser, nil, now.Add(-time.Minute), now.Add(time.Hour), nil)
	opKey, _ := op.KeyPEM()
	srvKP, _ := ca.IssueServing("apiserver", []string{lab.APIServiceHost("k", lab.DefaultClusterDomain)}, nil, now.Add(-time.Minute), now.Add(time.Hour), nil)
	srvKey, _ := srvKP.KeyPEM()
	cert, err := tls.X509KeyPair(srvKP.CertPEM(), srvKey)
	if err != nil {
		t.Fatal(err)
	}
	conns := 0
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns++
		}
	}
	srv.StartTLS()
	defer srv.Close()
	p := &HTTPSProber{Dialer: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	}}
	creds := Credentials{CACertPEM: ca.CertPEM(), ClientCertPEM: op.CertPEM(), ClientKeyPEM: opKey}
	for range 3 {
		if r, err := p.Probe(context.Background(), "k", creds); err != nil || !r.Reachable {
			t.Fatalf("Probe() = %+v, %v", r, err)
		}
	}
	if conns != 3 {
		t.Errorf("3 probes used %d connections, want 3 (no keep-alive)", conns)
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"plain message", "plain message"},
		{"  lead and trail \n", "lead and trail"},
		{"a\r\nb\tc\vd\fe\u0085f\u00a0g\u2028h", "a b c d e f g h"},
		{"bell\a esc\x1b[2J nul\x00 del\x7f", "bell esc[2J nul del"},
		{"bidi \u202eevil\u202c zero\u200bwidth \ufeffbom", "bidi evil zerowidth bom"},
		{"bad \xff\xc3 utf8", "bad utf8"},
		{"emoji 🚀 and ünïcödé", "emoji 🚀 and ünïcödé"},
	}
	for _, tt := range tests {
		if got := SanitizeMessage(tt.in); got != tt.want {
			t.Errorf("SanitizeMessage(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	// Truncation counts bytes and never splits a character or ends in a space.
	if got := sanitize("ab 🚀🚀", 6); got != "ab 🚀"[:3] && got != "ab" {
		t.Errorf("sanitize to 6 bytes = %q", got)
	}
	if got := sanitize("abcd 🚀", 7); got != "abcd" {
		t.Errorf("sanitize to 7 bytes = %q, want %q", got, "abcd")
	}
	if got := sanitize("ab 🚀", 7); got != "ab 🚀" {
		t.Errorf("sanitize exact fit = %q", got)
	}
	huge := strings.Repeat("x\n", 10*lab.MarkerMaxMessageLength)
	if got := SanitizeMessage(huge); len(got) > lab.MarkerMaxMessageLength || strings.HasSuffix(got, " ") {
		t.Errorf("sanitized huge message: %d bytes, suffix %q", len(got), got[len(got)-2:])
	}
}
