package simulator

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/labforge/labforge/internal/lab"
)

// nodePortRetry is how soon a node port that could not be bound (another process holds
// it: other control planes on this machine allocate from the same range) is tried again.
const nodePortRetry = 5 * time.Second

// guestReadTimeout bounds how long the simulated guest waits for a request.
const guestReadTimeout = 5 * time.Second

// kubeProxy plays kube-proxy for the NodePort Services of lab namespaces: it listens on
// every simulated node's address at each node port and forwards what arrives to the
// simulated guest (forward). A node that runs no endpoint of a Service whose
// externalTrafficPolicy is Local drops the connection, as kube-proxy does.
type kubeProxy struct {
	sim *Simulator

	mu        sync.Mutex
	ctx       context.Context // the manager's, once started
	byService map[types.NamespacedName]map[int32][]net.Listener
}

// NeedLeaderElection is false: kube-proxy runs on every node whoever leads.
func (p *kubeProxy) NeedLeaderElection() bool { return false }

// Start holds the manager's context for the connections, and closes every listener when
// the manager stops.
func (p *kubeProxy) Start(ctx context.Context) error {
	p.mu.Lock()
	p.ctx = ctx
	p.mu.Unlock()
	<-ctx.Done()
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, ports := range p.byService {
		for _, lns := range ports {
			closeAll(lns)
		}
		delete(p.byService, key)
	}
	return nil
}

func (p *kubeProxy) setup(mgr ctrl.Manager) error {
	p.byService = map[types.NamespacedName]map[int32][]net.Listener{}
	if err := mgr.Add(p); err != nil {
		return err
	}
	inLab := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return strings.HasPrefix(o.GetNamespace(), lab.NamespacePrefix)
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName+"-kube-proxy").
		For(&corev1.Service{}, builder.WithPredicates(inLab)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1, UsePriorityQueue: ptr.To(false), NeedLeaderElection: ptr.To(false)}).
		Complete(p)
}

// Reconcile listens on the node ports the Service has and closes those it no longer has.
func (p *kubeProxy) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	want := map[int32]bool{}
	var svc corev1.Service
	if err := p.sim.client.Get(ctx, req.NamespacedName, &svc); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, err
	} else if err == nil && svc.DeletionTimestamp.IsZero() &&
		(svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer) {
		for _, port := range svc.Spec.Ports {
			if port.NodePort != 0 && port.Protocol != corev1.ProtocolUDP && port.Protocol != corev1.ProtocolSCTP {
				want[port.NodePort] = true
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx == nil || p.ctx.Err() != nil {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	have := p.byService[req.NamespacedName]
	if have == nil {
		have = map[int32][]net.Listener{}
	}
	for port, lns := range have {
		if !want[port] {
			closeAll(lns)
			delete(have, port)
		}
	}
	var result ctrl.Result
	for port := range want {
		if _, ok := have[port]; ok {
			continue
		}
		lns, err := p.listen(req.NamespacedName, port)
		if err != nil {
			ctrl.LoggerFrom(ctx).Info("Could not listen on a simulated node port; trying again", "nodePort", port, "error", err.Error())
			result.RequeueAfter = nodePortRetry
			continue
		}
		have[port] = lns
	}
	if len(have) == 0 {
		delete(p.byService, req.NamespacedName)
	} else {
		p.byService[req.NamespacedName] = have
	}
	return result, nil
}

// listen listens at port on every simulated node, or on none.
func (p *kubeProxy) listen(key types.NamespacedName, port int32) ([]net.Listener, error) {
	var lns []net.Listener
	for _, n := range Nodes {
		ln, err := net.Listen("tcp", net.JoinHostPort(n.InternalIP, strconv.Itoa(int(port))))
		if err != nil {
			closeAll(lns)
			return nil, err
		}
		lns = append(lns, ln)
		go p.accept(ln, key, port, n)
	}
	return lns, nil
}

func (p *kubeProxy) accept(ln net.Listener, key types.NamespacedName, port int32, node SimNode) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			return // closed
		}
		go p.forward(conn, key, port, node)
	}
}

func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		_ = ln.Close()
	}
}

