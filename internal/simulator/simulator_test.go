package simulator_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/internal/simulator"
)

const wait = 30 * time.Second

// vmRunning checks that the VM and its VMI show what KubeVirt shows for a running VM.
func vmRunning(ctx context.Context, l testLab, name string) error {
	key := types.NamespacedName{Namespace: l.namespace(), Name: name}
	var vm kubevirtv1.VirtualMachine
	if err := k8s.Get(ctx, key, &vm); err != nil {
		return err
	}
	var vmi kubevirtv1.VirtualMachineInstance
	if err := k8s.Get(ctx, key, &vmi); err != nil {
		return err
	}
	if vmi.Status.Phase != kubevirtv1.Running {
		return fmt.Errorf("VMI %s phase %q", name, vmi.Status.Phase)
	}
	if vm.Status.PrintableStatus != kubevirtv1.VirtualMachineStatusRunning || !vm.Status.Ready || !vm.Status.Created {
		return fmt.Errorf("VM %s status %+v", name, vm.Status)
	}
	return nil
}

func vmiOf(t *testing.T, l testLab, name string) *kubevirtv1.VirtualMachineInstance {
	t.Helper()
	var vmi kubevirtv1.VirtualMachineInstance
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: l.namespace(), Name: name}, &vmi); err != nil {
		t.Fatal(err)
	}
	return &vmi
}

// launcherPodOf is vmi's one launcher pod, checked for what KubeVirt gives it: its VMI as
// controlling owner, KubeVirt's labels, the memory request of KubeVirt's arithmetic, a
// simulated node, Running with an address.
func launcherPodOf(t *testing.T, l testLab, vmi *kubevirtv1.VirtualMachineInstance) *corev1.Pod {
	t.Helper()
	var pods corev1.PodList
	if err := k8s.List(context.Background(), &pods, client.InNamespace(l.namespace()),
		client.MatchingLabels{kubevirtv1.CreatedByLabel: string(vmi.UID)}); err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 {
		t.Fatalf("VMI %s has %d launcher pods, want 1", vmi.Name, len(pods.Items))
	}
	pod := &pods.Items[0]
	if !metav1.IsControlledBy(pod, vmi) || !strings.HasPrefix(pod.Name, "virt-launcher-"+vmi.Name+"-") {
		t.Errorf("pod %s of VMI %s: owners %+v", pod.Name, vmi.Name, pod.OwnerReferences)
	}
	if pod.Labels["kubevirt.io"] != "virt-launcher" || pod.Labels["vm.kubevirt.io/name"] != vmi.Name {
		t.Errorf("pod %s labels %v", pod.Name, pod.Labels)
	}
	spec := vmi.Spec
	if got, want := pod.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory], render.LauncherMemoryRequest(&spec); got.Cmp(want) != 0 {
		t.Errorf("pod %s compute memory request %s, want %s", pod.Name, got.String(), want.String())
	}
	if _, ok := pod.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory]; ok {
		t.Errorf("pod %s has a memory limit KubeVirt would not set: %v", pod.Name, pod.Spec.Containers[0].Resources.Limits)
	}
	found := false
	for _, n := range simulator.Nodes {
		found = found || n.Name == pod.Spec.NodeName
	}
	if !found || pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP == "" {
		t.Errorf("pod %s on node %q, phase %s, IP %q", pod.Name, pod.Spec.NodeName, pod.Status.Phase, pod.Status.PodIP)
	}
	return pod
}

func vmOf(t *testing.T, l testLab, name string) *kubevirtv1.VirtualMachine {
	t.Helper()
	var vm kubevirtv1.VirtualMachine
	if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: l.namespace(), Name: name}, &vm); err != nil {
		t.Fatal(err)
	}
	return &vm
}

func probeUntil(t *testing.T, p labprobe.Prober, l testLab, want labprobe.Result) {
	t.Helper()
	eventually(t, wait, func() error {
		got, err := p.Probe(context.Background(), l.env, l.creds)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("probe = %+v, want %+v", got, want)
		}
		return nil
	})
}

