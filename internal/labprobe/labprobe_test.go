package labprobe_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/pki"
)

const env = "probe"

// labPKI is one lab's CA with the operator credential minted from it.
type labPKI struct {
	ca    *pki.KeyPair
	creds labprobe.Credentials
}

func newLabPKI(t *testing.T, cn string) labPKI {
	t.Helper()
	now := time.Now()
	ca, err := pki.NewCA(cn, now, 24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	op, err := ca.IssueClient(lab.OperatorUser, nil, now.Add(-pki.ClockSkew), now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := op.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	return labPKI{ca: ca, creds: labprobe.Credentials{CACertPEM: ca.CertPEM(), ClientCertPEM: op.CertPEM(), ClientKeyPEM: key}}
}

func (l labPKI) serving(t *testing.T, hosts ...string) tls.Certificate {
	t.Helper()
	now := time.Now()
	kp, err := l.ca.IssueServing("kube-apiserver", hosts, nil, now.Add(-pki.ClockSkew), now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, err := kp.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM(), key)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func (l labPKI) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(l.ca.Cert)
	return p
}

// labServer is an httptest TLS server playing a lab API server: it requires a client
// certificate from clientCA and serves cert.
func labServer(t *testing.T, cert tls.Certificate, clientCA *x509.CertPool, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    clientCA,
		MinVersion:   tls.VersionTLS12,
	}
	// Handshake failures are the point of several tests.
	srv.Config.ErrorLog = newDiscardLogger()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// dialTo returns a Dialer that connects every address to srv, recording what was dialed.
func dialTo(srv *httptest.Server, dialed *atomic.Value) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dialed != nil {
			dialed.Store(addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, srv.Listener.Addr().String())
	}
}

func markerJSON(data map[string]string) []byte {
	b, err := json.Marshal(&corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: lab.MarkerConfigMap, Namespace: lab.MarkerNamespace},
		Data:       data,
	})
	if err != nil {
		panic(err)
	}
	return b
}

