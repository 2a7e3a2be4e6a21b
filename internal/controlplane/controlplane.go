// Package controlplane runs a real, local Kubernetes control plane — etcd,
// kube-apiserver and kube-controller-manager — from binaries in a directory.
//
// It backs the integration test suites and `labforge dev`. Unlike envtest it
// also runs kube-controller-manager, so namespaces really finish deleting and
// the garbage collector really follows ownerReferences, and the apiserver
// runs with RBAC on, so authorization is exercised the way a cluster would.
// There are no nodes, kubelets or scheduler: pods are never run.
//
// Everything listens on 127.0.0.1 on ports picked at start, so any number of
// control planes can run side by side. Children are tied to the calling
// process: they are killed if it dies, even without Stop.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Defaults for the corresponding Options fields.
const (
	DefaultNodePortRange = "30000-32767"
	DefaultServiceCIDR   = "10.96.0.0/16"
)

// Binary names looked up in Options.BinDir.
const (
	etcdBinary              = "etcd"
	apiserverBinary         = "kube-apiserver"
	controllerManagerBinary = "kube-controller-manager"
)

const (
	// readyTimeout bounds the wait for one component to become ready, on
	// top of the caller's context: a wedged child must not hang a test run.
	// It is generous because CI machines running several suites at once are
	// slow to start an apiserver.
	readyTimeout = 90 * time.Second
	// pollInterval is how often readiness is checked. Startup time matters,
	// and the checks are cheap loopback requests.
	pollInterval = 50 * time.Millisecond
	// checkTimeout bounds a single readiness probe.
	checkTimeout = 2 * time.Second
	// bindAttempts is how often a component is started again when a port
	// picked for it was taken before it could bind it.
	bindAttempts = 5
)

// Options configures a control plane. Only BinDir is required.
type Options struct {
	// BinDir holds the etcd, kube-apiserver and kube-controller-manager
	// binaries.
	BinDir string

	// StateDir receives certificates and keys (pki/), the etcd data
	// directory (etcd/), kubeconfig files and, unless Log is set, one log
	// file per component (logs/). If empty, a temporary directory is used
	// and removed by Stop. A non-empty StateDir is kept, and a later Start
	// with it reuses the stored objects, CA and service-account key.
	StateDir string

	// CRDPaths lists YAML or JSON files, or directories of them (not
	// searched recursively), holding CustomResourceDefinitions; a file may
	// hold several documents and documents of other kinds are skipped.
	// Start applies them and waits until each is Established and served by
	// discovery, before kube-controller-manager starts so that its garbage
	// collector watches the custom resources from the beginning.
	//
	// Note that the apiserver deliberately delays each create of a custom
	// resource by two seconds while its CRD is less than two seconds
	// Established, so the first create right after Start can be that slow.
	CRDPaths []string

	// NodePortRange is the apiserver's --service-node-port-range, such as
	// "30000-32767" (DefaultNodePortRange when empty).
	NodePortRange string

	// ServiceCIDR is the apiserver's --service-cluster-ip-range, a single
	// prefix (DefaultServiceCIDR when empty).
	ServiceCIDR string

	// Log receives the output of all child processes, each line prefixed
	// with the component's name. If nil, each component writes to
	// StateDir/logs/<component>.log instead.
	Log io.Writer

	// APIServerArgs are more kube-apiserver flags, after the control plane's
	// own (where a flag is given twice, the later wins): an audit log for a
	// benchmark's cost analysis, say.
	APIServerArgs []string

	// CA, when set, is the certificate authority the control plane uses
	// instead of one of its own, as `kubeadm init` uses a CA placed in
	// /etc/kubernetes/pki: it signs the serving certificate and every client
	// certificate Start and UserConfig issue, and the apiserver verifies
	// client certificates against it. Its key is never written to StateDir.
	CA *CA

	// ServingDNSNames and ServingIPs are names and addresses the
	// apiserver's serving certificate carries besides loopback and the
	// in-cluster names of the "kubernetes" Service: the names clients of a
	// lab dial or expect (kubeadm's apiServer.certSANs).
	ServingDNSNames []string
	ServingIPs      []net.IP

	// SkipControllerManager starts etcd and kube-apiserver only. Without
	// kube-controller-manager namespaces never finish deleting, owner
	// references are not followed and no service-account token is minted:
	// enough for an API that stores and serves objects, at two processes'
	// cost instead of three.
	SkipControllerManager bool
}

// CA is a certificate authority in PEM: a CERTIFICATE block, and an ECDSA
// private key as "EC PRIVATE KEY" (SEC 1, what kubeadm writes) or PKCS#8
// "PRIVATE KEY".
type CA struct {
	CertPEM, KeyPEM []byte
}

// ControlPlane is a running control plane started by Start. Its methods are
// safe for concurrent use.
type ControlPlane struct {
	binDir      string
	stateDir    string
	tempState   bool // stateDir was created by Start and is removed by Stop
	serviceCIDR string
	serviceIP   netip.Addr // the "kubernetes" Service's ClusterIP
	portRange   string
	extraArgs   []string      // Options.APIServerArgs
	sharedLog   *lockedWriter // nil when logging to files
	externalCA  *CA           // Options.CA
	servingDNS  []string      // Options.ServingDNSNames
	servingIPs  []net.IP      // Options.ServingIPs
	skipKCM     bool          // Options.SkipControllerManager

	ca        *authority
	adminCert keyPair
	spawner   *spawner

	etcdURL string
	apiPort int
	admin   *rest.Config
	client  kubernetes.Interface // admin client, for readiness checks

	// mu serializes RestartAPIServer and Stop, which both replace or end
	// the processes below.
	mu                                 sync.Mutex
	etcd, apiserver, controllerManager *process

	startedMu sync.Mutex
	started   []*process // every child ever started, for tests

	// stopping is closed when Stop begins, to cut short any wait in
	// progress so that Stop does not queue behind a slow restart.
	stopping chan struct{}
	stopOnce sync.Once
	stopErr  error
}

// Start starts etcd, kube-apiserver and kube-controller-manager, installs the
// CRDs in opts.CRDPaths and returns once the control plane is usable. ctx
// bounds only the startup; the control plane runs until Stop. On failure
// everything started so far is stopped, and the error names the component
// that failed and quotes the end of its output.
func Start(ctx context.Context, opts Options) (*ControlPlane, error) {
	crds, err := readAllCRDs(opts.CRDPaths)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	c, err := newControlPlane(opts)
	if err != nil {
		return nil, fmt.Errorf("controlplane: %w", err)
	}
	if err := c.start(ctx, crds); err != nil {
		return nil, errors.Join(fmt.Errorf("controlplane: %w", err), c.Stop())
	}
	return c, nil
}

// newControlPlane validates opts and prepares the state directory, without
// starting anything.
func newControlPlane(opts Options) (*ControlPlane, error) {
	binDir, err := checkBinaries(opts)
	if err != nil {
		return nil, err
	}
	c := &ControlPlane{
		binDir:      binDir,
		serviceCIDR: opts.ServiceCIDR,
		portRange:   opts.NodePortRange,
		extraArgs:   slices.Clone(opts.APIServerArgs),
		externalCA:  opts.CA,
		servingDNS:  slices.Clone(opts.ServingDNSNames),
		servingIPs:  slices.Clone(opts.ServingIPs),
		skipKCM:     opts.SkipControllerManager,
		stopping:    make(chan struct{}),
	}
	if c.serviceCIDR == "" {
		c.serviceCIDR = DefaultServiceCIDR
	}
	if c.portRange == "" {
		c.portRange = DefaultNodePortRange
	}
	prefix, err := netip.ParsePrefix(c.serviceCIDR)
	if err != nil {
		return nil, fmt.Errorf("Options.ServiceCIDR: %w", err)
	}
	// The apiserver gives the "kubernetes" Service the first address of the
	// range; the serving certificate must cover it for in-cluster clients.
	c.serviceIP = prefix.Masked().Addr().Next()
	if opts.Log != nil {
		c.sharedLog = &lockedWriter{w: opts.Log}
	}
	if err := c.prepareStateDir(opts.StateDir); err != nil {
		return nil, err
	}
	c.spawner = newSpawner()
	return c, nil
}

// checkBinaries returns opts.BinDir made absolute, once it holds every binary the control
// plane runs. All are checked up front: failing on the last one would first start, and
// then have to stop, the others.
func checkBinaries(opts Options) (string, error) {
	if opts.BinDir == "" {
		return "", errors.New("Options.BinDir is required")
	}
	binDir, err := filepath.Abs(opts.BinDir)
	if err != nil {
		return "", err
	}
	binaries := []string{etcdBinary, apiserverBinary, controllerManagerBinary}
	if opts.SkipControllerManager {
		binaries = binaries[:2]
	}
	for _, name := range binaries {
		if err := checkExecutable(filepath.Join(binDir, name)); err != nil {
			return "", fmt.Errorf("%s binary: %w (BinDir must hold %s, %s and %s)",
				name, err, etcdBinary, apiserverBinary, controllerManagerBinary)
		}
	}
	return binDir, nil
}

// prepareStateDir makes the state directory and its pki, etcd and logs directories: stateDir,
// or a temporary one removed on Stop when stateDir is empty. A temporary one is removed again
// when its directories cannot be made.
func (c *ControlPlane) prepareStateDir(stateDir string) error {
	var err error
	c.stateDir = stateDir
	if c.stateDir == "" {
		if c.stateDir, err = os.MkdirTemp("", "labforge-controlplane-"); err != nil {
			return err
		}
		c.tempState = true
	} else if c.stateDir, err = filepath.Abs(c.stateDir); err != nil {
		return err
	}
	for _, dir := range []string{c.path("pki"), c.path("etcd"), c.path("logs")} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			c.removeTempState()
			return err
		}
	}
	return nil
}

