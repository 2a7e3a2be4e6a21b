package controlplane

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	adminKubeconfigFile             = "kubeconfig"
	controllerManagerKubeconfigFile = "kube-controller-manager.kubeconfig"

	// adminUser is the administrator behind RESTConfig and KubeconfigPath.
	adminUser = "labforge-admin"
	// mastersGroup is bound to cluster-admin by the apiserver's bootstrap
	// RBAC policy.
	mastersGroup = "system:masters"
	// controllerManagerUser is the user the bootstrap RBAC policy knows as
	// kube-controller-manager.
	controllerManagerUser = "system:kube-controller-manager"

	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
)

// controllers are the kube-controller-manager controllers that run. They are
// the ones whose effects are visible without nodes: the lifecycle of
// namespaces, service accounts and their credentials, owner references,
// quotas and aggregated RBAC roles. Workload controllers are left out on
// purpose: with no scheduler or kubelet their pods would only ever be Pending.
var controllers = []string{
	"namespace-controller",
	"garbage-collector-controller",
	"resourcequota-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"clusterrole-aggregation-controller",
}

func (c *ControlPlane) startEtcd(ctx context.Context) error {
	var clientURL string
	p, err := c.launch(ctx, etcdBinary, func(int) ([]string, error) {
		ports, err := freePorts(2)
		if err != nil {
			return nil, err
		}
		clientURL = "http://" + loopback(ports[0])
		peerURL := "http://" + loopback(ports[1])
		// Plain HTTP: etcd is reachable only from this machine and only the
		// apiserver talks to it, and TLS would just slow every test down.
		return []string{
			"--name=default",
			"--data-dir=" + c.path("etcd"),
			"--listen-client-urls=" + clientURL,
			"--advertise-client-urls=" + clientURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=default=" + peerURL,
			// Durability across power loss is worthless for a throwaway
			// or development cluster; fsync dominates etcd's write latency.
			"--unsafe-no-fsync",
			"--log-level=warn",
		}, nil
	}, func(ctx context.Context) error {
		return etcdHealthy(ctx, clientURL)
	})
	if err != nil {
		return err
	}
	c.etcd, c.etcdURL = p, clientURL
	return nil
}

// startAPIServer starts kube-apiserver on port, or on a free port if port is 0.
func (c *ControlPlane) startAPIServer(ctx context.Context, port int) error {
	pki := func(name string) string { return c.path("pki", name) }
	p, err := c.launch(ctx, apiserverBinary, func(attempt int) ([]string, error) {
		if port == 0 {
			ports, err := freePorts(1)
			if err != nil {
				return nil, err
			}
			if err := c.setAPIPort(ports[0]); err != nil {
				return nil, err
			}
		} else if attempt > 1 {
			// The port of a restart is normally free again at once (Go
			// listeners set SO_REUSEADDR); give whoever took it a moment.
			time.Sleep(250 * time.Millisecond)
		}
		return append([]string{
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port=" + strconv.Itoa(c.apiPort),
			"--tls-cert-file=" + pki(servingCertFile),
			"--tls-private-key-file=" + pki(servingKeyFile),
			"--client-ca-file=" + pki(caCertFile),
			"--etcd-servers=" + c.etcdURL,
			"--authorization-mode=Node,RBAC",
			"--service-account-issuer=" + serviceAccountIssuer,
			"--service-account-key-file=" + pki(saPubFile),
			"--service-account-signing-key-file=" + pki(saKeyFile),
			"--service-cluster-ip-range=" + c.serviceCIDR,
			"--service-node-port-range=" + c.portRange,
			// The endpoint reconciler would publish 127.0.0.1 as the
			// endpoint of the "kubernetes" Service, which validation
			// rejects (loopback), logging an error every few seconds.
			// Nothing in a node-less cluster could use it anyway.
			"--endpoint-reconciler-type=none",
			"--allow-privileged=true",
			// On SIGTERM the apiserver otherwise waits for its HTTP server
			// to shut down gracefully for up to --request-timeout (60s),
			// and kube-controller-manager's open connections keep it from
			// doing so: RestartAPIServer took a minute. In this mode it
			// drains ordinary requests, answering new ones with 429 and
			// Retry-After (which client-go honors), and then gives the
			// HTTP server two seconds.
			"--shutdown-send-retry-after=true",
		}, c.extraArgs...), nil
	}, func(ctx context.Context) error {
		return c.client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	})
	if err != nil {
		return err
	}
	c.apiserver = p
	return nil
}

// setAPIPort points the admin config and client at a new apiserver port.
func (c *ControlPlane) setAPIPort(port int) error {
	c.apiPort = port
	c.admin = c.restConfig(c.adminCert)
	var err error
	c.client, err = kubernetes.NewForConfig(c.admin)
	return err
}