func serveMarker(data map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != labprobe.MarkerPath {
			http.Error(w, "unexpected request "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
			return
		}
		if got := r.TLS.PeerCertificates[0].Subject.CommonName; got != lab.OperatorUser {
			http.Error(w, "unexpected user "+got, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(markerJSON(data))
	}
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","code":` + strconv.Itoa(code) + `}`))
	}
}

func TestProbeAnswers(t *testing.T) {
	l := newLabPKI(t, "kubernetes")
	cert := l.serving(t, lab.APIServiceHost(env, lab.DefaultClusterDomain))
	long := strings.Repeat("é", lab.MarkerMaxMessageLength) // 2 bytes each
	tests := []struct {
		name    string
		handler http.Handler
		want    labprobe.Result
		wantErr bool
	}{
		{
			name:    "complete",
			handler: serveMarker(map[string]string{lab.MarkerPhase: lab.MarkerPhaseComplete}),
			want:    labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseComplete},
		},
		{
			name:    "failed with message",
			handler: serveMarker(map[string]string{lab.MarkerPhase: lab.MarkerPhaseFailed, lab.MarkerMessage: "kubeadm init: timed out waiting for the control plane"}),
			want:    labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseFailed, Message: "kubeadm init: timed out waiting for the control plane"},
		},
		{
			name:    "hostile message sanitized",
			handler: serveMarker(map[string]string{lab.MarkerPhase: lab.MarkerPhaseFailed, lab.MarkerMessage: "\x1b[31mred\x1b[0m\x00 \u202egnp.exe\u200b\n\n\tline two\r\x7f \xff\xfe end  "}),
			want:    labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseFailed, Message: "[31mred[0m gnp.exe line two end"},
		},
		{
			name:    "oversized message truncated on a character boundary",
			handler: serveMarker(map[string]string{lab.MarkerPhase: lab.MarkerPhaseFailed, lab.MarkerMessage: long}),
			want:    labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseFailed, Message: long[:lab.MarkerMaxMessageLength]},
		},
		{
			name:    "marker without phase",
			handler: serveMarker(map[string]string{"other": "x"}),
			want:    labprobe.Result{Reachable: true},
		},
		{
			name:    "unknown phase is still bootstrapping",
			handler: serveMarker(map[string]string{lab.MarkerPhase: "Completed\n"}),
			want:    labprobe.Result{Reachable: true, Message: `unknown bootstrap phase "Completed\n"`},
		},
		{name: "marker absent", handler: status(http.StatusNotFound), want: labprobe.Result{Reachable: true}},
		{name: "marker not yet readable", handler: status(http.StatusForbidden), want: labprobe.Result{Reachable: true}},
		{name: "server error", handler: status(http.StatusServiceUnavailable), want: labprobe.Result{Reachable: true}, wantErr: true},
		{name: "unauthorized", handler: status(http.StatusUnauthorized), want: labprobe.Result{Reachable: true}, wantErr: true},
		{
			name: "redirect not followed",
			handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://169.254.169.254/latest/meta-data", http.StatusFound)
			}),
			want: labprobe.Result{Reachable: true}, wantErr: true,
		},
		{
			name: "not JSON",
			handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte("<html>hello</html>"))
			}),
			want: labprobe.Result{Reachable: true}, wantErr: true,
		},
		{
			name: "not a ConfigMap",
			handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(`{"kind":"Secret","data":{"phase":"Complete"}}`))
			}),
			want: labprobe.Result{Reachable: true}, wantErr: true,
		},
		{
			name: "oversized answer",
			handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(`{"kind":"ConfigMap","data":{"phase":"Complete","message":"`))
				chunk := []byte(strings.Repeat("a", 64<<10))
				for range 64 { // 4 MiB
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
				_, _ = w.Write([]byte(`"}}`))
			}),
			want: labprobe.Result{Reachable: true}, wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := labServer(t, cert, l.pool(), tt.handler)
			var dialed atomic.Value
			p := &labprobe.HTTPSProber{Dialer: dialTo(srv, &dialed), Timeout: 10 * time.Second}
			got, err := p.Probe(context.Background(), env, l.creds)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Probe() error = %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Probe() = %+v, want %+v", got, tt.want)
			}
			if want := lab.APIServiceHost(env, lab.DefaultClusterDomain) + ":6443"; dialed.Load() != want {
				t.Errorf("dialed %v, want %s", dialed.Load(), want)
			}
			if len(got.Message) > lab.MarkerMaxMessageLength || !utf8.ValidString(got.Message) {
				t.Errorf("message not bounded or not UTF-8: %d bytes", len(got.Message))
			}
			for _, r := range got.Message {
				if !unicode.IsPrint(r) {
					t.Errorf("message holds non-printable %U", r)
				}
			}
		})
	}
}

func TestProbeStatusError(t *testing.T) {
	l := newLabPKI(t, "kubernetes")
	srv := labServer(t, l.serving(t, lab.APIServiceHost(env, lab.DefaultClusterDomain)), l.pool(), status(http.StatusServiceUnavailable))
	p := &labprobe.HTTPSProber{Dialer: dialTo(srv, nil)}
	_, err := p.Probe(context.Background(), env, l.creds)
	var se *labprobe.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("error = %v, want a StatusError 503", err)
	}
}