func (c *ControlPlane) start(ctx context.Context, crds []crdDoc) error {
	var err error
	if c.externalCA != nil {
		c.ca, err = useAuthority(c.path("pki"), c.externalCA)
	} else {
		c.ca, err = loadOrCreateAuthority(c.path("pki"))
	}
	if err != nil {
		return err
	}
	if c.adminCert, err = c.ca.clientCert(adminUser, mastersGroup); err != nil {
		return err
	}
	if err := ensureServiceAccountKey(c.path("pki")); err != nil {
		return err
	}
	if err := c.writeServingCert(); err != nil {
		return err
	}
	if err := c.startEtcd(ctx); err != nil {
		return err
	}
	if err := c.startAPIServer(ctx, 0); err != nil {
		return err
	}
	if err := c.writeKubeconfigs(); err != nil {
		return err
	}
	if err := installCRDs(ctx, c.admin, crds); err != nil {
		return err
	}
	if c.skipKCM {
		return nil
	}
	return c.startControllerManager(ctx)
}

// RESTConfig returns a config for an administrator: a client certificate in
// the system:masters group, which RBAC lets do anything. Each call returns a
// new copy that the caller may modify.
func (c *ControlPlane) RESTConfig() *rest.Config {
	return rest.CopyConfig(c.admin)
}

// KubeconfigPath returns the path of a kubeconfig file for the administrator,
// for kubectl and other tools.
func (c *ControlPlane) KubeconfigPath() string {
	return c.path(adminKubeconfigFile)
}

// UserConfig returns a config that authenticates as user name, member of
// groups, with a fresh client certificate. The user has no permissions
// beyond those RBAC grants every authenticated user until a test binds some.
func (c *ControlPlane) UserConfig(name string, groups ...string) (*rest.Config, error) {
	if name == "" {
		return nil, errors.New("controlplane: UserConfig needs a user name")
	}
	kp, err := c.ca.clientCert(name, groups...)
	if err != nil {
		return nil, fmt.Errorf("controlplane: client certificate for %q: %w", name, err)
	}
	return c.restConfig(kp), nil
}

// RestartAPIServer stops kube-apiserver and starts it again on the same port
// and against the same etcd, as a fault to test clients against. It returns
// once the new apiserver is ready. Configs returned earlier stay valid.
func (c *ControlPlane) RestartAPIServer(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isStopping() {
		return errors.New("controlplane: RestartAPIServer: control plane is stopped")
	}
	if err := c.apiserver.stop(stopGrace); err != nil {
		return fmt.Errorf("controlplane: %w", err)
	}
	if err := c.startAPIServer(ctx, c.apiPort); err != nil {
		return fmt.Errorf("controlplane: restarting: %w", err)
	}
	return nil
}

// Stop stops kube-controller-manager, kube-apiserver and etcd, in that order,
// each with SIGTERM and, after a grace period, SIGKILL to its process group,
// and removes a temporary StateDir. It may be called any number of times,
// concurrently and from a signal handler's goroutine; later calls wait for
// the first and return its result.
func (c *ControlPlane) Stop() error {
	c.stopOnce.Do(func() {
		close(c.stopping)
		c.mu.Lock()
		defer c.mu.Unlock()
		var errs []error
		for _, p := range []*process{c.controllerManager, c.apiserver, c.etcd} {
			if p != nil {
				errs = append(errs, p.stop(stopGrace))
			}
		}
		// Ending the spawner's thread also fires Pdeathsig, a last resort
		// for a child that survived the signals above.
		c.spawner.close()
		errs = append(errs, c.removeTempState())
		if err := errors.Join(errs...); err != nil {
			c.stopErr = fmt.Errorf("controlplane: stop: %w", err)
		}
	})
	return c.stopErr
}

func (c *ControlPlane) isStopping() bool {
	select {
	case <-c.stopping:
		return true
	default:
		return false
	}
}

func (c *ControlPlane) removeTempState() error {
	if !c.tempState {
		return nil
	}
	return os.RemoveAll(c.stateDir)
}

// path returns the absolute path of name inside the state directory.
func (c *ControlPlane) path(name ...string) string {
	return filepath.Join(append([]string{c.stateDir}, name...)...)
}

// PIDs returns the process ids of the running etcd, kube-apiserver and
// kube-controller-manager, by those names: a benchmark reads their CPU time
// from /proc. A component not started (or already stopped by Stop) is left out.
func (c *ControlPlane) PIDs() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for name, p := range map[string]*process{"etcd": c.etcd, "kube-apiserver": c.apiserver, "kube-controller-manager": c.controllerManager} {
		if p != nil && p.running() {
			out[name] = p.pid()
		}
	}
	return out
}

// pids returns the process ids of the children started for c, including
// ones already stopped; tests use it to prove none survives Stop.
func (c *ControlPlane) pids() []int {
	c.startedMu.Lock()
	defer c.startedMu.Unlock()
	var pids []int
	for _, p := range c.started {
		pids = append(pids, p.pid())
	}
	return pids
}

func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}
