// Package simulator is labforge's simulated VM backend, for local runs and tests only: the
// counterpart of Cluster API's in-memory provider. No KubeVirt runtime exists here, so the
// Simulator plays both KubeVirt and the lab guest:
//
//   - as KubeVirt, it creates the VirtualMachineInstance of every VirtualMachine labelled
//     with a lab (labforgev1alpha1.LabelEnvironment) that should run, and moves it through
//     KubeVirt's real status transitions (Pending, Scheduling, Scheduled, Running) while
//     keeping the VirtualMachine's status in step (Starting, Running);
//   - as KubeVirt's virt-controller, the scheduler and the kubelet, it creates each VMI's
//     virt-launcher pod as KubeVirt renders it (launcher.go) through the API server, so
//     that LimitRange, ResourceQuota and Pod Security admission decide as on a real host;
//     a refused pod leaves the VMI Pending with KubeVirt's FailedCreate event and
//     Synchronized condition. An admitted pod is bound to one of the simulated Nodes and
//     started; the VMI's node and address come from it, and the garbage collector removes
//     it with its VMI;
//   - as the lab, once the control-plane VM runs, it serves the lab's API over real TLS
//     with a serving certificate signed by the lab's own CA (from lab.PKISecret), requires
//     a client certificate from that CA, and answers the bootstrap marker request
//     (labprobe.MarkerPath) with phase Complete once every VM of the lab runs; for the
//     first Options.RealLabAPIs labs the API is a real etcd and kube-apiserver started
//     with that CA instead (reallab.go), holding a Node per VM and what the bootstrap
//     writes;
//   - as kube-proxy (Options.NodePorts), it listens on the simulated nodes' addresses at
//     the node ports of lab Services and forwards to the guest (nodeports.go).
//
// The operator's real readiness probe (labprobe.HTTPSProber) reaches it through Dialer;
// that is the only difference from a real lab. It is never enabled in the shipped manager.
package simulator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/expectations"
	"github.com/labforge/labforge/internal/lab"
)

// ControllerName names the simulator's controller in logs and metrics.
const ControllerName = "simulator"

// BootstrapFailureAnnotation on a LabEnvironment makes its simulated lab report a failed
// bootstrap (phase Failed) with the annotation's value as the lab's message.
const BootstrapFailureAnnotation = "sim.labforge.dev/bootstrap-failure"

// Options configures a Simulator.
type Options struct {
	// BootDelay is how long a VM takes from its VMI's creation to Running. Zero (for
	// tests and benchmarks) goes straight to Running in as few API writes as possible;
	// a few seconds (for demos) spreads the phases over the delay: Scheduling after a
	// quarter, Scheduled after half, Running at the end.
	BootDelay time.Duration
	// MaxConcurrentReconciles is how many VMs are worked on at once; zero means 4.
	MaxConcurrentReconciles int
	// CPUAllocationRatio is KubeVirt's developerConfiguration cpuAllocationRatio: a VM's
	// launcher pod requests its vCPUs divided by it. Zero means KubeVirt's default, 10.
	CPUAllocationRatio int
	// RealLabAPIs is how many labs at once get a real API: an etcd and a kube-apiserver
	// started with the lab's own CA (8 to 12 s to start and about 310 MiB each, measured), in which the
	// simulator creates what the lab's bootstrap would (RBAC, the bootstrap marker, a Node
	// per VM). A lab whose control plane starts while that many run gets the light
	// simulated API, which answers the bootstrap marker only. Zero (tests and benchmarks)
	// gives every lab the light one.
	RealLabAPIs int
	// BinDir holds the etcd and kube-apiserver binaries real lab APIs run; required when
	// RealLabAPIs is set.
	BinDir string
	// NodePorts plays kube-proxy: the simulator listens on every simulated node's address
	// (Nodes) at the node ports of lab namespaces' NodePort Services and forwards to the
	// simulated guest. Off (make bench, most suites), nothing listens there.
	NodePorts bool
}

