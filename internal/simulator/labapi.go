package simulator

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/pki"
)

// servingValidity is how long a simulated lab API serving certificate is valid (clamped
// to the lab CA's own expiry).
const servingValidity = 365 * 24 * time.Hour

// labEntry is one lab whose API is being served. It keeps the lab CA's PEM, not a TLS
// configuration: the operator probes a lab only until it is Ready, so the serving
// certificate is minted for each handshake (well under a millisecond: P-256) instead of
// being held, parsed, for every lab the simulator runs (about 9 KiB a lab, most of the
// simulated backend's memory at a thousand labs).
type labEntry struct {
	env, namespace      string
	vmUID               types.UID // the control-plane VM it was started for
	caCertPEM, caKeyPEM []byte
}

// newLabEntry checks that the lab's CA can sign and returns the entry serving it.
func newLabEntry(env, namespace string, vmUID types.UID, caCertPEM, caKeyPEM []byte) (*labEntry, error) {
	if _, err := pki.ParseKeyPair(caCertPEM, caKeyPEM); err != nil {
		return nil, fmt.Errorf("reading the lab CA from Secret %s: %w", lab.PKISecret, err)
	}
	return &labEntry{env: env, namespace: namespace, vmUID: vmUID,
		caCertPEM: bytes.Clone(caCertPEM), caKeyPEM: bytes.Clone(caKeyPEM)}, nil
}

// tlsConfig mints the lab API's serving certificate from the lab's CA and returns the TLS
// configuration for one connection: that certificate, and a client certificate from the
// same CA required.
func (l *labEntry) tlsConfig() (*tls.Config, error) {
	ca, err := pki.ParseKeyPair(l.caCertPEM, l.caKeyPEM)
	if err != nil {
		return nil, fmt.Errorf("reading the lab CA of %s: %w", l.env, err)
	}
	host := lab.APIServiceHost(l.env, lab.DefaultClusterDomain)
	now := time.Now()
	serving, err := ca.IssueServing("kube-apiserver", []string{host}, nil,
		now.Add(-pki.ClockSkew), now.Add(servingValidity), nil)
	if err != nil {
		return nil, fmt.Errorf("issuing the lab API serving certificate of %s: %w", l.env, err)
	}
	clientCAs := x509.NewCertPool()
	clientCAs.AddCert(ca.Cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{
			Certificate: [][]byte{serving.Cert.Raw},
			PrivateKey:  serving.Key,
			Leaf:        serving.Cert,
		}},
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  clientCAs,
		MinVersion: tls.VersionTLS12,
	}, nil
}

// labRegistry holds the labs whose API is served, by namespace and by server name, and
// the address of the one listener they share.
type labRegistry struct {
	mu          sync.RWMutex
	byNamespace map[string]*labEntry
	byHost      map[string]*labEntry // lab.APIServiceHost(env, lab.DefaultClusterDomain), already fully qualified
	addr        string               // listener address; "" while not listening
}

func (r *labRegistry) register(l *labEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byNamespace == nil {
		r.byNamespace, r.byHost = map[string]*labEntry{}, map[string]*labEntry{}
	}
	r.unregisterLocked(l.namespace)
	r.byNamespace[l.namespace] = l
	host := lab.APIServiceHost(l.env, lab.DefaultClusterDomain)
	r.byHost[host] = l
}

func (r *labRegistry) unregister(namespace string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unregisterLocked(namespace)
}

func (r *labRegistry) unregisterLocked(namespace string) {
	l, ok := r.byNamespace[namespace]
	if !ok {
		return
	}
	delete(r.byNamespace, namespace)
	host := lab.APIServiceHost(l.env, lab.DefaultClusterDomain)
	delete(r.byHost, host)
}

// registered reports whether the lab in namespace is served for the control-plane VM vmUID.
func (r *labRegistry) registered(namespace string, vmUID types.UID) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	l, ok := r.byNamespace[namespace]
	return ok && l.vmUID == vmUID
}

// serves reports whether the lab in namespace is served.
func (r *labRegistry) serves(namespace string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.byNamespace[namespace]
	return ok
}

func (r *labRegistry) lookup(host string) *labEntry {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.byHost[host]
}

func (r *labRegistry) count() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byNamespace)
}

func (r *labRegistry) listenAddr() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.addr
}

func (r *labRegistry) setAddr(addr string) {
	r.mu.Lock()
	r.addr = addr
	r.mu.Unlock()
}

// Dialer returns the dialer for labprobe.HTTPSProber: "<lab.APIServiceHost(env, lab.DefaultClusterDomain)>:6443"
// connects to the simulator's listener while that lab's API is served, and is refused, like a Service without endpoints, otherwise. The TLS server
// name then picks the lab, exactly as the prober sets it.
func (s *Simulator) Dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(address)
		if err == nil && port == portString {
			if l := s.real.lookup(host); l != nil {
				return s.dialRealLab(ctx, network, address, l)
			}
		}
		listen := s.labs.listenAddr()
		if err != nil || port != portString || listen == "" || s.labs.lookup(host) == nil {
			return nil, &net.OpError{Op: "dial", Net: network, Addr: dialAddr{network, address},
				Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", listen)
	}
}