func setAnnotation(t *testing.T, obj client.Object, key string, value *string) {
	t.Helper()
	ctx := context.Background()
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		t.Fatal(err)
	}
	before := obj.DeepCopyObject().(client.Object)
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	if value == nil {
		delete(ann, key)
	} else {
		ann[key] = *value
	}
	obj.SetAnnotations(ann)
	if err := k8s.Patch(ctx, obj, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

func isRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

// TestLab boots a two-node lab with BootDelay 0 and checks everything the operator relies
// on: VMIs and VM status as KubeVirt writes them, the fewest writes, the real probe.
func TestLab(t *testing.T) {
	ctx := context.Background()
	run := startSimulator(t, simulator.Options{})
	start := time.Now()
	l := createLab(t, "x", 1)

	eventually(t, wait, func() error {
		for _, name := range l.vmNames() {
			if err := vmRunning(ctx, l, name); err != nil {
				return err
			}
		}
		return nil
	})
	probeUntil(t, run.prober, l, labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseComplete})
	t.Logf("lab x Running and Complete %s after its objects were created", time.Since(start).Round(time.Millisecond))

	ips := map[string]string{}
	for _, name := range l.vmNames() {
		vm, vmi := vmOf(t, l, name), vmiOf(t, l, name)
		if !metav1.IsControlledBy(vmi, vm) {
			t.Errorf("VMI %s is not controlled by its VM: %+v", name, vmi.OwnerReferences)
		}
		if ref := metav1.GetControllerOf(vmi); ref == nil || !ptr.Deref(ref.BlockOwnerDeletion, false) {
			t.Errorf("VMI %s owner reference does not block owner deletion: %+v", name, ref)
		}
		if got, want := vmi.Labels, vm.Spec.Template.ObjectMeta.Labels; !mapsEqual(got, want) {
			t.Errorf("VMI %s labels %v, want the template's %v", name, got, want)
		}
		if vmi.Annotations["kubernetes.io/egress-bandwidth"] != "100M" {
			t.Errorf("VMI %s lost the template annotations: %v", name, vmi.Annotations)
		}
		if vmi.Spec.Domain.Devices.Interfaces[0].Bridge == nil {
			t.Errorf("VMI %s spec not copied from the template", name)
		}
		st := vmi.Status
		pod := launcherPodOf(t, l, vmi)
		if st.NodeName == "" || st.NodeName != pod.Spec.NodeName {
			t.Errorf("VMI %s nodeName %q, its launcher pod runs on %q", name, st.NodeName, pod.Spec.NodeName)
		}
		if len(st.Interfaces) == 1 && st.Interfaces[0].IP != pod.Status.PodIP {
			t.Errorf("VMI %s address %s, its launcher pod's %s", name, st.Interfaces[0].IP, pod.Status.PodIP)
		}
		var phases []kubevirtv1.VirtualMachineInstancePhase
		for _, p := range st.PhaseTransitionTimestamps {
			phases = append(phases, p.Phase)
		}
		if !slices.Equal(phases, simulator.BootPhases) {
			t.Errorf("VMI %s phase transitions %v, want %v", name, phases, simulator.BootPhases)
		}
		for _, c := range []kubevirtv1.VirtualMachineInstanceConditionType{kubevirtv1.VirtualMachineInstanceReady, kubevirtv1.VirtualMachineInstanceAgentConnected,
			kubevirtv1.VirtualMachineInstanceAccessCredentialsSynchronized, "PodScheduled"} {
			if !vmiCondition(st.Conditions, c, corev1.ConditionTrue) {
				t.Errorf("VMI %s condition %s not True: %+v", name, c, st.Conditions)
			}
		}
		if len(st.Interfaces) != 1 || st.Interfaces[0].Name != "default" || !strings.HasPrefix(st.Interfaces[0].IP, "10.250.") ||
			!slices.Equal(st.Interfaces[0].IPs, []string{st.Interfaces[0].IP}) || st.Interfaces[0].MAC == "" {
			t.Errorf("VMI %s interfaces %+v", name, st.Interfaces)
		} else if other, dup := ips[st.Interfaces[0].IP]; dup {
			t.Errorf("VMIs %s and %s share IP %s", name, other, st.Interfaces[0].IP)
		} else {
			ips[st.Interfaces[0].IP] = name
		}
		if st.GuestOSInfo.ID == "" || st.GuestOSInfo.KernelRelease == "" {
			t.Errorf("VMI %s guestOSInfo %+v", name, st.GuestOSInfo)
		}
		if c := vmCondition(vm.Status.Conditions); c == nil || c.Status != corev1.ConditionTrue {
			t.Errorf("VM %s Ready condition %+v", name, c)
		}
	}

	// Writes: per VM, create the VMI, create its launcher pod, bind it, the pod's status,
	// the VMI's status, the VM's status.
	writes := run.writes.count(l.namespace())
	if want := 6 * len(l.vmNames()); writes != want {
		t.Errorf("%d API writes to reach Running, want %d", writes, want)
	}
	t.Logf("API writes to reach Running (BootDelay 0, %d VMs): %d", len(l.vmNames()), writes)

	// Idle: probes, unrelated changes and re-reconciles write nothing.
	for range 5 {
		if _, err := run.prober.Probe(ctx, l.env, l.creds); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range l.vmNames() {
		setAnnotation(t, vmOf(t, l, name), "example.com/touched", ptr.To("yes"))
	}
	time.Sleep(500 * time.Millisecond)
	if n := run.writes.count(l.namespace()); n != writes {
		t.Errorf("idle lab: %d writes after touching its VMs, want %d", n, writes)
	}

	t.Run("bootstrap failure annotation", func(t *testing.T) {
		env := &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: l.env}}
		setAnnotation(t, env, simulator.BootstrapFailureAnnotation, ptr.To("kubeadm init failed:\n\x1b[31mtimed out\x1b[0m waiting for etcd"))
		probeUntil(t, run.prober, l, labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseFailed,
			Message: "kubeadm init failed: [31mtimed out[0m waiting for etcd"})
		setAnnotation(t, env, simulator.BootstrapFailureAnnotation, nil)
		probeUntil(t, run.prober, l, labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseComplete})
	})

	t.Run("other CA rejected", func(t *testing.T) {
		other := createLab(t, "x-other", 0)
		probeUntil(t, run.prober, other, labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseComplete})
		// Lab x probed with lab x-other's credentials: its server certificate is not
		// from that CA, and it does not accept that client certificate.
		got, err := run.prober.Probe(ctx, l.env, other.creds)
		if err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Errorf("probe with another lab's CA = %+v, %v; want an unknown-authority error", got, err)
		}
		// The simulator requires a client certificate from the lab's own CA: the right
		// CA to verify the server but another lab's client certificate fails.
		mixed := labprobe.Credentials{CACertPEM: l.creds.CACertPEM, ClientCertPEM: other.creds.ClientCertPEM, ClientKeyPEM: other.creds.ClientKeyPEM}
		if got, err := run.prober.Probe(ctx, l.env, mixed); err == nil {
			t.Errorf("probe with another lab's client certificate = %+v, want an error", got)
		}
	})

	t.Run("unknown lab refused", func(t *testing.T) {
		_, err := run.prober.Probe(ctx, "nope", l.creds)
		if !isRefused(err) {
			t.Errorf("probe of a lab that does not exist: %v, want connection refused", err)
		}
		dial := run.sim.Dialer()
		if _, err := dial(ctx, "tcp", net.JoinHostPort(lab.APIServiceHost(l.env, lab.DefaultClusterDomain), "22")); !isRefused(err) {
			t.Errorf("dial of port 22: %v, want connection refused", err)
		}
		if c, err := dial(ctx, "tcp", net.JoinHostPort(lab.APIServiceHost(l.env, lab.DefaultClusterDomain), "6443")); err != nil {
			t.Errorf("dial of the fully qualified name: %v", err)
		} else {
			_ = c.Close()
		}
	})

	t.Run("manager restart writes nothing", func(t *testing.T) {
		again := startSimulator(t, simulator.Options{})
		probeUntil(t, again.prober, l, labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseComplete})
		time.Sleep(300 * time.Millisecond)
		if n := again.writes.count(l.namespace()); n != 0 {
			t.Errorf("a new simulator made %d writes to a running lab", n)
		}
	})

	t.Run("deleting the VMs stops the lab API", func(t *testing.T) {
		for _, name := range l.vmNames() {
			if err := k8s.Delete(ctx, vmOf(t, l, name)); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, wait, func() error {
			if _, err := run.prober.Probe(ctx, l.env, l.creds); !isRefused(err) {
				return fmt.Errorf("probe after deleting the VMs: %v, want connection refused", err)
			}
			return nil
		})
		// The garbage collector (kube-controller-manager) takes the VMIs.
		eventually(t, wait, func() error {
			var vmis kubevirtv1.VirtualMachineInstanceList
			if err := k8s.List(ctx, &vmis, client.InNamespace(l.namespace())); err != nil {
				return err
			}
			if len(vmis.Items) > 0 {
				return fmt.Errorf("%d VMIs left", len(vmis.Items))
			}
			return nil
		})
	})
}

// TestHaltedWorker: a lab answers NotFound (still bootstrapping) until every VM runs, and
// a VM halted again loses its VMI.
func TestHaltedWorker(t *testing.T) {
	ctx := context.Background()
	run := startSimulator(t, simulator.Options{})
	l := createLab(t, "halted", 1, lab.WorkerVM(1))
	worker := lab.WorkerVM(1)

	eventually(t, wait, func() error { return vmRunning(ctx, l, lab.ControlPlaneVM) })
	eventually(t, wait, func() error {
		vm := vmOf(t, l, worker)
		if vm.Status.PrintableStatus != kubevirtv1.VirtualMachineStatusStopped || vm.Status.Created || vm.Status.Ready {
			return fmt.Errorf("halted VM status %+v", vm.Status)
		}
		return nil
	})
	probeUntil(t, run.prober, l, labprobe.Result{Reachable: true})
	var vmi kubevirtv1.VirtualMachineInstance
	if err := k8s.Get(ctx, types.NamespacedName{Namespace: l.namespace(), Name: worker}, &vmi); !apierrors.IsNotFound(err) {
		t.Fatalf("halted VM has a VMI (%v)", err)
	}

	setRunStrategy(t, l, worker, kubevirtv1.RunStrategyAlways)
	probeUntil(t, run.prober, l, labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseComplete})
	// The lab answers once the VMIs run; the VM's status follows in the same pass.
	eventually(t, wait, func() error { return vmRunning(ctx, l, worker) })

	setRunStrategy(t, l, worker, kubevirtv1.RunStrategyHalted)
	eventually(t, wait, func() error {
		err := k8s.Get(ctx, types.NamespacedName{Namespace: l.namespace(), Name: worker}, &vmi)
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("VMI of the halted VM still there (%v)", err)
		}
		if vm := vmOf(t, l, worker); vm.Status.PrintableStatus != kubevirtv1.VirtualMachineStatusStopped {
			return fmt.Errorf("halted VM status %q", vm.Status.PrintableStatus)
		}
		return nil
	})
	probeUntil(t, run.prober, l, labprobe.Result{Reachable: true})

	// Halting the control plane takes the lab API away.
	setRunStrategy(t, l, lab.ControlPlaneVM, kubevirtv1.RunStrategyHalted)
	eventually(t, wait, func() error {
		if _, err := run.prober.Probe(ctx, l.env, l.creds); !isRefused(err) {
			return fmt.Errorf("probe with the control plane halted: %v", err)
		}
		return nil
	})
}

