package simulator_test

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/controlplane"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/manager"
	"github.com/labforge/labforge/internal/pki"
	"github.com/labforge/labforge/internal/simulator"
	"github.com/labforge/labforge/test/integration"
)

// One control plane for the package, started by the first test that needs it.
var (
	cpOnce sync.Once
	cp     *controlplane.ControlPlane
	cpErr  error
	k8s    client.Client
)

func TestMain(m *testing.M) {
	ctrl.SetLogger(zap.New(zap.WriteTo(os.Stderr), zap.UseDevMode(os.Getenv("SIM_DEBUG") != "")))
	code := m.Run()
	if cp != nil {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the control plane:", err)
		}
	}
	os.Exit(code)
}

func controlPlane(t *testing.T) client.Client {
	t.Helper()
	cpOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cp, cpErr = integration.StartControlPlane(ctx)
		if cpErr == nil {
			k8s, cpErr = client.New(cp.RESTConfig(), client.Options{Scheme: manager.NewScheme()})
		}
	})
	if cpErr != nil {
		t.Fatalf("starting the control plane: %v", cpErr)
	}
	return k8s
}

var managedBy = labels.SelectorFromSet(labels.Set{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue})

// simRun is one manager running a Simulator.
type simRun struct {
	sim    *simulator.Simulator
	writes *writeCounter
	prober *labprobe.HTTPSProber
}

// startSimulator runs a manager with only the simulator until the test ends.
func startSimulator(t *testing.T, opts simulator.Options) *simRun {
	t.Helper()
	controlPlane(t)
	mgr, err := ctrl.NewManager(cp.RESTConfig(), ctrl.Options{
		Scheme:                  manager.NewScheme(),
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		GracefulShutdownTimeout: ptr.To(10 * time.Second),
		Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
		// As the operator's manager: VMs and VMIs are cached only when labforge manages
		// them, so a VMI missing the label would be invisible here too.
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject: map[client.Object]cache.ByObject{
				&kubevirtv1.VirtualMachine{}:         {Label: managedBy},
				&kubevirtv1.VirtualMachineInstance{}: {Label: managedBy},
				&corev1.Pod{}:                        {Label: managedBy, Transform: manager.PodSkeleton},
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	counter := &writeCounter{}
	sim := simulator.New(opts)
	simulator.SetClientWrapper(sim, counter.wrap)
	if err := sim.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager: %v", err)
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		}
		if addr := simulator.ListenAddr(sim); addr != "" {
			t.Errorf("lab API still listening on %s after the manager stopped", addr)
		}
	})
	eventually(t, 30*time.Second, func() error {
		if simulator.ListenAddr(sim) == "" {
			return fmt.Errorf("lab API not listening")
		}
		return nil
	})
	return &simRun{sim: sim, writes: counter, prober: &labprobe.HTTPSProber{Dialer: sim.Dialer(), Timeout: 5 * time.Second}}
}

var labSeq atomic.Int64

// testLab is one lab's objects as the environment controller would create them.
type testLab struct {
	env     string
	workers int
	creds   labprobe.Credentials
}

func (l testLab) namespace() string { return lab.Namespace(l.env) }

func (l testLab) vmNames() []string {
	names := []string{lab.ControlPlaneVM}
	for i := 1; i <= l.workers; i++ {
		names = append(names, lab.WorkerVM(i))
	}
	return names
}

