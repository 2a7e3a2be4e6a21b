// Package labclient builds the operator's client configuration for one lab's own API
// server: the same address, trust and identity the readiness probe (internal/labprobe)
// uses, as a rest.Config for client-go, for the parts of the operator that read or
// watch objects inside a lab once it is claimed (solution checks, exposed Services).
//
// The lab is untrusted: the student has root on every node and cluster-admin in its
// API. The configuration therefore trusts the lab's CA only (no system roots), names
// the server it expects (lab.APIServiceHost), never uses a proxy, bounds each request,
// and leaves rate limiting to a token bucket per lab, so a lab that answers slowly or
// floods watch events cannot starve the operator's host-side work.
package labclient

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
)

const (
	// DefaultTimeout bounds one request to a lab's API (not a watch: client-go gives
	// watches their own server-side timeout).
	DefaultTimeout = 10 * time.Second
	// DefaultQPS and DefaultBurst bound the operator's requests to one lab.
	DefaultQPS   = 5
	DefaultBurst = 10
)

// Dialer opens a TCP connection; nil means a net.Dialer. The simulated backend supplies
// its own (simulator.Simulator.Dialer), as it does to labprobe.HTTPSProber.
type Dialer func(ctx context.Context, network, addr string) (net.Conn, error)

// Options are the per-host settings of every lab's configuration.
type Options struct {
	// ClusterDomain is the host cluster's DNS domain; lab.DefaultClusterDomain if empty.
	ClusterDomain string
	// Dial opens connections; nil means a net.Dialer.
	Dial Dialer
	// Timeout bounds one request; zero means DefaultTimeout.
	Timeout time.Duration
}

// Config returns the operator's rest.Config for lab env's API server at
// https://<lab.APIServiceHost(env, domain)>:<lab.APIPort>, authenticated with the
// operator's client certificate (lab.OperatorUser) from creds and verifying the server
// against the lab's CA only. The returned configuration owns copies of creds.
func Config(env string, creds labprobe.Credentials, opts Options) (*rest.Config, error) {
	if env == "" {
		return nil, errors.New("labclient: no lab named")
	}
	if len(creds.CACertPEM) == 0 || len(creds.ClientCertPEM) == 0 || len(creds.ClientKeyPEM) == 0 {
		return nil, errors.New("labclient: the lab's CA or the operator's client credential is missing")
	}
	domain := opts.ClusterDomain
	if domain == "" {
		domain = lab.DefaultClusterDomain
	}
	host := lab.APIServiceHost(env, domain)
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	cfg := &rest.Config{
		Host: (&url.URL{Scheme: "https", Host: net.JoinHostPort(host, strconv.Itoa(lab.APIPort))}).String(),
		TLSClientConfig: rest.TLSClientConfig{
			ServerName: host,
			CAData:     clone(creds.CACertPEM),
			CertData:   clone(creds.ClientCertPEM),
			KeyData:    clone(creds.ClientKeyPEM),
		},
		// A lab's address is inside the host cluster: no proxy from the environment.
		Proxy:       func(*http.Request) (*url.URL, error) { return nil, nil },
		Timeout:     timeout,
		UserAgent:   "labforge-operator",
		RateLimiter: flowcontrol.NewTokenBucketRateLimiter(DefaultQPS, DefaultBurst),
	}
	if opts.Dial != nil {
		cfg.Dial = opts.Dial
	}
	return cfg, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }
