package simulator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/internal/render/cloudinit"
)

// bootstrapFieldManager is the field manager the lab's bootstrap script applies its
// objects with (internal/render/cloudinit/assets/bootstrap.sh).
const bootstrapFieldManager = "labforge-bootstrap"

// clusterAdminsGroup is the group `kubeadm init` (v1.29 and later) binds to cluster-admin
// with the ClusterRoleBinding of the same name; kubeadm's admin.conf user is in it, and so
// is a student's client certificate (labclaim.StudentGroup).
const clusterAdminsGroup = "kubeadm:cluster-admins"

// realLab is one lab whose API is a real etcd and kube-apiserver started with the lab's
// CA. Its fields after ready is closed are read-only; syncMu serialises what is written
// into the lab.
type realLab struct {
	env, namespace string
	vmUID          types.UID // the control-plane VM it was started for
	ready          chan struct{}

	cp     *controlplane.ControlPlane
	addr   string // the API server's 127.0.0.1:port
	client client.Client

	syncMu    sync.Mutex
	seeded    bool              // RBAC applied
	marker    map[string]string // the marker's data as last written
	nodes     map[string]string // Node name to InternalIP, as created
	startedAt time.Time
}

// isReady says whether the lab's API runs and may be dialled.
func (l *realLab) isReady() bool {
	select {
	case <-l.ready:
		return l.cp != nil
	default:
		return false
	}
}

// realLabs are the labs with a real API, at most limit at once.
type realLabs struct {
	mu          sync.Mutex
	limit       int
	byNamespace map[string]*realLab
	byHost      map[string]*realLab
	// failed holds the control-plane VMs whose real API could not start: their labs keep
	// the light guest instead of starting one again on every pass.
	failed map[types.UID]bool
	// ctx ends when the manager stops; every lab's processes stop with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (r *realLabs) lookup(host string) *realLab {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byHost[host]
}

func (r *realLabs) get(namespace string) *realLab {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byNamespace[namespace]
}

// reserve records a real lab for the control-plane VM vmUID of env, unless one runs for
// it already (returned, false) or the limit is reached (nil, false).
func (r *realLabs) reserve(env, namespace string, vmUID types.UID) (*realLab, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if l, ok := r.byNamespace[namespace]; ok && l.vmUID == vmUID {
		return l, false
	}
	if r.ctx == nil || r.ctx.Err() != nil || r.failed[vmUID] {
		return nil, false
	}
	if _, ok := r.byNamespace[namespace]; !ok && len(r.byNamespace) >= r.limit {
		return nil, false
	}
	r.removeLocked(namespace)
	l := &realLab{env: env, namespace: namespace, vmUID: vmUID, ready: make(chan struct{}),
		nodes: map[string]string{}, startedAt: time.Now()}
	r.byNamespace[namespace] = l
	r.byHost[lab.APIServiceHost(env, lab.DefaultClusterDomain)] = l
	return l, true
}

// remove forgets the real lab of namespace and stops its processes in the background.
func (r *realLabs) remove(namespace string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removeLocked(namespace)
}

func (r *realLabs) removeLocked(namespace string) {
	l, ok := r.byNamespace[namespace]
	if !ok {
		return
	}
	delete(r.byNamespace, namespace)
	delete(r.byHost, lab.APIServiceHost(l.env, lab.DefaultClusterDomain))
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		<-l.ready // a start in progress ends first (it sees the lab gone and stops)
		if l.cp != nil {
			_ = l.cp.Stop()
		}
	}()
}

// fail forgets l, whose start failed, if it is still its namespace's, and keeps its VM
// from starting another; it says whether l was current.
func (r *realLabs) fail(l *realLab) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed == nil {
		r.failed = map[types.UID]bool{}
	}
	r.failed[l.vmUID] = true
	if r.byNamespace[l.namespace] != l {
		return false
	}
	delete(r.byNamespace, l.namespace)
	delete(r.byHost, lab.APIServiceHost(l.env, lab.DefaultClusterDomain))
	return true
}

// current says whether l is still the real lab of its namespace.
func (r *realLabs) current(l *realLab) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byNamespace[l.namespace] == l
}

// realLabRunner stops every real lab when the manager stops.
type realLabRunner struct{ sim *Simulator }

func (a *realLabRunner) NeedLeaderElection() bool { return false }