// Simulator is the simulated VM backend. Create it with New, register it with
// SetupWithManager, and give Dialer to the operator's labprobe.HTTPSProber.
type Simulator struct {
	opts      Options
	client    client.Client
	apiReader client.Reader
	log       logr.Logger

	recorder events.EventRecorder

	// pending holds the simulator's own writes until the cache shows them: without it, a
	// reconcile right after a write reads the stale cached object and writes the same
	// change again, which the write-counting benchmarks would see.
	pending *expectations.Tracker
	ips     ipam
	labs    labRegistry
	real    realLabs
	refused refusals

	// podCreates counts launcher pod creates sent to the API server, by namespace
	// (Attempts). Kept for the simulator's life: a few bytes per lab, for tests.
	podCreatesMu sync.Mutex
	podCreates   map[string]int64

	startsMu sync.Mutex
	starts   map[types.UID]time.Time // when each booting VMI was created, by this process

	// wrapClient, if set, wraps the manager's client (tests count writes with it).
	wrapClient func(client.Client) client.Client

	// bootstrapsHeld: every lab answers as one whose bootstrap is still running.
	bootstrapsHeld atomic.Bool
}

// HoldBootstraps makes every simulated lab answer the operator's probe as a lab still in
// its bootstrap (no marker yet, VMs running) until release is called, for tests that
// need a lab to stay booting for a while. Labs then report Complete at their next probe.
func (s *Simulator) HoldBootstraps() (release func()) {
	s.bootstrapsHeld.Store(true)
	return func() { s.bootstrapsHeld.Store(false) }
}

// New returns a Simulator; it does nothing until SetupWithManager and the manager start.
func New(opts Options) *Simulator {
	s := &Simulator{opts: opts, pending: expectations.NewTracker(nil, pendingTTL), starts: map[types.UID]time.Time{}}
	s.real = realLabs{limit: opts.RealLabAPIs, byNamespace: map[string]*realLab{}, byHost: map[string]*realLab{}}
	return s
}

// pendingTTL bounds how long a reconcile waits for the cache to show one of the
// simulator's own writes. The watch event normally arrives within milliseconds, but can
// lag by seconds on a loaded machine (a pool fill on two cores); the bound only matters
// if the event is lost.
const pendingTTL = 30 * time.Second

// SetupWithManager registers the simulator's controller (which follows the manager's
// leader election, like the operator's own controllers) and its lab API server (which
// runs on every replica, but answers only for labs its controller has seen running).
func (s *Simulator) SetupWithManager(mgr ctrl.Manager) error {
	s.client = mgr.GetClient()
	if s.wrapClient != nil {
		s.client = s.wrapClient(s.client)
	}
	// A lab's PKI Secret is read once per lab API started, from the manager's cache
	// (which must hold only labforge's Secrets, as the operator's does), from the API
	// server when the cache does not have it yet. Reading it from the API server every
	// time cost a thousand GETs, at the client's rate limit, each time the process
	// restarted among a thousand running labs.
	s.apiReader = mgr.GetAPIReader()
	s.log = mgr.GetLogger().WithName(ControllerName)
	s.recorder = mgr.GetEventRecorder("virtualmachine-controller")
	if err := s.addRunnables(mgr); err != nil {
		return err
	}
	return s.setupController(mgr)
}

// addRunnables adds what runs beside the VM controller: the lab API servers (simulated,
// and real ones when asked), the kube-proxy for NodePorts when asked, the nodes and the
// kubelet.
func (s *Simulator) addRunnables(mgr ctrl.Manager) error {
	if err := mgr.Add(&apiServer{sim: s}); err != nil {
		return fmt.Errorf("adding the simulated lab API server: %w", err)
	}
	if s.opts.RealLabAPIs > 0 {
		if s.opts.BinDir == "" {
			return errors.New("simulator: Options.BinDir is required with RealLabAPIs")
		}
		s.real.ctx, s.real.cancel = context.WithCancel(context.Background())
		if err := mgr.Add(&realLabRunner{sim: s}); err != nil {
			return fmt.Errorf("adding the real lab APIs: %w", err)
		}
	}
	if s.opts.NodePorts {
		if err := (&kubeProxy{sim: s}).setup(mgr); err != nil {
			return fmt.Errorf("setting up the simulated kube-proxy: %w", err)
		}
	}
	if err := mgr.Add(&nodeRegistrar{sim: s}); err != nil {
		return fmt.Errorf("adding the simulated nodes: %w", err)
	}
	return s.setupKubelet(mgr)
}