// TestProbeRejects covers everything that must not count as reaching the lab.
func TestProbeRejects(t *testing.T) {
	l := newLabPKI(t, "kubernetes")
	other := newLabPKI(t, "kubernetes") // same name, different key: an impostor CA
	complete := serveMarker(map[string]string{lab.MarkerPhase: lab.MarkerPhaseComplete})
	tests := []struct {
		name    string
		cert    tls.Certificate
		clients *x509.CertPool
		creds   labprobe.Credentials
		errHas  string
	}{
		{
			name: "server certificate from another CA", cert: other.serving(t, lab.APIServiceHost(env, lab.DefaultClusterDomain)),
			clients: l.pool(), creds: l.creds, errHas: "certificate signed by unknown authority",
		},
		{
			name: "server certificate for another lab", cert: l.serving(t, lab.APIServiceHost("other", lab.DefaultClusterDomain)),
			clients: l.pool(), creds: l.creds, errHas: "certificate is valid for",
		},
		{
			name: "server certificate for an IP only", cert: func() tls.Certificate {
				kp, err := l.ca.IssueServing("kube-apiserver", nil, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour), nil)
				if err != nil {
					t.Fatal(err)
				}
				key, _ := kp.KeyPEM()
				c, err := tls.X509KeyPair(kp.CertPEM(), key)
				if err != nil {
					t.Fatal(err)
				}
				return c
			}(),
			clients: l.pool(), creds: l.creds, errHas: "certificate",
		},
		{
			// The lab does not accept the operator's certificate (the server never
			// answers): the probe must fail, not report a reachable lab.
			name: "client certificate from another CA", cert: l.serving(t, lab.APIServiceHost(env, lab.DefaultClusterDomain)),
			clients: l.pool(), creds: other.creds, errHas: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := labServer(t, tt.cert, tt.clients, complete)
			p := &labprobe.HTTPSProber{Dialer: dialTo(srv, nil), Timeout: 5 * time.Second}
			got, err := p.Probe(context.Background(), env, tt.creds)
			if err == nil {
				t.Fatalf("Probe() = %+v, want an error", got)
			}
			if got != (labprobe.Result{}) {
				t.Errorf("Probe() result = %+v, want zero", got)
			}
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("error %q does not mention %q", err, tt.errHas)
			}
			assertNoSecrets(t, err)
		})
	}
}

// TestProbeIgnoresSystemRoots: the server's certificate chains to a CA in the system
// pool is irrelevant; only the lab CA counts. httptest's own certificate is signed by a
// CA nobody but the test trusts, so this checks that a server with valid-looking TLS
// but not the lab's CA is rejected even for its own name.
func TestProbeIgnoresOtherTrust(t *testing.T) {
	l := newLabPKI(t, "kubernetes")
	srv := httptest.NewTLSServer(serveMarker(map[string]string{lab.MarkerPhase: lab.MarkerPhaseComplete}))
	srv.Config.ErrorLog = newDiscardLogger()
	t.Cleanup(srv.Close)
	p := &labprobe.HTTPSProber{Dialer: dialTo(srv, nil)}
	if got, err := p.Probe(context.Background(), env, l.creds); err == nil {
		t.Fatalf("Probe() = %+v, want an error", got)
	}
}

func TestProbeBadCredentials(t *testing.T) {
	l := newLabPKI(t, "kubernetes")
	other := newLabPKI(t, "kubernetes")
	dial := func(context.Context, string, string) (net.Conn, error) {
		t.Error("dialed with unusable credentials")
		return nil, errors.New("no")
	}
	tests := map[string]labprobe.Credentials{
		"no CA":                {ClientCertPEM: l.creds.ClientCertPEM, ClientKeyPEM: l.creds.ClientKeyPEM},
		"CA is a key":          {CACertPEM: l.creds.ClientKeyPEM, ClientCertPEM: l.creds.ClientCertPEM, ClientKeyPEM: l.creds.ClientKeyPEM},
		"no client key":        {CACertPEM: l.creds.CACertPEM, ClientCertPEM: l.creds.ClientCertPEM},
		"mismatched key":       {CACertPEM: l.creds.CACertPEM, ClientCertPEM: l.creds.ClientCertPEM, ClientKeyPEM: other.creds.ClientKeyPEM},
		"cert and key swapped": {CACertPEM: l.creds.CACertPEM, ClientCertPEM: l.creds.ClientKeyPEM, ClientKeyPEM: l.creds.ClientCertPEM},
	}
	for name, creds := range tests {
		t.Run(name, func(t *testing.T) {
			p := &labprobe.HTTPSProber{Dialer: dial}
			if _, err := p.Probe(context.Background(), env, creds); err == nil {
				t.Fatal("Probe() succeeded, want an error")
			} else {
				assertNoSecrets(t, err)
			}
		})
	}
	if _, err := (&labprobe.HTTPSProber{Dialer: dial}).Probe(context.Background(), "", l.creds); err == nil {
		t.Error("Probe of an empty lab name succeeded")
	}
}

