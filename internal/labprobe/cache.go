package labprobe

import (
	"container/list"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// clientCache keeps one HTTP client per lab, least recently used first out. A client is
// reused only while the lab's credentials are byte for byte the same: a lab recreated
// under the same name has a new CA and gets a new client.
type clientCache struct {
	mu      sync.Mutex
	entries map[string]*list.Element // env -> *cachedClient in lru
	lru     list.List                // front: most recently used

	// builds counts clients built, for tests.
	builds int
}

type cachedClient struct {
	env    string
	sum    [sha256.Size]byte
	client *http.Client
}

// get returns the client for env and creds, building one with build when none is cached.
// Building happens outside the lock: it parses certificates, and probes of other labs
// should not wait for it.
func (c *clientCache) get(env string, creds Credentials, maxEntries int,
	build func(env string, creds Credentials) (*http.Client, error)) (*http.Client, error) {
	sum := credentialsDigest(creds)
	c.mu.Lock()
	if hc := c.lookupLocked(env, sum); hc != nil {
		c.mu.Unlock()
		return hc, nil
	}
	c.mu.Unlock()

	hc, err := build(env, creds)
	if err != nil {
		return nil, err
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	c.builds++
	if cached := c.lookupLocked(env, sum); cached != nil {
		return cached, nil // built concurrently by another probe of the same lab
	}
	if c.entries == nil {
		c.entries = make(map[string]*list.Element)
	}
	c.entries[env] = c.lru.PushFront(&cachedClient{env: env, sum: sum, client: hc})
	for c.lru.Len() > maxEntries {
		c.removeLocked(c.lru.Back())
	}
	return hc, nil
}

// lookupLocked returns the cached client of env if it was built from credentials with
// digest sum, and drops a client built from other credentials.
func (c *clientCache) lookupLocked(env string, sum [sha256.Size]byte) *http.Client {
	el, ok := c.entries[env]
	if !ok {
		return nil
	}
	cc := el.Value.(*cachedClient)
	if cc.sum != sum {
		c.removeLocked(el)
		return nil
	}
	c.lru.MoveToFront(el)
	return cc.client
}

func (c *clientCache) forget(env string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[env]; ok {
		c.removeLocked(el)
	}
}

func (c *clientCache) removeLocked(el *list.Element) {
	cc := c.lru.Remove(el).(*cachedClient)
	delete(c.entries, cc.env)
	cc.client.CloseIdleConnections()
}

func (c *clientCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// credentialsDigest identifies a set of credentials without keeping them. Each part is
// length-prefixed so that moving bytes from one part to the next changes the digest.
func credentialsDigest(creds Credentials) [sha256.Size]byte {
	h := sha256.New()
	for _, part := range [][]byte{creds.CACertPEM, creds.ClientCertPEM, creds.ClientKeyPEM} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// probeContextKey carries a probe's own context (its deadline and cancellation) to the
// transport's dial, which net/http detaches from them.
type probeContextKey struct{}

// newClient builds the HTTP client for one lab. Its errors name what is wrong with the
// credentials, never their content.
func (p *HTTPSProber) newClient(env string, creds Credentials) (*http.Client, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(creds.CACertPEM) {
		return nil, errors.New("lab CA certificate: no valid PEM certificate")
	}
	cert, err := tls.X509KeyPair(creds.ClientCertPEM, creds.ClientKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("operator client certificate: %w", err)
	}
	timeout := p.timeout()
	dial := p.Dialer
	if dial == nil {
		dial = (&net.Dialer{Timeout: timeout}).DialContext
	}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			// net/http dials (and runs the TLS handshake) on a context detached from the
			// request's cancellation (Transport.getConn: "the dial should proceed even if
			// the request is canceled"), bounded only by TLSHandshakeTimeout. A probe cut
			// off by its deadline or by the pool must not leave a stalling lab's
			// connection behind: the probe's own context bounds the dial and closes the
			// connection when the probe ends (with keep-alives off, nothing reuses it).
			probe, ok := ctx.Value(probeContextKey{}).(context.Context)
			if !ok {
				probe = ctx
			}
			conn, err := dial(probe, network, addr)
			if err != nil {
				return nil, err
			}
			context.AfterFunc(probe, func() { _ = conn.Close() })
			return conn, nil
		},
		TLSClientConfig: &tls.Config{
			// The lab's CA and nothing else: a certificate from any other CA, system
			// roots included, is not the lab.
			RootCAs:      roots,
			ServerName:   p.apiHost(env),
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
		},
		// Proxy stays nil: the lab API is reached directly, never through an
		// environment-configured proxy.
		DisableKeepAlives:      true,
		MaxIdleConnsPerHost:    -1,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
	}
	return &http.Client{
		Transport: transport,
		// A redirect would send the operator, with its client certificate, wherever
		// the lab (whose root the student has) points it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}