func (c *ControlPlane) startControllerManager(ctx context.Context) error {
	p, err := c.launch(ctx, controllerManagerBinary, func(int) ([]string, error) {
		return []string{
			"--kubeconfig=" + c.path(controllerManagerKubeconfigFile),
			"--leader-elect=false",
			// Run every controller as kube-controller-manager itself rather
			// than minting a service-account token per controller; see
			// writeKubeconfigs for the permissions this needs.
			"--use-service-account-credentials=false",
			"--controllers=" + strings.Join(controllers, ","),
			"--service-account-private-key-file=" + c.path("pki", saKeyFile),
			"--root-ca-file=" + c.path("pki", caCertFile),
			// No HTTPS endpoint: nothing here scrapes its metrics or health,
			// and without one it needs no port and no delegated authn/authz.
			"--secure-port=0",
		}, nil
	}, func(ctx context.Context) error {
		// The default ServiceAccount appears once the controllers run: the
		// readiness that matters to users, since pods need it.
		_, err := c.client.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		return err
	}
	c.controllerManager = p
	return nil
}

// launch starts the component bin and waits until ready succeeds.
//
// Free ports are picked before the child binds them, so another process can
// take one in between. When the child dies of that, launch starts it again
// with arguments from a new call to args, which receives the attempt number.
func (c *ControlPlane) launch(ctx context.Context, bin string, args func(attempt int) ([]string, error), ready func(context.Context) error) (*process, error) {
	for attempt := 1; ; attempt++ {
		argv, err := args(attempt)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", bin, err)
		}
		out, logPath, err := c.output(bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", bin, err)
		}
		p, err := startProcess(c.spawner, bin, c.binPath(bin), argv, out, logPath)
		if err != nil {
			return nil, err
		}
		c.startedMu.Lock()
		c.started = append(c.started, p)
		c.startedMu.Unlock()

		err = c.waitReady(ctx, p, ready)
		if err == nil {
			return p, nil
		}
		stopErr := p.stop(stopGrace)
		if attempt < bindAttempts && !p.running() && p.tail.contains("address already in use") {
			continue
		}
		return nil, errors.Join(err, stopErr)
	}
}

// waitReady polls ready until it succeeds, p exits, the control plane is
// being stopped, ctx ends or readyTimeout passes.
func (c *ControlPlane) waitReady(ctx context.Context, p *process, ready func(context.Context) error) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		checkCtx, cancelCheck := context.WithTimeout(ctx, checkTimeout)
		err := ready(checkCtx)
		cancelCheck()
		if err == nil && p.running() {
			return nil
		}
		select {
		case <-p.exited:
			return p.errorf("exited before becoming ready")
		case <-c.stopping:
			return p.errorf("stopped before becoming ready")
		case <-ctx.Done():
			return p.errorf("not ready after %v (%v); last check: %v", time.Since(start).Round(time.Millisecond), ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// output returns where the output of component name goes and, for errors to
// point to, the path of its log file if that is where and it will outlive
// Stop.
func (c *ControlPlane) output(name string) (io.Writer, string, error) {
	if c.sharedLog != nil {
		return &prefixWriter{prefix: "[" + name + "] ", shared: c.sharedLog}, "", nil
	}
	path := c.path("logs", name+".log")
	f, err := openLog(path)
	if c.tempState {
		path = ""
	}
	return f, path, err
}

func (c *ControlPlane) binPath(name string) string {
	return filepath.Join(c.binDir, name)
}

func (c *ControlPlane) apiURL() string {
	return "https://" + loopback(c.apiPort)
}

// restConfig returns a config for the apiserver authenticating with kp.
func (c *ControlPlane) restConfig(kp keyPair) *rest.Config {
	return &rest.Config{
		Host: c.apiURL(),
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   c.ca.certPEM,
			CertData: kp.certPEM,
			KeyData:  kp.keyPEM,
		},
		// Tests and development issue bursts of requests. The default
		// client-side limit (5 QPS) would only slow them down; the
		// apiserver protects itself with priority and fairness.
		QPS:   1000,
		Burst: 2000,
	}
}

func (c *ControlPlane) writeServingCert() error {
	ips := append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, net.IP(c.serviceIP.AsSlice())}, c.servingIPs...)
	names := append([]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, c.servingDNS...)
	kp, err := c.ca.servingCert("kube-apiserver", ips, names)
	if err != nil {
		return err
	}
	return writeFiles(map[string][]byte{
		c.path("pki", servingCertFile): kp.certPEM,
		c.path("pki", servingKeyFile):  kp.keyPEM,
	})
}

// writeKubeconfigs writes the administrator's kubeconfig and the one
// kube-controller-manager runs with; both embed their credentials.
func (c *ControlPlane) writeKubeconfigs() error {
	if err := c.writeKubeconfig(adminKubeconfigFile, adminUser, c.adminCert); err != nil {
		return err
	}
	// With --use-service-account-credentials=false every controller acts as
	// kube-controller-manager itself, but the bootstrap RBAC role of that
	// user only covers its own bookkeeping (plus list/watch): the namespace
	// controller, garbage collector and token controller would all be
	// Forbidden. In a kubeadm cluster they run as per-controller service
	// accounts instead. system:masters gives the single identity what those
	// accounts would have, without minting and refreshing a token each.
	kcm, err := c.ca.clientCert(controllerManagerUser, mastersGroup)
	if err != nil {
		return err
	}
	return c.writeKubeconfig(controllerManagerKubeconfigFile, controllerManagerUser, kcm)
}

func (c *ControlPlane) writeKubeconfig(file, user string, kp keyPair) error {
	const name = "labforge"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: c.apiURL(), CertificateAuthorityData: c.ca.certPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.certPEM, ClientKeyData: kp.keyPEM}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: user}
	cfg.CurrentContext = name
	return clientcmd.WriteToFile(*cfg, c.path(file))
}

// etcdClient talks plain HTTP to etcd. Keep-alives are off so that no idle
// connection lingers to an etcd that is gone.
var etcdClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func etcdHealthy(ctx context.Context, url string) error {
	// Until it has elected itself leader, etcd holds a health request for
	// most of a second; asking again soon after is much faster.
	ctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := etcdClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"health":"true"`) {
		return fmt.Errorf("GET /health: %s: %s", resp.Status, body)
	}
	return nil
}

// freePorts returns n distinct loopback TCP ports that were free a moment ago.
// The listeners are held until all n are picked so that none repeats.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func loopback(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}