func setRunStrategy(t *testing.T, l testLab, name string, s kubevirtv1.VirtualMachineRunStrategy) {
	t.Helper()
	vm := vmOf(t, l, name)
	before := vm.DeepCopy()
	vm.Spec.RunStrategy = ptr.To(s)
	if err := k8s.Patch(context.Background(), vm, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

// TestBootDelay: with a boot delay the VMIs go through every phase, spread over it.
func TestBootDelay(t *testing.T) {
	ctx := context.Background()
	const delay = 1200 * time.Millisecond
	run := startSimulator(t, simulator.Options{BootDelay: delay})
	start := time.Now()
	l := createLab(t, "slow", 1)

	eventually(t, wait, func() error {
		var vmi kubevirtv1.VirtualMachineInstance
		return k8s.Get(ctx, types.NamespacedName{Namespace: l.namespace(), Name: lab.ControlPlaneVM}, &vmi)
	})
	if got, err := run.prober.Probe(ctx, l.env, l.creds); err == nil && got.Phase != "" {
		t.Errorf("lab answered %+v while booting", got)
	}
	probeUntil(t, run.prober, l, labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseComplete})
	if took := time.Since(start); took < delay {
		t.Errorf("lab Complete after %s, before the boot delay %s", took, delay)
	} else {
		t.Logf("lab Complete %s after creation with BootDelay %s", took.Round(time.Millisecond), delay)
	}

	for _, name := range l.vmNames() {
		if got, want := run.writes.written("vmi/"+l.namespace()+"/"+name), []string{"Pending", "Scheduling", "Scheduled", "Running"}; !slices.Equal(got, want) {
			t.Errorf("VMI %s status writes %v, want %v", name, got, want)
		}
		if got, want := run.writes.written("vm/"+l.namespace()+"/"+name), []string{"Starting", "Running"}; !slices.Equal(got, want) {
			t.Errorf("VM %s status writes %v, want %v", name, got, want)
		}
		ts := vmiOf(t, l, name).Status.PhaseTransitionTimestamps
		if len(ts) != 4 {
			t.Errorf("VMI %s phase transitions %+v", name, ts)
		}
	}
	if n, want := run.writes.count(l.namespace()), 10*len(l.vmNames()); n != want {
		t.Errorf("%d writes with a boot delay, want %d", n, want)
	}
	if n := simulator.PendingWrites(run.sim); n > 0 {
		// Entries for the last writes are cleared by their watch events.
		eventually(t, wait, func() error {
			if n := simulator.PendingWrites(run.sim); n > 0 {
				return fmt.Errorf("%d writes never observed", n)
			}
			return nil
		})
	}
}

// TestManyLabs boots labs at once, as a pool fill does, and probes them all.
func TestManyLabs(t *testing.T) {
	if testing.Short() {
		t.Skip("creates many labs")
	}
	const n = 50
	run := startSimulator(t, simulator.Options{})
	labs := make([]testLab, n)
	for i := range labs {
		labs[i] = createLab(t, fmt.Sprintf("many-%d", i), 2)
	}
	start := time.Now()
	for _, l := range labs {
		probeUntil(t, run.prober, l, labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseComplete})
	}
	t.Logf("%d labs of 3 VMs Complete %s after the last was created", n, time.Since(start).Round(time.Millisecond))
	total := 0
	for _, l := range labs {
		total += run.writes.count(l.namespace())
	}
	if want := n * 3 * 6; total != want {
		t.Errorf("%d writes for %d labs, want %d", total, n, want)
		for _, l := range labs {
			if w := run.writes.writesIn(l.namespace()); len(w) != 18 {
				t.Logf("%s: %q", l.namespace(), w)
			}
		}
	}
	if got := simulator.ServedLabs(run.sim); got < n {
		t.Errorf("%d lab APIs served, want at least %d", got, n)
	}
}

