package simulator

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	kubevirtv1 "kubevirt.io/api/core/v1"

	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/pki"
)

func TestPhaseAt(t *testing.T) {
	const d = 4 * time.Second
	tests := []struct {
		elapsed, delay time.Duration
		phase          kubevirtv1.VirtualMachineInstancePhase
		next           time.Duration
	}{
		{0, 0, kubevirtv1.Running, 0},
		{time.Hour, 0, kubevirtv1.Running, 0},
		{0, d, kubevirtv1.Pending, time.Second},
		{999 * time.Millisecond, d, kubevirtv1.Pending, time.Millisecond},
		{time.Second, d, kubevirtv1.Scheduling, time.Second},
		{2 * time.Second, d, kubevirtv1.Scheduled, 2 * time.Second},
		{3 * time.Second, d, kubevirtv1.Scheduled, time.Second},
		{d, d, kubevirtv1.Running, 0},
		{-time.Second, d, kubevirtv1.Pending, 2 * time.Second}, // clock skew after a restart
	}
	for _, tt := range tests {
		phase, next := phaseAt(tt.elapsed, tt.delay)
		if phase != tt.phase || next != tt.next {
			t.Errorf("phaseAt(%s, %s) = %s, %s; want %s, %s", tt.elapsed, tt.delay, phase, next, tt.phase, tt.next)
		}
	}
}

func TestSetVMIStatusIdempotent(t *testing.T) {
	t0 := metav1.NewTime(time.Unix(1000, 0))
	t1 := metav1.NewTime(time.Unix(2000, 0))
	var st kubevirtv1.VirtualMachineInstanceStatus
	for _, p := range bootPhases {
		setVMIStatus(&st, p, "10.250.0.7", "default", "sim-node-2", t0)
		again := *st.DeepCopy()
		setVMIStatus(&again, p, "10.250.0.7", "default", "sim-node-2", t1)
		if !equality.Semantic.DeepEqual(st, again) {
			t.Errorf("second setVMIStatus(%s) changed the status:\n%+v\n%+v", p, st, again)
		}
	}
	if st.Phase != kubevirtv1.Running || st.NodeName != "sim-node-2" || len(st.PhaseTransitionTimestamps) != 4 {
		t.Errorf("final status %+v", st)
	}
	if got := st.Interfaces[0]; got.IP != "10.250.0.7" || got.MAC != "02:00:0a:fa:00:07" || got.Name != "default" {
		t.Errorf("interface %+v", got)
	}
	// Straight to Running records every phase it passed.
	var direct kubevirtv1.VirtualMachineInstanceStatus
	setVMIStatus(&direct, kubevirtv1.Running, "10.250.0.8", "default", "sim-node-1", t0)
	if len(direct.PhaseTransitionTimestamps) != 4 || direct.PhaseTransitionTimestamps[3].Phase != kubevirtv1.Running {
		t.Errorf("direct Running transitions %+v", direct.PhaseTransitionTimestamps)
	}

	var vm kubevirtv1.VirtualMachineStatus
	vmi := &kubevirtv1.VirtualMachineInstance{Status: st}
	setVMStatus(&vm, vmi, t0)
	again := *vm.DeepCopy()
	setVMStatus(&again, vmi, t1)
	if !equality.Semantic.DeepEqual(vm, again) || !vm.Ready || vm.PrintableStatus != kubevirtv1.VirtualMachineStatusRunning {
		t.Errorf("VM status %+v / %+v", vm, again)
	}
	setVMStatus(&again, nil, t1)
	if again.Created || again.Ready || again.PrintableStatus != kubevirtv1.VirtualMachineStatusStopped || !again.Conditions[0].LastTransitionTime.Equal(&t1) {
		t.Errorf("stopped VM status %+v", again)
	}
}

func TestRunMode(t *testing.T) {
	tmpl := &kubevirtv1.VirtualMachineInstanceTemplateSpec{}
	tests := []struct {
		strategy *kubevirtv1.VirtualMachineRunStrategy
		running  *bool
		tmpl     *kubevirtv1.VirtualMachineInstanceTemplateSpec
		want     mode
	}{
		{ptr.To(kubevirtv1.RunStrategyAlways), nil, tmpl, modeRun},
		{ptr.To(kubevirtv1.RunStrategyRerunOnFailure), nil, tmpl, modeRun},
		{ptr.To(kubevirtv1.RunStrategyHalted), nil, tmpl, modeStop},
		{ptr.To(kubevirtv1.RunStrategyManual), nil, tmpl, modeLeave},
		{nil, ptr.To(true), tmpl, modeRun},
		{nil, ptr.To(false), tmpl, modeStop},
		{nil, nil, tmpl, modeLeave},
		{ptr.To(kubevirtv1.RunStrategyAlways), nil, nil, modeLeave},
	}
	for i, tt := range tests {
		vm := &kubevirtv1.VirtualMachine{Spec: kubevirtv1.VirtualMachineSpec{RunStrategy: tt.strategy, Running: tt.running, Template: tt.tmpl}}
		if got := runMode(vm); got != tt.want {
			t.Errorf("case %d: runMode = %v, want %v", i, got, tt.want)
		}
	}
}