func TestProbeConnectionErrors(t *testing.T) {
	l := newLabPKI(t, "kubernetes")
	t.Run("refused", func(t *testing.T) {
		refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
		p := &labprobe.HTTPSProber{Dialer: func(context.Context, string, string) (net.Conn, error) { return nil, refused }}
		_, err := p.Probe(context.Background(), env, l.creds)
		if !errors.Is(err, refused) {
			t.Fatalf("error = %v, want it to wrap the dial error", err)
		}
		if !strings.Contains(err.Error(), lab.APIServiceHost(env, lab.DefaultClusterDomain)) {
			t.Errorf("error %q does not name the lab API address", err)
		}
	})
	t.Run("default dialer", func(t *testing.T) {
		// lab-api.lab-probe.svc does not resolve here: a real DNS or dial error.
		p := &labprobe.HTTPSProber{Timeout: 2 * time.Second}
		if _, err := p.Probe(context.Background(), env, l.creds); err == nil {
			t.Fatal("Probe() without a lab succeeded")
		}
	})
	t.Run("timeout", func(t *testing.T) {
		block := make(chan struct{})
		srv := labServer(t, l.serving(t, lab.APIServiceHost(env, lab.DefaultClusterDomain)), l.pool(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-block:
			case <-r.Context().Done():
			}
		}))
		defer close(block)
		p := &labprobe.HTTPSProber{Dialer: dialTo(srv, nil), Timeout: 200 * time.Millisecond}
		start := time.Now()
		_, err := p.Probe(context.Background(), env, l.creds)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("error = %v, want a deadline error", err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("probe took %s with a 200ms timeout", d)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		srv := labServer(t, l.serving(t, lab.APIServiceHost(env, lab.DefaultClusterDomain)), l.pool(), status(http.StatusNotFound))
		p := &labprobe.HTTPSProber{Dialer: dialTo(srv, nil)}
		if _, err := p.Probe(ctx, env, l.creds); !errors.Is(err, context.Canceled) {
			t.Fatalf("error = %v, want context.Canceled", err)
		}
	})
}

// TestProbeManyLabs probes labs, each with its own CA, concurrently and repeatedly
// through one prober, as the environment controller does.
func TestProbeManyLabs(t *testing.T) {
	const labs = 20
	type labEntry struct {
		name  string
		pki   labPKI
		phase string
	}
	entries := make([]labEntry, labs)
	certs := map[string]*tls.Config{}
	for i := range entries {
		name := "lab" + string(rune('a'+i))
		l := newLabPKI(t, "kubernetes")
		phase := lab.MarkerPhaseComplete
		if i%2 == 1 {
			phase = lab.MarkerPhaseFailed
		}
		entries[i] = labEntry{name: name, pki: l, phase: phase}
		certs[lab.APIServiceHost(name, lab.DefaultClusterDomain)] = &tls.Config{
			Certificates: []tls.Certificate{l.serving(t, lab.APIServiceHost(name, lab.DefaultClusterDomain))},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    l.pool(),
		}
	}
	phases := map[string]string{}
	for _, e := range entries {
		phases[lab.APIServiceHost(e.name, lab.DefaultClusterDomain)] = e.phase
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveMarker(map[string]string{lab.MarkerPhase: phases[r.TLS.ServerName]})(w, r)
	}))
	srv.TLS = &tls.Config{GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		if c, ok := certs[hello.ServerName]; ok {
			return c, nil
		}
		return nil, errors.New("unknown lab")
	}}
	srv.Config.ErrorLog = newDiscardLogger()
	srv.StartTLS()
	t.Cleanup(srv.Close)

	p := &labprobe.HTTPSProber{Dialer: dialTo(srv, nil)}
	errs := make(chan error, labs*3)
	for pass := range 3 {
		for _, e := range entries {
			go func() {
				got, err := p.Probe(context.Background(), e.name, e.pki.creds)
				switch {
				case err != nil:
					errs <- err
				case got.Phase != e.phase:
					errs <- errors.New(e.name + ": got phase " + got.Phase + ", want " + e.phase)
				default:
					errs <- nil
				}
			}()
		}
		for range labs {
			if err := <-errs; err != nil {
				t.Errorf("pass %d: %v", pass, err)
			}
		}
	}
	// A lab probed with another lab's credentials is rejected.
	if _, err := p.Probe(context.Background(), entries[0].name, entries[1].pki.creds); err == nil {
		t.Error("probe with another lab's credentials succeeded")
	}
}