// createLab creates namespace lab-<env> with its PKI Secret, the LabEnvironment and the
// VMs (runStrategy Always unless halted names them).
func createLab(t *testing.T, env string, workers int, halted ...string) testLab {
	t.Helper()
	// Unique per run: -count=N reuses the control plane while old labs terminate.
	env = fmt.Sprintf("%s-%d", env, labSeq.Add(1))
	ctx := context.Background()
	l := testLab{env: env, workers: workers}
	now := time.Now()
	ca, err := pki.NewCA("kubernetes", now, 24*time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	op, err := ca.IssueClient(lab.OperatorUser, nil, now.Add(-pki.ClockSkew), now.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	opKey, err := op.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	l.creds = labprobe.Credentials{CACertPEM: ca.CertPEM(), ClientCertPEM: op.CertPEM(), ClientKeyPEM: opKey}

	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.namespace(),
			Labels: map[string]string{labforgev1alpha1.LabelEnvironment: env}}},
		&labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: env},
			Spec: labforgev1alpha1.LabEnvironmentSpec{TemplateRef: labforgev1alpha1.LocalObjectReference{Name: "kubeadm-basics"}}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: lab.PKISecret, Namespace: l.namespace()},
			Data: map[string][]byte{
				lab.PKICACert: ca.CertPEM(), lab.PKICAKey: caKey,
				lab.PKIOperatorCert: op.CertPEM(), lab.PKIOperatorKey: opKey,
			},
		},
	}
	for i, name := range l.vmNames() {
		role := lab.RoleWorker
		if i == 0 {
			role = lab.RoleControlPlane
		}
		strategy := kubevirtv1.RunStrategyAlways
		for _, h := range halted {
			if h == name {
				strategy = kubevirtv1.RunStrategyHalted
			}
		}
		objs = append(objs, testVM(env, name, role, strategy))
	}
	for _, o := range objs {
		if err := k8s.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	t.Cleanup(func() {
		_ = k8s.Delete(context.Background(), &labforgev1alpha1.LabEnvironment{ObjectMeta: metav1.ObjectMeta{Name: env}})
		_ = k8s.Delete(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: l.namespace()}})
	})
	return l
}

// testVM is a VM as labforge renders one: containerDisk, cloud-init from a Secret, bridge
// binding on the pod network.
func testVM(env, name, role string, strategy kubevirtv1.VirtualMachineRunStrategy) *kubevirtv1.VirtualMachine {
	managed := labforgev1alpha1.ManagedByValue
	vmLabels := map[string]string{labforgev1alpha1.LabelManagedBy: managed, labforgev1alpha1.LabelEnvironment: env, lab.LabelRole: role}
	tmplLabels := map[string]string{labforgev1alpha1.LabelManagedBy: managed, labforgev1alpha1.LabelEnvironment: env, lab.LabelRole: role, lab.LabelNode: name}
	return &kubevirtv1.VirtualMachine{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: lab.Namespace(env), Labels: vmLabels},
		Spec: kubevirtv1.VirtualMachineSpec{
			RunStrategy: ptr.To(strategy),
			Template: &kubevirtv1.VirtualMachineInstanceTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      tmplLabels,
					Annotations: map[string]string{"kubernetes.io/egress-bandwidth": "100M"},
				},
				Spec: kubevirtv1.VirtualMachineInstanceSpec{
					Domain: kubevirtv1.DomainSpec{
						CPU:    &kubevirtv1.CPU{Cores: 1},
						Memory: &kubevirtv1.Memory{Guest: ptr.To(resource.MustParse("1Gi"))},
						Devices: kubevirtv1.Devices{
							Disks: []kubevirtv1.Disk{
								{Name: "root", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: kubevirtv1.DiskBusVirtio}}},
								{Name: "cloudinit", DiskDevice: kubevirtv1.DiskDevice{Disk: &kubevirtv1.DiskTarget{Bus: kubevirtv1.DiskBusVirtio}}},
							},
							Interfaces: []kubevirtv1.Interface{{
								Name:                   "default",
								InterfaceBindingMethod: kubevirtv1.InterfaceBindingMethod{Bridge: &kubevirtv1.InterfaceBridge{}},
							}},
						},
					},
					Networks: []kubevirtv1.Network{{Name: "default", NetworkSource: kubevirtv1.NetworkSource{Pod: &kubevirtv1.PodNetwork{}}}},
					Volumes: []kubevirtv1.Volume{
						{Name: "root", VolumeSource: kubevirtv1.VolumeSource{ContainerDisk: &kubevirtv1.ContainerDiskSource{Image: "quay.io/containerdisks/ubuntu:24.04"}}},
						{Name: "cloudinit", VolumeSource: kubevirtv1.VolumeSource{CloudInitNoCloud: &kubevirtv1.CloudInitNoCloudSource{
							UserDataSecretRef: &corev1.LocalObjectReference{Name: lab.UserDataSecret(name)},
						}}},
					},
				},
			},
		},
	}
}