func (a *realLabRunner) Start(ctx context.Context) error {
	r := &a.sim.real
	<-ctx.Done()
	r.mu.Lock()
	r.cancel()
	for ns := range r.byNamespace {
		r.removeLocked(ns)
	}
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// RealLabPIDs returns the process ids of the etcd and kube-apiserver of the lab in
// namespace, by those names, while its real API runs (tests check that they end).
func (s *Simulator) RealLabPIDs(namespace string) map[string]int {
	l := s.real.get(namespace)
	if l == nil || !l.isReady() {
		return nil
	}
	return l.cp.PIDs()
}

// startRealLab starts the real API of env with the lab CA in the background, then
// creates in it what the lab's bootstrap would. Until then the lab's API refuses
// connections, as a lab's does while `kubeadm init` runs.
func (s *Simulator) startRealLab(l *realLab, caCertPEM, caKeyPEM []byte) {
	r := &s.real
	log := s.log.WithValues("labenvironment", l.env)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		host := lab.APIServiceHost(l.env, lab.DefaultClusterDomain)
		// The lab's own certificate names its Service and loopback, never an address
		// students dial (docs/labs.md): their kubeconfig sets tls-server-name.
		cp, err := controlplane.Start(r.ctx, controlplane.Options{
			BinDir:                s.opts.BinDir,
			CA:                    &controlplane.CA{CertPEM: caCertPEM, KeyPEM: caKeyPEM},
			ServingDNSNames:       []string{host},
			SkipControllerManager: true,
		})
		var c client.Client
		if err == nil {
			c, err = client.New(cp.RESTConfig(), client.Options{})
		}
		if err == nil && !r.current(l) {
			err = errors.New("the lab went while its API started")
		}
		if err != nil {
			if cp != nil {
				_ = cp.Stop()
			}
			close(l.ready)
			if r.fail(l) && r.ctx.Err() == nil {
				log.Error(err, "Could not start the real lab API; the lab gets the light simulated API")
				if light, err := newLabEntry(l.env, l.namespace, l.vmUID, caCertPEM, caKeyPEM); err == nil {
					s.labs.register(light)
				}
			}
			return
		}
		l.cp, l.client = cp, c
		l.addr = net.JoinHostPort("127.0.0.1", portOf(cp.RESTConfig().Host))
		close(l.ready)
		log.Info("Real lab API started", "host", host, "address", l.addr, "took", time.Since(l.startedAt).Round(time.Millisecond))
		if err := s.syncRealLab(r.ctx, l); err != nil {
			log.Error(err, "Could not write the lab's bootstrap objects yet")
		}
	}()
}

func portOf(url string) string {
	_, port, _ := net.SplitHostPort(url[len("https://"):])
	return port
}

// syncRealLab writes into the real API of l what the lab's own bootstrap and kubelets
// would have written by now: a Node per running VM, then the operator's RBAC and the
// cluster-admins binding, then the bootstrap marker as bootstrapMarker decides. Each
// only when it changed since the last write.
func (s *Simulator) syncRealLab(ctx context.Context, l *realLab) error {
	if !l.isReady() {
		return nil
	}
	l.syncMu.Lock()
	defer l.syncMu.Unlock()
	if err := s.syncNodes(ctx, l); err != nil {
		return err
	}
	if !l.seeded {
		manifest, err := s.operatorRBAC(ctx, l.namespace)
		if err != nil {
			return err
		}
		if err := seedRBAC(ctx, l.client, manifest); err != nil {
			return fmt.Errorf("creating the bootstrap's RBAC in lab %s: %w", l.env, err)
		}
		l.seeded = true
	}
	data, err := s.bootstrapMarker(ctx, l.env, l.namespace)
	if err != nil || data == nil || maps.Equal(data, l.marker) {
		return err
	}
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: lab.MarkerConfigMap, Namespace: lab.MarkerNamespace},
		Data:       data,
	}
	if err := applyObject(ctx, l.client, cm); err != nil {
		return fmt.Errorf("writing the bootstrap marker of lab %s: %w", l.env, err)
	}
	l.marker = maps.Clone(data)
	return nil
}