// setupController registers the VM controller: it reconciles a lab's VMs, their VMIs and
// their launcher pods.
func (s *Simulator) setupController(mgr ctrl.Manager) error {
	workers := s.opts.MaxConcurrentReconciles
	if workers <= 0 {
		workers = 4
	}
	hasLab := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[labforgev1alpha1.LabelEnvironment] != ""
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		// observe comes first: it must see every event, also those filtered out after.
		For(&kubevirtv1.VirtualMachine{}, builder.WithPredicates(s.observe(kindVM), hasLab)).
		Owns(&kubevirtv1.VirtualMachineInstance{}, builder.WithPredicates(s.observe(kindVMI))).
		// A launcher pod's VMI has its VM's name.
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []ctrl.Request {
			if key, ok := launcherKey(o); ok {
				return []ctrl.Request{{NamespacedName: key}}
			}
			return nil
		}), builder.WithPredicates(isLauncher(), s.observePods())).
		WithOptions(controller.Options{
			MaxConcurrentReconciles: workers,
			// controller-runtime v0.24.1's priority queue can deadlock on shutdown
			// (kubernetes-sigs/controller-runtime#3538, fixed by #3540), holding a manager
			// stop for its whole grace period; tests stop managers often.
			UsePriorityQueue: ptr.To(false),
		}).
		Complete(s)
}

// setupKubelet registers the simulated kubelet, which finishes the launcher pods being
// deleted.
func (s *Simulator) setupKubelet(mgr ctrl.Manager) error {
	kl := &kubelet{sim: s}
	if err := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName+"-kubelet").
		For(&corev1.Pod{}, builder.WithPredicates(isLauncher(), predicate.Funcs{
			CreateFunc: func(e event.CreateEvent) bool { return !e.Object.GetDeletionTimestamp().IsZero() },
			UpdateFunc: func(e event.UpdateEvent) bool { return !e.ObjectNew.GetDeletionTimestamp().IsZero() },
			DeleteFunc: func(e event.DeleteEvent) bool { kl.gone(e.Object); return false },
		})).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2, UsePriorityQueue: ptr.To(false)}).
		Complete(kl); err != nil {
		return fmt.Errorf("setting up the simulated kubelet: %w", err)
	}
	return nil
}

// isLauncher selects virt-launcher pods.
func isLauncher() predicate.Predicate {
	return predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetLabels()[labelKubeVirtApp] == launcherAppValue
	})
}

// observe feeds watch events to the write tracker and releases what a deleted VMI held.
func (s *Simulator) observe(kind string) predicate.Predicate {
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool { s.pending.Observe(kind, e.Object); return true },
		UpdateFunc: func(e event.UpdateEvent) bool { s.pending.Observe(kind, e.ObjectNew); return true },
		DeleteFunc: func(e event.DeleteEvent) bool {
			s.pending.Forget(kind, client.ObjectKeyFromObject(e.Object))
			if kind == kindVMI {
				s.ips.release(e.Object.GetUID())
				s.forgetStart(e.Object.GetUID())
				s.refused.forget(e.Object.GetUID())
			}
			return true
		},
		GenericFunc: func(event.GenericEvent) bool { return true },
	}
}

// Reconcile plays KubeVirt for one VirtualMachine, and the lab's API for the control
// plane. It writes only what changed, and never twice for one change: while the cache
// has not yet caught up with its own last write it waits for it instead.
func (s *Simulator) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if wait := s.cacheBehind(ctx, req.NamespacedName); wait > 0 {
		// The watch event of that write brings this VM back.
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	vm, vmi, err := s.current(ctx, req)
	if err != nil || vm == nil {
		return ctrl.Result{}, err
	}
	switch runMode(vm) {
	case modeRun:
		return s.run(ctx, vm, vmi)
	case modeStop:
		if vmi != nil {
			if err := s.stop(ctx, vmi); err != nil {
				return ctrl.Result{}, err
			}
			vmi = nil
		}
	}
	return s.settle(ctx, vm, vmi, ctrl.Result{})
}