// writeCounter counts the simulator's API writes per namespace and records the status
// it wrote, in order.
type writeCounter struct {
	mu      sync.Mutex
	byNS    map[string]int
	history map[string][]string // "<kind>/<ns>/<name>" -> phases / printable statuses written
	log     map[string][]string // namespace -> every write
}

// writesIn lists the writes to namespace ns, in order.
func (c *writeCounter) writesIn(ns string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.log[ns]...)
}

func (c *writeCounter) wrap(cl client.Client) client.Client { return countingClient{cl, c} }

func (c *writeCounter) record(verb string, obj client.Object, status bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byNS == nil {
		c.byNS, c.history, c.log = map[string]int{}, map[string][]string{}, map[string][]string{}
	}
	c.byNS[obj.GetNamespace()]++
	c.log[obj.GetNamespace()] = append(c.log[obj.GetNamespace()], fmt.Sprintf("%s %T %s", verb, obj, obj.GetName()))
	if !status {
		return
	}
	switch o := obj.(type) {
	case *kubevirtv1.VirtualMachineInstance:
		k := "vmi/" + o.Namespace + "/" + o.Name
		c.history[k] = append(c.history[k], string(o.Status.Phase))
	case *kubevirtv1.VirtualMachine:
		k := "vm/" + o.Namespace + "/" + o.Name
		c.history[k] = append(c.history[k], string(o.Status.PrintableStatus))
	}
}

func (c *writeCounter) count(ns string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byNS[ns]
}

func (c *writeCounter) written(key string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.history[key]...)
}

type countingClient struct {
	client.Client
	c *writeCounter
}

func (cc countingClient) Create(ctx context.Context, obj client.Object, opts ...client.CreateOption) error {
	cc.c.record("create", obj, false)
	return cc.Client.Create(ctx, obj, opts...)
}

func (cc countingClient) Update(ctx context.Context, obj client.Object, opts ...client.UpdateOption) error {
	cc.c.record("update", obj, false)
	return cc.Client.Update(ctx, obj, opts...)
}

func (cc countingClient) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
	cc.c.record("patch", obj, false)
	return cc.Client.Patch(ctx, obj, patch, opts...)
}

func (cc countingClient) Delete(ctx context.Context, obj client.Object, opts ...client.DeleteOption) error {
	cc.c.record("delete", obj, false)
	return cc.Client.Delete(ctx, obj, opts...)
}

func (cc countingClient) DeleteAllOf(ctx context.Context, obj client.Object, opts ...client.DeleteAllOfOption) error {
	cc.c.record("deleteallof", obj, false)
	return cc.Client.DeleteAllOf(ctx, obj, opts...)
}

func (cc countingClient) Status() client.SubResourceWriter {
	return countingStatus{cc.Client.Status(), cc.c}
}

func (cc countingClient) SubResource(sub string) client.SubResourceClient {
	return countingSubResource{cc.Client.SubResource(sub), cc.c, sub}
}

type countingSubResource struct {
	client.SubResourceClient
	c    *writeCounter
	name string
}

func (cs countingSubResource) Create(ctx context.Context, obj, sub client.Object, opts ...client.SubResourceCreateOption) error {
	cs.c.record(cs.name+"-create", obj, false)
	return cs.SubResourceClient.Create(ctx, obj, sub, opts...)
}

type countingStatus struct {
	client.SubResourceWriter
	c *writeCounter
}

func (cs countingStatus) Create(ctx context.Context, obj, sub client.Object, opts ...client.SubResourceCreateOption) error {
	cs.c.record("status-create", obj, true)
	return cs.SubResourceWriter.Create(ctx, obj, sub, opts...)
}

func (cs countingStatus) Update(ctx context.Context, obj client.Object, opts ...client.SubResourceUpdateOption) error {
	cs.c.record("status-update", obj, true)
	return cs.SubResourceWriter.Update(ctx, obj, opts...)
}

func (cs countingStatus) Patch(ctx context.Context, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
	data, _ := patch.Data(obj)
	cs.c.record("status-patch "+string(data), obj, true)
	return cs.SubResourceWriter.Patch(ctx, obj, patch, opts...)
}

// eventually polls f until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
