// Package labprobe asks a lab whether it is ready. Ready means the lab itself says so
// (DESIGN.md): the operator talks to the lab's own API server over TLS verified against the
// lab's CA, authenticates with the client certificate it minted from that CA, and reads the
// bootstrap marker ConfigMap (lab.Marker*) the lab's bootstrap writes as its last step.
//
// The HTTPSProber is the production implementation. It differs between a real lab and the
// simulated backend (internal/simulator) only in its Dialer. The lab controller runs it
// through a Pool, off its reconcile workers: what answers at a booting lab's address may
// be the student's, and may stall (decision 55).
package labprobe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/labforge/labforge/internal/lab"
)

// MarkerPath is the lab API path of the bootstrap marker ConfigMap.
const MarkerPath = "/api/v1/namespaces/" + lab.MarkerNamespace + "/configmaps/" + lab.MarkerConfigMap

const (
	// DefaultTimeout bounds one probe (dial, TLS handshake, request and response) when
	// HTTPSProber.Timeout is zero.
	DefaultTimeout = 5 * time.Second
	// DefaultMaxCachedLabs bounds the per-lab TLS clients an HTTPSProber keeps when
	// MaxCachedLabs is zero: enough for every lab of a large host, small in memory (a
	// cached client holds parsed certificates, no connections).
	DefaultMaxCachedLabs = 4096

	// maxResponseBytes bounds how much of the lab's answer is read. A ConfigMap holds at
	// most 1 MiB of data; the rest is metadata. The lab is untrusted input.
	maxResponseBytes = 2 << 20
	// maxResponseHeaderBytes bounds the response headers for the same reason.
	maxResponseHeaderBytes = 64 << 10
)

// Credentials are what the operator needs to talk to one lab's API server: the lab's CA
// (the only root the server certificate is verified against) and the operator's client
// certificate and key, all PEM, from the lab's lab.PKISecret.
type Credentials struct {
	CACertPEM     []byte
	ClientCertPEM []byte
	ClientKeyPEM  []byte
}

// CredentialsFromSecret takes the credentials from a lab's lab.PKISecret Secret
// (lab.PKICACert, lab.PKIOperatorCert, lab.PKIOperatorKey). The slices are shared with
// the Secret, not copied.
func CredentialsFromSecret(s *corev1.Secret) Credentials {
	return Credentials{
		CACertPEM:     s.Data[lab.PKICACert],
		ClientCertPEM: s.Data[lab.PKIOperatorCert],
		ClientKeyPEM:  s.Data[lab.PKIOperatorKey],
	}
}

// Result is what one probe found.
type Result struct {
	// Reachable is true when the lab's API server answered over TLS verified against the
	// lab's CA and accepted the operator's client certificate (whatever it then said).
	Reachable bool
	// Phase is lab.MarkerPhaseComplete or lab.MarkerPhaseFailed as the bootstrap marker
	// says, or "" while there is no (recognisable) marker: the lab is still bootstrapping.
	Phase string
	// Message is the marker's message, sanitized: printable characters only, whitespace
	// collapsed, at most lab.MarkerMaxMessageLength bytes. It is the lab's own words (the
	// student has root in the lab): show it, never interpret it.
	Message string
}

// Complete reports whether the lab said its bootstrap completed.
func (r Result) Complete() bool { return r.Phase == lab.MarkerPhaseComplete }

// Failed reports whether the lab said its bootstrap failed.
func (r Result) Failed() bool { return r.Phase == lab.MarkerPhaseFailed }

// Prober asks the lab of LabEnvironment env whether its bootstrap finished.
//
// An error means the probe learnt nothing about the bootstrap: the lab API could not be
// reached or verified (Result is zero), or it answered something unexpected (Result has
// Reachable set). Callers retry later; an error is never a verdict on the lab.
//
// Forget drops whatever the prober keeps for env (a TLS client): the lab was built and is
// never asked again, or it is gone. Probing env again afterwards works as the first time.
type Prober interface {
	Probe(ctx context.Context, env string, creds Credentials) (Result, error)
	Forget(env string)
}

// StatusError is returned when the lab API answered the marker request with an HTTP
// status other than 200, 403 or 404: the lab API server is up but not (yet) answering
// normally (starting, overloaded, or rejecting the operator's credential).
type StatusError struct {
	Env        string
	StatusCode int
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("lab %s: lab API answered the bootstrap marker request with HTTP %d %s",
		e.Env, e.StatusCode, http.StatusText(e.StatusCode))
}

// HTTPSProber probes labs over HTTPS at https://<lab.APIServiceHost(env, domain)>:<lab.APIPort>.
// It trusts the lab's CA only (no system roots), checks the server certificate against
// lab.APIServiceHost(env, domain), presents the operator's client certificate, never follows
// redirects and never uses a proxy.
//
// It keeps one HTTP client per lab, keyed by the lab and a digest of its credentials, so
// probing many labs again and again does not parse certificates and build transports on
// every pass. Connections are not kept alive: each probe verifies the lab's server
// certificate afresh, and a thousand idle labs hold no sockets or goroutines. Use a
// pointer; an HTTPSProber must not be copied after first use. Its zero value is ready.
type HTTPSProber struct {
	// Dialer opens the TCP connection for addr ("<lab.APIServiceHost(env, domain)>:6443");
	// nil means a net.Dialer. The simulated backend supplies its own.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
	// ClusterDomain is the host cluster's DNS domain, which lab API names are fully
	// qualified with; lab.DefaultClusterDomain if empty.
	ClusterDomain string
	// Timeout bounds one probe; zero means DefaultTimeout.
	Timeout time.Duration
	// MaxCachedLabs bounds the cached per-lab clients (least recently used go first);
	// zero means DefaultMaxCachedLabs.
	MaxCachedLabs int

	cache clientCache
}