// cacheBehind returns how long to wait for the cache to show the simulator's last writes
// to the VM, its VMI and its launcher pod, zero once it does. It comes before any cache
// read: once the cache has shown them, everything read after is at least as new.
func (s *Simulator) cacheBehind(ctx context.Context, key types.NamespacedName) time.Duration {
	for _, kind := range []string{kindVM, kindVMI, kindPod} {
		wait, expired := s.pending.Wait(kind, key)
		if expired {
			ctrl.LoggerFrom(ctx).Info("The cache did not show an earlier write in time; going on with what it shows", "kind", kind)
		}
		if wait > 0 {
			return wait
		}
	}
	return 0
}

// current reads the VM and its VMI (nil when there is none) from the cache. A nil VM
// means there is nothing to do: the VM is gone, not a lab's, being deleted, or waits for
// the VMI of an earlier incarnation to go; a control plane's lab API stops then.
func (s *Simulator) current(ctx context.Context, req ctrl.Request) (*kubevirtv1.VirtualMachine, *kubevirtv1.VirtualMachineInstance, error) {
	vm := &kubevirtv1.VirtualMachine{}
	if err := s.client.Get(ctx, req.NamespacedName, vm); err != nil {
		if apierrors.IsNotFound(err) {
			// The VMI goes with it through the garbage collector.
			if req.Name == lab.ControlPlaneVM {
				s.stopLab(req.Namespace)
			}
			return nil, nil, nil
		}
		return nil, nil, err
	}
	controlPlane := vm.Name == lab.ControlPlaneVM
	if vm.Labels[labforgev1alpha1.LabelEnvironment] == "" || !vm.DeletionTimestamp.IsZero() {
		if controlPlane {
			s.stopLab(vm.Namespace)
		}
		return nil, nil, nil
	}
	vmi := &kubevirtv1.VirtualMachineInstance{}
	switch err := s.client.Get(ctx, req.NamespacedName, vmi); {
	case apierrors.IsNotFound(err):
		return vm, nil, nil
	case err != nil:
		return nil, nil, err
	}
	if !metav1.IsControlledBy(vmi, vm) || !vmi.DeletionTimestamp.IsZero() {
		// The VMI of an earlier VM of this name, or one being stopped, on its way out;
		// its deletion brings this VM back.
		if controlPlane {
			s.stopLab(vm.Namespace)
		}
		ctrl.LoggerFrom(ctx).V(1).Info("Waiting for the previous VirtualMachineInstance to go", "vmi", vmi.UID)
		return nil, nil, nil
	}
	return vm, vmi, nil
}

// run starts a VM that should run: creates its VMI and launcher pod, and moves the VMI
// through its phases.
func (s *Simulator) run(ctx context.Context, vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance) (ctrl.Result, error) {
	if vmi == nil {
		if going, err := s.namespaceGoing(ctx, vm.Namespace); err != nil || going {
			// The lab is being torn down: its VMs go with their namespace, whose
			// deletion took the VMI first (see namespaceGoing).
			return ctrl.Result{}, err
		}
		created, err := s.createVMI(ctx, vm)
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			// The lab is being torn down: its VMs go with their namespace, whose
			// deletion took the VMI first. Retrying would only be refused again.
			ctrl.LoggerFrom(ctx).V(1).Info("Not starting a VM whose namespace is terminating")
			return ctrl.Result{}, nil
		}
		if err != nil {
			return ctrl.Result{}, err
		}
		vmi = created
	}
	pod, wait, err := s.launcherPod(ctx, vm, vmi)
	if err != nil {
		return ctrl.Result{}, err
	}
	if pod == nil {
		// Refused (reported on the VMI, tried again after a backoff) or not yet
		// in the cache: the VMI stays where it is.
		if err := s.updateVMStatus(ctx, vm, vmi); err != nil {
			return ctrl.Result{}, err
		}
		return ctrl.Result{RequeueAfter: wait}, nil
	}
	var beforeRunning func()
	if vm.Name == lab.ControlPlaneVM {
		// The lab's API listens before its VMI says Running: the operator probes it
		// as soon as it sees every VMI run, and would otherwise find nothing there
		// and wait a whole probe interval. A failure is left to settle.
		beforeRunning = func() { _ = s.ensureLab(ctx, vm.Labels[labforgev1alpha1.LabelEnvironment], vm) }
	}
	next, err := s.advanceVMI(ctx, vm, vmi, pod, beforeRunning)
	if err != nil {
		return ctrl.Result{}, err
	}
	return s.settle(ctx, vm, vmi, ctrl.Result{RequeueAfter: next})
}