func newDiscardLogger() *log.Logger { return log.New(io.Discard, "", 0) }

func assertNoSecrets(t *testing.T, err error) {
	t.Helper()
	if strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), "PRIVATE") {
		t.Errorf("error reveals PEM material: %q", err)
	}
}

// TestProbeClusterDomain: a host whose DNS domain is not cluster.local has its labs'
// APIs dialled, and their certificates checked, by names in that domain; a certificate
// for the cluster.local name is not the lab.
func TestProbeClusterDomain(t *testing.T) {
	l := newLabPKI(t, "kubernetes")
	name := "lab-api.lab-" + env + ".svc.labs.internal"
	for _, tc := range []struct {
		certName string
		wantErr  bool
	}{
		{certName: name},
		{certName: lab.APIServiceHost(env, lab.DefaultClusterDomain), wantErr: true},
	} {
		srv := labServer(t, l.serving(t, tc.certName), l.pool(), serveMarker(map[string]string{lab.MarkerPhase: lab.MarkerPhaseComplete}))
		var dialed atomic.Value
		p := &labprobe.HTTPSProber{Dialer: dialTo(srv, &dialed), ClusterDomain: "labs.internal"}
		got, err := p.Probe(context.Background(), env, l.creds)
		if dialed.Load() != name+":6443" {
			t.Errorf("dialed %v, want %s:6443", dialed.Load(), name)
		}
		if tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), "certificate is valid for "+tc.certName+", not "+name) {
				t.Errorf("certificate for %s: Probe() error = %v, want a name mismatch", tc.certName, err)
			}
			continue
		}
		if err != nil || got.Phase != lab.MarkerPhaseComplete {
			t.Errorf("certificate for %s: Probe() = %+v, %v; want Complete", tc.certName, got, err)
		}
	}
}

// TestProbeErrorsAreSanitised: the student has the lab's CA key (root on the control
// plane), so the lab API can present a certificate the lab's CA signed with whatever
// names it likes, and answer whatever bytes it likes. What reaches the probe's error is
// printable, on one line and bounded, like a marker message.
func TestProbeErrorsAreSanitised(t *testing.T) {
	l := newLabPKI(t, "kubernetes")
	host := lab.APIServiceHost(env, lab.DefaultClusterDomain)
	t.Run("certificate names", func(t *testing.T) {
		hostile := []string{"\x1b[31mpwned\x1b[0m\r\nReady=True\x07", strings.Repeat("a", 10<<10)}
		srv := labServer(t, l.serving(t, hostile...), l.pool(), serveMarker(nil))
		_, err := (&labprobe.HTTPSProber{Dialer: dialTo(srv, nil)}).Probe(context.Background(), env, l.creds)
		prefix := "lab probe: reaching the lab API at " + host + ":6443: tls: failed to verify certificate: " +
			"x509: certificate is valid for [31mpwned[0m Ready=True, "
		want := prefix + strings.Repeat("a", lab.MarkerMaxMessageLength-len(prefix))
		if err == nil || err.Error() != want {
			t.Fatalf("error =\n%q\nwant\n%q", err, want)
		}
		var hostErr x509.HostnameError
		if !errors.As(err, &hostErr) {
			t.Errorf("error %T does not wrap the x509.HostnameError any more", err)
		}
	})
	t.Run("malformed answer", func(t *testing.T) {
		// A TLS server with the right certificate that answers raw bytes.
		cert := l.serving(t, host)
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer func() { _ = c.Close() }()
					buf := make([]byte, 4096)
					_, _ = c.Read(buf)
					_, _ = c.Write([]byte("HTTP/1.1 200\x1b]0;owned\x07\r\n" + strings.Repeat("X-\x1b[2J: y\r\n", 2000) + "\r\n"))
				}()
			}
		}()
		dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, ln.Addr().String())
		}
		_, err = (&labprobe.HTTPSProber{Dialer: dial}).Probe(context.Background(), env, l.creds)
		if err == nil {
			t.Fatal("Probe() of a malformed answer succeeded")
		}
		msg := err.Error()
		if len(msg) > lab.MarkerMaxMessageLength || strings.ContainsFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) }) {
			t.Errorf("error %q is not sanitised", msg)
		}
	})
}