func vmiCondition(cs []kubevirtv1.VirtualMachineInstanceCondition, t kubevirtv1.VirtualMachineInstanceConditionType, s corev1.ConditionStatus) bool {
	for _, c := range cs {
		if c.Type == t {
			return c.Status == s
		}
	}
	return false
}

func vmCondition(cs []kubevirtv1.VirtualMachineCondition) *kubevirtv1.VirtualMachineCondition {
	for i := range cs {
		if cs[i].Type == kubevirtv1.VirtualMachineReady {
			return &cs[i]
		}
	}
	return nil
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestLabAPIListensWhenRunning: the operator probes a lab the moment it sees the lab's
// VMIs Running, so the lab's API must answer by then; a probe refused there waited a
// whole probe interval. The test probes once, as soon as its own watch shows the control
// plane's VMI Running.
func TestLabAPIListensWhenRunning(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	run := startSimulator(t, simulator.Options{})
	watcher, err := client.NewWithWatch(cp.RESTConfig(), client.Options{Scheme: k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	var vmis kubevirtv1.VirtualMachineInstanceList
	// Opened before the lab exists: its name is known only once createLab returns.
	w, err := watcher.Watch(ctx, &vmis, client.MatchingFields{"metadata.name": lab.ControlPlaneVM})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	l := createLab(t, "listens", 0)
	for {
		select {
		case <-ctx.Done():
			t.Fatal("the control plane's VMI never showed Running")
		case ev := <-w.ResultChan():
			vmi, ok := ev.Object.(*kubevirtv1.VirtualMachineInstance)
			if !ok || vmi.Namespace != l.namespace() || vmi.Status.Phase != kubevirtv1.Running {
				continue
			}
			got, err := run.prober.Probe(ctx, l.env, l.creds)
			if err != nil || !got.Reachable {
				t.Fatalf("probe as the VMI shows Running = %+v, %v; want the lab API answering", got, err)
			}
			return
		}
	}
}

// A lab whose real API cannot start (here: no binaries) gets the light guest, once, rather
// than never answering or starting again on every pass.
func TestRealLabAPIFallsBackToTheLightGuest(t *testing.T) {
	run := startSimulator(t, simulator.Options{RealLabAPIs: 1, BinDir: t.TempDir()})
	l := createLab(t, "fallback", 0)
	probeUntil(t, run.prober, l, labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseComplete})
	if pids := run.sim.RealLabPIDs(l.namespace()); pids != nil {
		t.Errorf("RealLabPIDs = %v, want none", pids)
	}
}

// TestRegisterNodesWritesOnce: a restart finds its Nodes and writes nothing; it used to
// create each again and be refused (409), three writes per restart among running labs.
func TestRegisterNodesWritesOnce(t *testing.T) {
	ctx := t.Context()
	k := controlPlane(t)
	if err := simulator.RegisterNodes(ctx, k); err != nil {
		t.Fatal(err)
	}
	counting := &countingCreates{Client: k}
	if err := simulator.RegisterNodes(ctx, counting); err != nil {
		t.Fatal(err)
	}
	if counting.creates != 0 {
		t.Errorf("registering nodes that exist made %d creates, want 0", counting.creates)
	}
	for _, n := range simulator.Nodes {
		if err := k.Get(ctx, client.ObjectKey{Name: n.Name}, &corev1.Node{}); err != nil {
			t.Errorf("node %s: %v", n.Name, err)
		}
	}
}

// countingCreates counts the creates it passes on to the real client.
type countingCreates struct {
	client.Client
	creates int
}

func (c *countingCreates) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	c.creates++
	return c.Client.Create(ctx, obj, opts...)
}