// stop deletes the VMI of a VM that should not run.
func (s *Simulator) stop(ctx context.Context, vmi *kubevirtv1.VirtualMachineInstance) error {
	if err := s.client.Delete(ctx, vmi, client.Preconditions{UID: &vmi.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("stopping VirtualMachineInstance %s/%s: %w", vmi.Namespace, vmi.Name, err)
	}
	s.pending.ExpectGone(kindVMI, client.ObjectKeyFromObject(vmi))
	s.ips.release(vmi.UID)
	return nil
}

// settle writes the VM's status after its VMI (nil when there is none) and, for the
// control plane, serves the lab's API while the VMI runs. result is what the pass returns
// unless settling needs another pass.
func (s *Simulator) settle(ctx context.Context, vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance, result ctrl.Result) (ctrl.Result, error) {
	if err := s.updateVMStatus(ctx, vm, vmi); err != nil {
		return ctrl.Result{}, err
	}
	if rl := s.real.get(vm.Namespace); rl != nil {
		// This VM's kubelet registers its Node, and a lab whose VMs all run completes.
		if err := s.syncRealLab(ctx, rl); err != nil {
			return ctrl.Result{}, err
		}
	}
	if vm.Name != lab.ControlPlaneVM {
		return result, nil
	}
	if vmi == nil || vmi.Status.Phase != kubevirtv1.Running {
		s.stopLab(vm.Namespace)
		return result, nil
	}
	if err := s.ensureLab(ctx, vm.Labels[labforgev1alpha1.LabelEnvironment], vm); err != nil {
		if apierrors.IsNotFound(err) {
			ctrl.LoggerFrom(ctx).Info("Lab PKI Secret not found yet; the lab API cannot start", "secret", lab.PKISecret)
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return ctrl.Result{}, err
	}
	return result, nil
}

type mode int

const (
	modeLeave mode = iota // Manual: whatever runs keeps running, nothing starts
	modeRun
	modeStop
)

// runMode is what KubeVirt's VM controller does with vm's run strategy.
func runMode(vm *kubevirtv1.VirtualMachine) mode {
	if vm.Spec.Template == nil {
		return modeLeave
	}
	if vm.Spec.RunStrategy != nil {
		switch *vm.Spec.RunStrategy {
		case kubevirtv1.RunStrategyAlways, kubevirtv1.RunStrategyRerunOnFailure, kubevirtv1.RunStrategyOnce:
			return modeRun
		case kubevirtv1.RunStrategyHalted:
			return modeStop
		default:
			return modeLeave
		}
	}
	//nolint:staticcheck // Running is deprecated in favour of RunStrategy but still served.
	if vm.Spec.Running != nil {
		if *vm.Spec.Running {
			return modeRun
		}
		return modeStop
	}
	return modeLeave
}

// namespaceGoing says whether namespace ns is being deleted, as the cache shows it. A
// real VMI carries KubeVirt's kubevirt.io/foregroundDeleteVirtualMachine finalizer and
// outlives the namespace controller's first pass, which marks its VM deleted too, so
// virt-controller sees a VMI being deleted or a VM being deleted and starts nothing
// (pkg/virt-controller/watch/vm/vm.go, sync). The simulator's VMIs carry no finalizer and
// go at once, so it asks the namespace instead of creating a VMI or a launcher Pod that
// the API server would refuse (403, NamespaceTerminating): no write into a lab that is
// going (decision 91).
func (s *Simulator) namespaceGoing(ctx context.Context, ns string) (bool, error) {
	var namespace corev1.Namespace
	if err := s.client.Get(ctx, client.ObjectKey{Name: ns}, &namespace); err != nil {
		// Not in the cache is not going: the VM's informer may be ahead of the
		// namespace's, and nothing would wake this VM again.
		return false, client.IgnoreNotFound(err)
	}
	return !namespace.DeletionTimestamp.IsZero(), nil
}

// createVMI creates the VirtualMachineInstance of vm from its template, as KubeVirt does.
func (s *Simulator) createVMI(ctx context.Context, vm *kubevirtv1.VirtualMachine) (*kubevirtv1.VirtualMachineInstance, error) {
	vmi := &kubevirtv1.VirtualMachineInstance{
		ObjectMeta: metav1.ObjectMeta{
			Name:            vm.Name,
			Namespace:       vm.Namespace,
			Labels:          maps.Clone(vm.Spec.Template.ObjectMeta.Labels),
			Annotations:     maps.Clone(vm.Spec.Template.ObjectMeta.Annotations),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(vm, kubevirtv1.VirtualMachineGroupVersionKind)},
		},
		Spec: *vm.Spec.Template.Spec.DeepCopy(),
	}
	now := time.Now()
	if err := s.client.Create(ctx, vmi); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// Not in the cache yet (a concurrent create, or a VMI the cache does not
			// select: the operator caches only VMIs labelled as labforge's, and KubeVirt
			// copies their labels from the VM template). The backoff bounds the retries.
			return nil, fmt.Errorf("VirtualMachineInstance %s/%s exists but is not in the manager's cache "+
				"(does the VM template carry the labels the cache selects on?): %w", vm.Namespace, vm.Name, err)
		}
		return nil, fmt.Errorf("creating VirtualMachineInstance %s/%s: %w", vm.Namespace, vm.Name, err)
	}
	s.pending.Expect(kindVMI, vmi)
	if s.opts.BootDelay > 0 {
		s.startsMu.Lock()
		s.starts[vmi.UID] = now
		s.startsMu.Unlock()
	}
	ctrl.LoggerFrom(ctx).V(1).Info("Created VirtualMachineInstance", "vmi", vmi.UID)
	return vmi, nil
}