func TestIPAM(t *testing.T) {
	ctx := context.Background()
	vmi := func(uid, ip string) *kubevirtv1.VirtualMachineInstance {
		v := &kubevirtv1.VirtualMachineInstance{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid)}}
		if ip != "" {
			v.Status.Interfaces = []kubevirtv1.VirtualMachineInstanceNetworkInterface{{IP: ip}}
		}
		return v
	}
	existing := []kubevirtv1.VirtualMachineInstance{*vmi("old1", "10.250.0.1"), *vmi("old2", "10.250.0.3")}
	lists := 0
	list := func(context.Context) ([]kubevirtv1.VirtualMachineInstance, error) { lists++; return existing, nil }
	var a ipam
	assign := func(v *kubevirtv1.VirtualMachineInstance) string {
		t.Helper()
		ip, err := a.assign(ctx, v, list)
		if err != nil {
			t.Fatal(err)
		}
		return ip
	}
	if got := assign(vmi("a", "")); got != "10.250.0.2" {
		t.Errorf("first new address %s, want 10.250.0.2 (.1 is taken)", got)
	}
	if got := assign(vmi("b", "")); got != "10.250.0.4" {
		t.Errorf("second new address %s, want 10.250.0.4 (.3 is taken)", got)
	}
	if got := assign(vmi("a", "")); got != "10.250.0.2" {
		t.Errorf("same VMI got %s", got)
	}
	if got := assign(vmi("c", "10.250.9.9")); got != "10.250.9.9" {
		t.Errorf("reported address not kept: %s", got)
	}
	if lists != 1 {
		t.Errorf("listed %d times, want once", lists)
	}
	a.release("a")
	// The counter moves on rather than reusing at once; the freed address comes back
	// after a wrap.
	if got := assign(vmi("d", "")); got != "10.250.0.5" {
		t.Errorf("after release: %s", got)
	}
	if got := offsetAddr(65534).String(); got != "10.250.255.254" {
		t.Errorf("last address %s", got)
	}
	seen := map[string]bool{}
	var b ipam
	for i := range 3000 {
		ip, err := b.assign(ctx, vmi(fmt.Sprint(i), ""), func(context.Context) ([]kubevirtv1.VirtualMachineInstance, error) { return nil, nil })
		if err != nil || seen[ip] {
			t.Fatalf("address %d: %s, %v (duplicate %v)", i, ip, err, seen[ip])
		}
		seen[ip] = true
	}
}

func TestDialerWithoutLabs(t *testing.T) {
	s := New(Options{})
	dial := s.Dialer()
	for _, addr := range []string{lab.APIServiceHost("x", lab.DefaultClusterDomain) + ":6443", "nonsense", "127.0.0.1:6443"} {
		if _, err := dial(context.Background(), "tcp", addr); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial %s: %v, want connection refused", addr, err)
		}
	}
	// Registered but not listening (manager not started): still refused.
	ca, err := pki.NewCA("kubernetes", time.Now(), time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ca.KeyPEM()
	l, err := newLabEntry("x", lab.Namespace("x"), "uid", ca.CertPEM(), key)
	if err != nil {
		t.Fatal(err)
	}
	s.labs.register(l)
	if _, err := dial(context.Background(), "tcp", lab.APIServiceHost("x", lab.DefaultClusterDomain)+":6443"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial without a listener: %v", err)
	}
	if !s.labs.registered(lab.Namespace("x"), "uid") || s.labs.registered(lab.Namespace("x"), "other") {
		t.Error("registered() wrong")
	}
	s.labs.unregister(lab.Namespace("x"))
	if s.labs.count() != 0 || s.labs.lookup(lab.APIServiceHost("x", lab.DefaultClusterDomain)) != nil {
		t.Error("unregister left the lab")
	}
	if _, err := newLabEntry("x", "lab-x", "uid", ca.CertPEM(), ca.CertPEM()); err == nil {
		t.Error("lab entry from a Secret without a CA key")
	}
	conf, err := l.tlsConfig()
	if err != nil {
		t.Fatal(err)
	}
	cert := conf.Certificates[0].Leaf
	if err := cert.VerifyHostname(lab.APIServiceHost("x", lab.DefaultClusterDomain)); err != nil {
		t.Error(err)
	}
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("serving certificate not from the lab CA: %v", err)
	}
}