// forward hands conn, which arrived at nodePort on node for the Service key, to the
// simulated guest: the lab's API (real or light) for the API port, the guest's answer
// for a port a Service of the lab's own exposes, a reset for anything else (SSH too:
// no simulated guest runs sshd).
func (p *kubeProxy) forward(conn net.Conn, key types.NamespacedName, nodePort int32, node SimNode) {
	p.mu.Lock()
	ctx := p.ctx
	p.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, guestReadTimeout)
	defer cancel()
	var svc corev1.Service
	if err := p.sim.client.Get(ctx, key, &svc); err != nil {
		reset(conn)
		return
	}
	var port *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].NodePort == nodePort {
			port = &svc.Spec.Ports[i]
		}
	}
	if port == nil || !p.servesOn(ctx, &svc, node) {
		reset(conn)
		return
	}
	target := port.TargetPort.IntValue()
	if target == 0 {
		target = int(port.Port)
	}
	env := strings.TrimPrefix(key.Namespace, lab.NamespacePrefix)
	switch target {
	case lab.APIPort:
		upstream := p.sim.labAPIAddress(ctx, key.Namespace)
		if upstream == "" {
			reset(conn)
			return
		}
		cancel()
		pipe(conn, upstream)
	case lab.SSHPort:
		reset(conn)
	default:
		p.sim.answerGuest(ctx, conn, env, key.Namespace, int32(target))
	}
}

// servesOn says whether node answers for svc: any node, unless the Service's
// externalTrafficPolicy is Local, which keeps the nodes that run one of its endpoints.
func (p *kubeProxy) servesOn(ctx context.Context, svc *corev1.Service, node SimNode) bool {
	if svc.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
		return true
	}
	if len(svc.Spec.Selector) == 0 {
		return false
	}
	var pods corev1.PodList
	if err := p.sim.client.List(ctx, &pods, client.InNamespace(svc.Namespace),
		client.MatchingLabelsSelector{Selector: labels.SelectorFromSet(svc.Spec.Selector)}); err != nil {
		return false
	}
	for _, pod := range pods.Items {
		if pod.Spec.NodeName == node.Name && pod.Status.Phase == corev1.PodRunning && pod.DeletionTimestamp.IsZero() {
			return true
		}
	}
	return false
}

// labAPIAddress is where the lab of namespace serves its API now: its real API server,
// or the light listener (which picks the lab by the TLS server name the student's
// kubeconfig sets); "" while it serves none.
func (s *Simulator) labAPIAddress(ctx context.Context, namespace string) string {
	if l := s.real.get(namespace); l != nil {
		if !l.isReady() {
			return ""
		}
		if err := s.syncRealLab(ctx, l); err != nil {
			s.log.V(1).Info("Could not bring the real lab API up to date", "labenvironment", l.env, "error", err.Error())
		}
		return l.addr
	}
	if !s.labs.serves(namespace) {
		return ""
	}
	return s.labs.listenAddr()
}

// answerGuest is the simulated guest behind a port of a lab node that is the node port of
// one of the lab's own Services (read through its real API): one HTTP answer, 200 with
// that Service's namespace/name. Without a real API, or without such a Service, the
// connection is reset.
func (s *Simulator) answerGuest(ctx context.Context, conn net.Conn, env, namespace string, port int32) {
	l := s.real.get(namespace)
	if l == nil || !l.isReady() {
		reset(conn)
		return
	}
	var svcs corev1.ServiceList
	if err := l.client.List(ctx, &svcs); err != nil {
		s.log.V(1).Info("Could not read the lab's Services", "labenvironment", env, "error", err.Error())
		reset(conn)
		return
	}
	name := ""
	for _, svc := range svcs.Items {
		for _, p := range svc.Spec.Ports {
			if p.NodePort == port && p.Protocol != corev1.ProtocolUDP && p.Protocol != corev1.ProtocolSCTP {
				name = svc.Namespace + "/" + svc.Name
			}
		}
	}
	if name == "" {
		reset(conn)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(guestReadTimeout))
	req, err := http.ReadRequest(bufio.NewReader(conn))
	if err != nil {
		return
	}
	_ = req.Body.Close()
	body := "service " + name + "\n"
	resp := &http.Response{
		StatusCode: http.StatusOK, ProtoMajor: 1, ProtoMinor: 1, Request: req, Close: true,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}},
		ContentLength: int64(len(body)), Body: io.NopCloser(strings.NewReader(body)),
	}
	_ = resp.Write(conn)
}

// reset closes conn with a TCP reset: nothing listens behind this port.
func reset(conn net.Conn) {
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0)
	}
	_ = conn.Close()
}

// pipe copies between conn and a new connection to upstream until both sides are done.
func pipe(conn net.Conn, upstream string) {
	up, err := net.DialTimeout("tcp", upstream, guestReadTimeout)
	if err != nil {
		reset(conn)
		return
	}
	var wg sync.WaitGroup
	wg.Add(2)
	half := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		if tcp, ok := dst.(*net.TCPConn); ok && (err == nil || errors.Is(err, syscall.ECONNRESET)) {
			_ = tcp.CloseWrite()
		} else {
			_ = dst.Close()
		}
	}
	go half(up, conn)
	go half(conn, up)
	wg.Wait()
	_ = conn.Close()
	_ = up.Close()
}