// advanceVMI moves the status of vmi, vm's VMI, to the phase its age calls for and returns
// how long until the next phase is due (zero once Running). Its node and address are
// those of pod, its running launcher pod. beforeRunning, if set, is called just before
// the write that makes the VMI Running.
func (s *Simulator) advanceVMI(ctx context.Context, vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance, pod *corev1.Pod, beforeRunning func()) (time.Duration, error) {
	if _, known := phaseIndex[vmi.Status.Phase]; !known {
		return 0, nil // Succeeded, Failed, Unknown: someone else's doing; leave it
	}
	elapsed := time.Since(s.startTime(vmi))
	target, next := phaseAt(elapsed, s.opts.BootDelay)
	if phaseIndex[vmi.Status.Phase] >= phaseIndex[target] {
		target = vmi.Status.Phase // never backwards
	}
	want := vmi.DeepCopy()
	// The interface name comes from the VM's template, which the VMI's spec copies: the
	// manager's cache keeps no VMI specs.
	setVMIStatus(&want.Status, target, pod.Status.PodIP, primaryInterface(&vm.Spec.Template.Spec), pod.Spec.NodeName, metav1.Now())
	// The pod exists: KubeVirt's sync succeeded, and it drops an earlier failure.
	removeVMICondition(&want.Status, kubevirtv1.VirtualMachineInstanceSynchronized)
	if target == kubevirtv1.Running {
		s.forgetStart(vmi.UID)
		next = 0
	}
	if statusEqual(vmi.Status, want.Status) {
		return next, nil
	}
	if target == kubevirtv1.Running && vmi.Status.Phase != kubevirtv1.Running && beforeRunning != nil {
		beforeRunning()
	}
	if err := s.client.Status().Patch(ctx, want, client.MergeFrom(vmi)); err != nil {
		return 0, fmt.Errorf("updating VirtualMachineInstance %s/%s status: %w", vmi.Namespace, vmi.Name, err)
	}
	s.pending.Expect(kindVMI, want)
	*vmi = *want
	ctrl.LoggerFrom(ctx).V(1).Info("VirtualMachineInstance phase", "phase", target)
	return next, nil
}

// updateVMStatus sets vm's status from its VMI (nil when there is none).
func (s *Simulator) updateVMStatus(ctx context.Context, vm *kubevirtv1.VirtualMachine, vmi *kubevirtv1.VirtualMachineInstance) error {
	want := vm.DeepCopy()
	setVMStatus(&want.Status, vmi, metav1.Now())
	if statusEqual(vm.Status, want.Status) {
		return nil
	}
	if err := s.client.Status().Patch(ctx, want, client.MergeFrom(vm)); err != nil {
		return fmt.Errorf("updating VirtualMachine %s/%s status: %w", vm.Namespace, vm.Name, err)
	}
	s.pending.Expect(kindVM, want)
	return nil
}