// dialRealLab connects to the real API of l, once it runs, after bringing what the lab
// wrote up to date (the probe finds the marker as the light guest would answer it now);
// while it starts the connection is refused, as a lab's is while `kubeadm init` runs.
func (s *Simulator) dialRealLab(ctx context.Context, network, address string, l *realLab) (net.Conn, error) {
	if !l.isReady() {
		return nil, refused(network, address)
	}
	if err := s.syncRealLab(ctx, l); err != nil {
		s.log.V(1).Info("Could not bring the real lab API up to date", "labenvironment", l.env, "error", err.Error())
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", l.addr)
}

func refused(network, address string) error {
	return &net.OpError{Op: "dial", Net: network, Addr: dialAddr{network, address},
		Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
}

// dialAddr is the address a refused dial names.
type dialAddr struct{ network, addr string }

func (a dialAddr) Network() string { return a.network }
func (a dialAddr) String() string  { return a.addr }

// apiServer is the one listener serving every simulated lab API, choosing the lab by the
// TLS server name (SNI). It runs on every manager replica, leader or not.
type apiServer struct{ sim *Simulator }

// NeedLeaderElection is false: serving is harmless, and labs appear only once the
// (leader-elected) controller registers them.
func (a *apiServer) NeedLeaderElection() bool { return false }

// Start serves on an ephemeral 127.0.0.1 port until ctx ends.
func (a *apiServer) Start(ctx context.Context) error {
	s := a.sim
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("simulated lab API: %w", err)
	}
	tlsListener := tls.NewListener(ln, &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if l := s.labs.lookup(hello.ServerName); l != nil {
				return l.tlsConfig()
			}
			return nil, fmt.Errorf("no simulated lab API for server name %q", hello.ServerName)
		},
	})
	srv := &http.Server{
		Handler:           http.HandlerFunc(s.serveLabAPI),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		// Failed handshakes (a probe with the wrong CA) are expected; the prober reports them.
		ErrorLog:    log.New(io.Discard, "", 0),
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	s.labs.setAddr(ln.Addr().String())
	s.log.Info("Simulated lab API listening", "address", ln.Addr().String())
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		s.labs.setAddr("")
		_ = srv.Close()
	}()
	err = srv.Serve(tlsListener)
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// serveLabAPI answers what a lab's kube-apiserver would answer the operator: the
// bootstrap marker, or NotFound.
func (s *Simulator) serveLabAPI(w http.ResponseWriter, r *http.Request) {
	l := s.labs.lookup(r.TLS.ServerName)
	switch {
	case l == nil:
		writeStatus(w, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "the lab API server is shutting down", nil)
		return
	case r.URL.Path != labprobe.MarkerPath:
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "the server could not find the requested resource", nil)
		return
	case r.Method != http.MethodGet:
		writeStatus(w, http.StatusMethodNotAllowed, metav1.StatusReasonMethodNotAllowed,
			fmt.Sprintf("%s is not supported on the bootstrap marker", r.Method), nil)
		return
	}
	data, err := s.bootstrapMarker(r.Context(), l.env, l.namespace)
	if err != nil {
		writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error(), nil)
		return
	}
	if data == nil {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound,
			fmt.Sprintf("configmaps %q not found", lab.MarkerConfigMap),
			&metav1.StatusDetails{Name: lab.MarkerConfigMap, Kind: "configmaps"})
		return
	}
	writeJSON(w, http.StatusOK, &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: lab.MarkerConfigMap, Namespace: lab.MarkerNamespace},
		Data:       data,
	})
}

// bootstrapMarker is the data of the lab's bootstrap marker as the lab's guest would
// write it now, or nil while there is none: Failed with the message of the LabEnvironment's
// BootstrapFailureAnnotation, else Complete once every VM of the lab runs, that is once
// each VM's own VMI is Running. It reads the manager's cache, so it is what the operator
// itself sees: the VMI's phase, not the VM's status, because the VMI's is written first
// and is what wakes the operator to probe (a VM's status follows a round trip later, and
// a probe between the two would find no marker and wait a whole probe interval).
func (s *Simulator) bootstrapMarker(ctx context.Context, envName, namespace string) (map[string]string, error) {
	var env labforgev1alpha1.LabEnvironment
	switch err := s.client.Get(ctx, types.NamespacedName{Name: envName}, &env); {
	case err == nil:
		if msg, ok := env.Annotations[BootstrapFailureAnnotation]; ok {
			return map[string]string{lab.MarkerPhase: lab.MarkerPhaseFailed, lab.MarkerMessage: msg}, nil
		}
	case !apierrors.IsNotFound(err):
		return nil, err
	}
	var vms kubevirtv1.VirtualMachineList
	if err := s.client.List(ctx, &vms, client.InNamespace(namespace),
		client.MatchingLabels{labforgev1alpha1.LabelEnvironment: envName}); err != nil {
		return nil, err
	}
	if len(vms.Items) == 0 {
		return nil, nil
	}
	for i := range vms.Items {
		vm := &vms.Items[i]
		var vmi kubevirtv1.VirtualMachineInstance
		switch err := s.client.Get(ctx, client.ObjectKeyFromObject(vm), &vmi, client.UnsafeDisableDeepCopy); {
		case apierrors.IsNotFound(err):
			return nil, nil
		case err != nil:
			return nil, err
		}
		if !metav1.IsControlledBy(&vmi, vm) || !vmi.DeletionTimestamp.IsZero() || vmi.Status.Phase != kubevirtv1.Running {
			return nil, nil
		}
	}
	if s.bootstrapsHeld.Load() {
		return nil, nil
	}
	return map[string]string{lab.MarkerPhase: lab.MarkerPhaseComplete}, nil
}

func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, message string, details *metav1.StatusDetails) {
	writeJSON(w, code, &metav1.Status{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Status"},
		Status:   metav1.StatusFailure,
		Message:  message,
		Reason:   reason,
		Details:  details,
		Code:     int32(code),
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
