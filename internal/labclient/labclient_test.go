package labclient_test

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labclient"
	"github.com/labforge/labforge/internal/labprobe"
)

func TestConfig(t *testing.T) {
	creds := labprobe.Credentials{CACertPEM: []byte("ca"), ClientCertPEM: []byte("crt"), ClientKeyPEM: []byte("key")}
	dialed := false
	cfg, err := labclient.Config("lab-1", creds, labclient.Options{
		Dial: func(context.Context, string, string) (net.Conn, error) { dialed = true; return nil, net.ErrClosed },
	})
	if err != nil {
		t.Fatal(err)
	}
	host := lab.APIServiceHost("lab-1", lab.DefaultClusterDomain)
	if want := "https://" + host + ":6443"; cfg.Host != want {
		t.Errorf("Host = %q, want %q", cfg.Host, want)
	}
	if cfg.ServerName != host {
		t.Errorf("ServerName = %q, want %q", cfg.ServerName, host)
	}
	if string(cfg.CAData) != "ca" || string(cfg.CertData) != "crt" || string(cfg.KeyData) != "key" {
		t.Errorf("credentials not carried over: %q %q %q", cfg.CAData, cfg.CertData, cfg.KeyData)
	}
	creds.CACertPEM[0] = 'X'
	if string(cfg.CAData) != "ca" {
		t.Errorf("CAData shares memory with the Secret's data")
	}
	if cfg.Timeout != labclient.DefaultTimeout || cfg.RateLimiter == nil {
		t.Errorf("Timeout = %v, RateLimiter = %v; want %v and a limiter", cfg.Timeout, cfg.RateLimiter, labclient.DefaultTimeout)
	}
	if u, _ := cfg.Proxy(&http.Request{}); u != nil {
		t.Errorf("Proxy = %v, want none", u)
	}
	_, _ = cfg.Dial(context.Background(), "tcp", "x:1")
	if !dialed {
		t.Errorf("Dial was not the one given")
	}
}

func TestConfigRefusesMissingCredentials(t *testing.T) {
	for name, creds := range map[string]labprobe.Credentials{
		"no CA":   {ClientCertPEM: []byte("crt"), ClientKeyPEM: []byte("key")},
		"no cert": {CACertPEM: []byte("ca"), ClientKeyPEM: []byte("key")},
		"no key":  {CACertPEM: []byte("ca"), ClientCertPEM: []byte("crt")},
	} {
		if _, err := labclient.Config("lab-1", creds, labclient.Options{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := labclient.Config("", labprobe.Credentials{CACertPEM: []byte("ca"), ClientCertPEM: []byte("c"), ClientKeyPEM: []byte("k")}, labclient.Options{}); err == nil {
		t.Errorf("no lab: no error")
	}
}