// syncNodes registers a Node for every VM of the lab whose VMI runs, as its kubelet
// would once it joined: named after the VM, Ready, its InternalIP the VMI's address.
func (s *Simulator) syncNodes(ctx context.Context, l *realLab) error {
	var vms kubevirtv1.VirtualMachineList
	if err := s.client.List(ctx, &vms, client.InNamespace(l.namespace),
		client.MatchingLabels{labforgev1alpha1.LabelEnvironment: l.env}); err != nil {
		return err
	}
	version := s.labVersion(ctx, l.env)
	for i := range vms.Items {
		vm := &vms.Items[i]
		var vmi kubevirtv1.VirtualMachineInstance
		if err := s.client.Get(ctx, client.ObjectKeyFromObject(vm), &vmi, client.UnsafeDisableDeepCopy); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return err
		}
		if vmi.Status.Phase != kubevirtv1.Running || len(vmi.Status.Interfaces) == 0 || vmi.Status.Interfaces[0].IP == "" {
			continue
		}
		ip := vmi.Status.Interfaces[0].IP
		if l.nodes[vm.Name] == ip {
			continue
		}
		err := l.client.Create(ctx, labNode(vm.Name, ip, version, vm.Name == lab.ControlPlaneVM))
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("registering Node %s in lab %s: %w", vm.Name, l.env, err)
		}
		l.nodes[vm.Name] = ip
	}
	return nil
}

// labVersion is the Kubernetes version the lab's template installs ("" when its template
// is gone), what the lab's kubelets report.
func (s *Simulator) labVersion(ctx context.Context, env string) string {
	var e labforgev1alpha1.LabEnvironment
	if err := s.client.Get(ctx, types.NamespacedName{Name: env}, &e); err != nil {
		return ""
	}
	var t labforgev1alpha1.LabTemplate
	if err := s.client.Get(ctx, types.NamespacedName{Name: e.Spec.TemplateRef.Name}, &t); err != nil {
		return ""
	}
	return t.Spec.KubernetesVersion
}

// labNode renders the Node a lab VM's kubelet registers.
func labNode(name, ip, kubeletVersion string, controlPlane bool) *corev1.Node {
	labels := map[string]string{
		corev1.LabelHostname:   name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
	}
	var taints []corev1.Taint
	if controlPlane {
		// What kubeadm init puts on its node.
		labels["node-role.kubernetes.io/control-plane"] = ""
		taints = []corev1.Taint{{Key: "node-role.kubernetes.io/control-plane", Effect: corev1.TaintEffectNoSchedule}}
	}
	now := metav1.Now()
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
		Spec:       corev1.NodeSpec{Taints: taints},
		Status: corev1.NodeStatus{
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: ip},
				{Type: corev1.NodeHostName, Address: name},
			},
			Conditions: []corev1.NodeCondition{{
				Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				Message: "simulated by labforge", LastHeartbeatTime: now, LastTransitionTime: now,
			}},
			NodeInfo: corev1.NodeSystemInfo{
				OperatingSystem: "linux", Architecture: "amd64", KubeletVersion: kubeletVersion,
				OSImage: "labforge simulated guest", ContainerRuntimeVersion: "containerd://2.1.0",
			},
		},
	}
}

// seedRBAC creates what `kubeadm init` and the lab's bootstrap grant: cluster-admin to
// the kubeadm:cluster-admins group (the students' certificates), and the operator's
// access, from the very objects cloud-init hands the bootstrap.
func seedRBAC(ctx context.Context, c client.Client, manifest []byte) error {
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: rbacv1.SchemeGroupVersion.String(), Kind: "ClusterRoleBinding"},
		ObjectMeta: metav1.ObjectMeta{Name: clusterAdminsGroup},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: clusterAdminsGroup}},
	}
	if err := applyObject(ctx, c, binding); err != nil {
		return err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if len(u.Object) == 0 {
			continue
		}
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
			client.FieldOwner(bootstrapFieldManager), client.ForceOwnership); err != nil {
			return fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
}

// applyObject applies obj, a typed object with its TypeMeta set, as the bootstrap does.
func applyObject(ctx context.Context, c client.Client, obj client.Object) error {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return err
	}
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(&unstructured.Unstructured{Object: m}),
		client.FieldOwner(bootstrapFieldManager), client.ForceOwnership)
}

// operatorRBAC returns the operator's RBAC as cloud-init renders it for this lab's
// bootstrap (cloudinit.OperatorRBAC of the lab's template snapshot, the spec its
// user-data was rendered from; the cache keeps no user-data): the marker's reader and,
// for a template with solution checks, the checks' reader.
func (s *Simulator) operatorRBAC(ctx context.Context, namespace string) ([]byte, error) {
	var cm corev1.ConfigMap
	key := types.NamespacedName{Namespace: namespace, Name: render.TemplateSnapshot}
	if err := s.client.Get(ctx, key, &cm); err != nil {
		return nil, fmt.Errorf("reading the lab's template snapshot %s: %w", key, err)
	}
	spec, _, err := render.TemplateFromSnapshot(&cm)
	if err != nil {
		return nil, err
	}
	return cloudinit.OperatorRBAC(spec.Checks)
}