// startTime is when vmi started booting: as recorded when this process created it, else
// (after a restart) its creation time.
func (s *Simulator) startTime(vmi *kubevirtv1.VirtualMachineInstance) time.Time {
	s.startsMu.Lock()
	defer s.startsMu.Unlock()
	if t, ok := s.starts[vmi.UID]; ok {
		return t
	}
	return vmi.CreationTimestamp.Time
}

func (s *Simulator) forgetStart(uid types.UID) {
	s.startsMu.Lock()
	delete(s.starts, uid)
	s.startsMu.Unlock()
}

func (s *Simulator) listVMIs(ctx context.Context) ([]kubevirtv1.VirtualMachineInstance, error) {
	var list kubevirtv1.VirtualMachineInstanceList
	if err := s.client.List(ctx, &list); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// ensureLab starts serving the lab API of env once its control plane runs: a serving
// certificate for lab.APIServiceHost(env, lab.DefaultClusterDomain) minted from the lab's own CA.
func (s *Simulator) ensureLab(ctx context.Context, env string, vm *kubevirtv1.VirtualMachine) error {
	if s.labs.registered(vm.Namespace, vm.UID) {
		return nil
	}
	if l := s.real.get(vm.Namespace); l != nil && l.vmUID == vm.UID {
		return nil
	}
	var secret corev1.Secret
	key := types.NamespacedName{Namespace: vm.Namespace, Name: lab.PKISecret}
	// Read, not kept: newLabEntry copies the CA out of the cache's Secret.
	err := s.client.Get(ctx, key, &secret, client.UnsafeDisableDeepCopy)
	if apierrors.IsNotFound(err) {
		// Not in the cache yet: a lab that just minted its PKI.
		err = s.apiReader.Get(ctx, key, &secret)
	}
	if err != nil {
		return err
	}
	l, err := newLabEntry(env, vm.Namespace, vm.UID, secret.Data[lab.PKICACert], secret.Data[lab.PKICAKey])
	if err != nil {
		return fmt.Errorf("starting the lab API of %s: %w", env, err)
	}
	if s.opts.RealLabAPIs > 0 {
		if rl, started := s.real.reserve(env, vm.Namespace, vm.UID); started {
			s.startRealLab(rl, l.caCertPEM, l.caKeyPEM)
			ctrl.LoggerFrom(ctx).V(1).Info("Real lab API starting", "host", lab.APIServiceHost(env, lab.DefaultClusterDomain))
			return nil
		}
	}
	s.labs.register(l)
	ctrl.LoggerFrom(ctx).V(1).Info("Lab API serving", "host", lab.APIServiceHost(env, lab.DefaultClusterDomain))
	return nil
}

// stopLab stops serving the lab API of namespace, light or real (whose processes stop
// and whose state goes).
func (s *Simulator) stopLab(namespace string) {
	s.labs.unregister(namespace)
	s.real.remove(namespace)
}

// Writes tracked per kind. A launcher pod is tracked under its VMI's name.
const (
	kindVM  = "VirtualMachine"
	kindVMI = "VirtualMachineInstance"
	kindPod = "Pod"
)

// observePods feeds launcher pod events to the write tracker, under their VMI's key.
func (s *Simulator) observePods() predicate.Predicate {
	tracked := func(o client.Object) (client.Object, bool) {
		key, ok := launcherKey(o)
		if !ok {
			return nil, false
		}
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, ResourceVersion: o.GetResourceVersion()}}, true
	}
	return predicate.Funcs{
		CreateFunc: func(e event.CreateEvent) bool {
			if p, ok := tracked(e.Object); ok {
				s.pending.Observe(kindPod, p)
			}
			return true
		},
		UpdateFunc: func(e event.UpdateEvent) bool {
			if p, ok := tracked(e.ObjectNew); ok {
				s.pending.Observe(kindPod, p)
			}
			return true
		},
		DeleteFunc: func(e event.DeleteEvent) bool {
			if key, ok := launcherKey(e.Object); ok {
				s.pending.Forget(kindPod, key)
			}
			return true
		},
		GenericFunc: func(event.GenericEvent) bool { return true },
	}
}

// portString is lab.APIPort as the dialer sees it.
var portString = strconv.Itoa(lab.APIPort)