var _ Prober = (*HTTPSProber)(nil)

// Probe asks the lab of env for its bootstrap marker. Its errors say what went wrong in
// sanitised words (SanitizeError): a certificate's names, a server's malformed answer or
// a TLS alert come from the lab, whose root the student has.
func (p *HTTPSProber) Probe(ctx context.Context, env string, creds Credentials) (_ Result, err error) {
	defer func() { err = SanitizeError(err) }()
	if env == "" {
		return Result{}, errors.New("labprobe: empty lab name")
	}
	c, err := p.cache.get(env, creds, p.maxCached(), p.newClient)
	if err != nil {
		return Result{}, fmt.Errorf("lab %s: %w", env, err)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	ctx = context.WithValue(ctx, probeContextKey{}, ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.MarkerURL(env), nil)
	if err != nil {
		return Result{}, fmt.Errorf("lab %s: building the marker request: %w", env, err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "labforge-operator")

	resp, err := c.Do(req)
	if err != nil {
		// url.Error repeats method and URL; the address says enough.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			// Its end closed the connection (newClient): the deadline or the
			// cancellation is what happened, not the closed connection.
			err = ctxErr
		}
		return Result{}, fmt.Errorf("lab %s: reaching the lab API at %s: %w", env, p.apiAddr(env), err)
	}
	defer func() { _ = resp.Body.Close() }()

	switch resp.StatusCode {
	case http.StatusOK:
		return parseMarker(env, resp.Body)
	case http.StatusNotFound, http.StatusForbidden:
		// No marker yet, or the bootstrap has not yet granted the operator read access
		// to it (which it does at the end): still bootstrapping.
		return Result{Reachable: true}, nil
	default:
		return Result{Reachable: true}, &StatusError{Env: env, StatusCode: resp.StatusCode}
	}
}

// Forget drops the cached client of env. Probing env again builds a new one.
func (p *HTTPSProber) Forget(env string) { p.cache.forget(env) }

// MarkerURL is the URL the prober reads the marker of env from.
func (p *HTTPSProber) MarkerURL(env string) string {
	return (&url.URL{Scheme: "https", Host: p.apiAddr(env), Path: MarkerPath}).String()
}

func (p *HTTPSProber) apiAddr(env string) string {
	return net.JoinHostPort(p.apiHost(env), strconv.Itoa(lab.APIPort))
}

// apiHost is the name the lab API of env is dialled by and its certificate checked for.
func (p *HTTPSProber) apiHost(env string) string {
	domain := p.ClusterDomain
	if domain == "" {
		domain = lab.DefaultClusterDomain
	}
	return lab.APIServiceHost(env, domain)
}

func (p *HTTPSProber) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return DefaultTimeout
}

func (p *HTTPSProber) maxCached() int {
	if p.MaxCachedLabs > 0 {
		return p.MaxCachedLabs
	}
	return DefaultMaxCachedLabs
}

// marker is the part of a v1 ConfigMap the probe reads.
type marker struct {
	Kind string            `json:"kind"`
	Data map[string]string `json:"data"`
}

// parseMarker reads the marker ConfigMap from a 200 answer.
func parseMarker(env string, body io.Reader) (Result, error) {
	reachable := Result{Reachable: true}
	raw, err := io.ReadAll(io.LimitReader(body, maxResponseBytes+1))
	if err != nil {
		return reachable, fmt.Errorf("lab %s: reading the bootstrap marker: %w", env, err)
	}
	if len(raw) > maxResponseBytes {
		return reachable, fmt.Errorf("lab %s: bootstrap marker answer exceeds %d bytes", env, maxResponseBytes)
	}
	var m marker
	if err := json.Unmarshal(raw, &m); err != nil {
		return reachable, fmt.Errorf("lab %s: bootstrap marker is not a ConfigMap: %w", env, err)
	}
	if m.Kind != "" && m.Kind != "ConfigMap" {
		return reachable, fmt.Errorf("lab %s: bootstrap marker answer is a %s, not a ConfigMap", env, SanitizeMessage(fmt.Sprintf("%q", m.Kind[:min(len(m.Kind), 64)])))
	}
	switch phase := m.Data[lab.MarkerPhase]; phase {
	case lab.MarkerPhaseComplete, lab.MarkerPhaseFailed:
		return Result{Reachable: true, Phase: phase, Message: SanitizeMessage(m.Data[lab.MarkerMessage])}, nil
	case "":
		return reachable, nil
	default:
		// Not a phase the bootstrap writes: treat as still bootstrapping, and say why.
		return Result{Reachable: true, Message: SanitizeMessage(fmt.Sprintf("unknown bootstrap phase %q", phase[:min(len(phase), 64)]))}, nil
	}
}
