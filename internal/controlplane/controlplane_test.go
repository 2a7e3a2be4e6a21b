package controlplane

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The CRD file mixes in a document of another kind, which must be skipped.
const widgetCRD = `
apiVersion: v1
kind: ConfigMap
metadata:
  name: not-a-crd
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.test.labforge.dev
spec:
  group: test.labforge.dev
  names: {kind: Widget, listKind: WidgetList, plural: widgets, singular: widget}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

var widgets = schema.GroupVersionResource{Group: "test.labforge.dev", Version: "v1", Resource: "widgets"}

// eventually bounds the polls for the effects of controllers.
const eventually = 60 * time.Second

// binDir returns the directory with the control-plane binaries, or skips the
// test if they have not been built. It checks the named binaries, or all.
func binDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := os.Getenv("LABFORGE_BIN_DIR")
	if dir == "" {
		dir = filepath.Join("..", "..", "bin")
	}
	if len(names) == 0 {
		names = []string{etcdBinary, apiserverBinary, controllerManagerBinary}
	}
	for _, name := range names {
		if err := checkExecutable(filepath.Join(dir, name)); err != nil {
			// make test builds them and sets LABFORGE_BIN_DIR: there, missing is a failure.
			if os.Getenv("LABFORGE_BIN_DIR") != "" {
				t.Fatalf("control-plane binaries missing: %v", err)
			}
			t.Skipf("control-plane binaries missing (%v); build them with hack/build-controlplane.sh or set LABFORGE_BIN_DIR", err)
		}
	}
	return dir
}

func TestControlPlane(t *testing.T) {
	bins := binDir(t)
	crdDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(crdDir, "widgets.yaml"), []byte(widgetCRD), 0o644); err != nil {
		t.Fatal(err)
	}

	begin := time.Now()
	cp, err := Start(t.Context(), Options{BinDir: bins, CRDPaths: []string{crdDir}, NodePortRange: "30000-30001"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start took %v", time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Error(err)
		}
	})
	ctx := t.Context()
	client := kubernetes.NewForConfigOrDie(cp.RESTConfig())
	dyn := dynamic.NewForConfigOrDie(cp.RESTConfig())

	t.Run("Kubeconfig", func(t *testing.T) {
		cfg, err := clientcmd.BuildConfigFromFlags("", cp.KubeconfigPath())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("CRDInstalled", func(t *testing.T) {
		// Start waited for discovery, so a dynamic client works at once.
		w := widget("w1", "default")
		if _, err := dyn.Resource(widgets).Namespace("default").Create(ctx, w, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("RBAC", func(t *testing.T) {
		cfg, err := cp.UserConfig("alice", "developers")
		if err != nil {
			t.Fatal(err)
		}
		alice := kubernetes.NewForConfigOrDie(cfg)
		_, err = alice.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("alice listing secrets: got %v, want Forbidden", err)
		}
		if !strings.Contains(err.Error(), `"alice"`) {
			t.Errorf("Forbidden error does not name the user: %v", err)
		}
	})

	t.Run("ControllerManagerIsRunning", func(t *testing.T) {
		// Start waited for this one; a new namespace proves the controllers
		// keep working.
		ns := createNamespace(t, client, "sa-")
		poll(t, "default ServiceAccount and kube-root-ca.crt in "+ns, func(ctx context.Context) error {
			if _, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{}); err != nil {
				return err
			}
			_, err := client.CoreV1().ConfigMaps(ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
			return err
		})
	})

	t.Run("NamespaceDeletion", func(t *testing.T) {
		testNamespaceDeletion(t, client, dyn)
	})

	t.Run("GarbageCollection", func(t *testing.T) {
		ns := createNamespace(t, client, "gc-")
		owner := createConfigMap(t, client, ns, "owner", nil)
		dependent := createConfigMap(t, client, ns, "dependent", []metav1.OwnerReference{
			{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID},
		})
		// A custom resource as owner needs the garbage collector to know
		// the CRD, which is why Start installs CRDs before starting it.
		w, err := dyn.Resource(widgets).Namespace(ns).Create(ctx, widget("owner", ns), metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		crDependent := createConfigMap(t, client, ns, "cr-dependent", []metav1.OwnerReference{
			{APIVersion: widgets.GroupVersion().String(), Kind: "Widget", Name: w.GetName(), UID: w.GetUID()},
		})

		if err := client.CoreV1().ConfigMaps(ns).Delete(ctx, owner.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := dyn.Resource(widgets).Namespace(ns).Delete(ctx, w.GetName(), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{dependent.Name, crDependent.Name} {
			poll(t, "garbage collection of "+name, func(ctx context.Context) error {
				return notFound(client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{}))
			})
		}
	})

	t.Run("NodePortRange", func(t *testing.T) {
		ns := createNamespace(t, client, "np-")
		svc := func(name string, nodePort int32) *corev1.Service {
			return &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.ServiceSpec{
					Type:  corev1.ServiceTypeNodePort,
					Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(80), NodePort: nodePort}},
				},
			}
		}
		_, err := client.CoreV1().Services(ns).Create(ctx, svc("outside", 31000), metav1.CreateOptions{})
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "30000-30001") {
			t.Fatalf("nodePort 31000 outside 30000-30001: got %v, want Invalid naming the range", err)
		}
		for _, name := range []string{"a", "b"} {
			s, err := client.CoreV1().Services(ns).Create(ctx, svc(name, 0), metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if p := s.Spec.Ports[0].NodePort; p < 30000 || p > 30001 {
				t.Errorf("service %s got nodePort %d, outside 30000-30001", name, p)
			}
		}
		if _, err := client.CoreV1().Services(ns).Create(ctx, svc("c", 0), metav1.CreateOptions{}); err == nil {
			t.Error("a third NodePort service got a port from a range of two")
		}
	})

	t.Run("RestartAPIServer", func(t *testing.T) {
		before := createConfigMap(t, client, "default", "survives-restart", nil)
		oldPid := cp.apiserver.pid()

		begin := time.Now()
		if err := cp.RestartAPIServer(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("RestartAPIServer took %v", time.Since(begin).Round(time.Millisecond))
		if cp.apiserver.pid() == oldPid {
			t.Error("kube-apiserver has the same pid after a restart")
		}
		want := map[string]int{"etcd": cp.etcd.pid(), "kube-apiserver": cp.apiserver.pid(), "kube-controller-manager": cp.controllerManager.pid()}
		if got := cp.PIDs(); !maps.Equal(got, want) {
			t.Errorf("PIDs() = %v after the restart, want %v", got, want)
		}
		// The client made before the restart works against the new one.
		after, err := client.CoreV1().ConfigMaps("default").Get(ctx, before.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if after.UID != before.UID {
			t.Errorf("ConfigMap UID changed across the restart: %s -> %s", before.UID, after.UID)
		}
		// kube-controller-manager must reconnect to the new apiserver.
		testNamespaceDeletion(t, client, dyn)
	})

	t.Run("Stop", func(t *testing.T) {
		pids := cp.pids()
		if len(pids) < 4 { // etcd, apiserver twice, controller-manager
			t.Fatalf("pids() = %v, want at least 4", pids)
		}
		// As from a signal handler racing the test's own cleanup: both
		// calls wait for the one shutdown and report its result.
		begin := time.Now()
		errs := make(chan error, 2)
		for range 2 {
			go func() { errs <- cp.Stop() }()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("Stop took %v", time.Since(begin).Round(time.Millisecond))
		assertGone(t, pids)
		if got := cp.PIDs(); len(got) != 0 {
			t.Errorf("PIDs() = %v after Stop, want none", got)
		}
		if _, err := os.Stat(cp.stateDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temporary StateDir %s not removed: %v", cp.stateDir, err)
		}
		if err := cp.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		if err := cp.RestartAPIServer(ctx); err == nil {
			t.Error("RestartAPIServer after Stop succeeded")
		}
	})
}

// testNamespaceDeletion deletes a namespace with contents and waits for it
// to be gone, which takes the namespace controller.
func testNamespaceDeletion(t *testing.T, client kubernetes.Interface, dyn dynamic.Interface) {
	t.Helper()
	ctx := t.Context()
	ns := createNamespace(t, client, "delete-me-")
	createConfigMap(t, client, ns, "content", nil)
	if _, err := dyn.Resource(widgets).Namespace(ns).Create(ctx, widget("content", ns), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "deletion of namespace "+ns, func(ctx context.Context) error {
		return notFound(client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}))
	})
}

func TestStartWithoutBinaries(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	bins := filepath.Join(tmp, "no-such-bin")

	cp, err := Start(t.Context(), Options{BinDir: bins})
	if err == nil {
		_ = cp.Stop()
		t.Fatal("Start succeeded without binaries")
	}
	t.Log(err)
	if want := filepath.Join(bins, "etcd"); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %s", err, want)
	}
	assertEmptyDir(t, tmp, "no-such-bin")
}

// TestStartFailureStopsEverything makes kube-apiserver fail after etcd is up:
// Start must report the apiserver's output, stop etcd and remove its
// temporary state.
func TestStartFailureStopsEverything(t *testing.T) {
	realBins := binDir(t, etcdBinary)
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	bins := filepath.Join(tmp, "bin")
	if err := os.Mkdir(bins, 0o755); err != nil {
		t.Fatal(err)
	}
	etcd, err := filepath.Abs(filepath.Join(realBins, etcdBinary))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(etcd, filepath.Join(bins, etcdBinary)); err != nil {
		t.Fatal(err)
	}
	fake := "#!/bin/sh\necho 'fake component: refusing to start' >&2\nexit 3\n"
	for _, name := range []string{apiserverBinary, controllerManagerBinary} {
		if err := os.WriteFile(filepath.Join(bins, name), []byte(fake), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	var log bytes.Buffer
	cp, err := Start(t.Context(), Options{BinDir: bins, Log: &log})
	if err == nil {
		_ = cp.Stop()
		t.Fatal("Start succeeded with a failing kube-apiserver")
	}
	t.Log(err)
	for _, want := range []string{"kube-apiserver", "exited before becoming ready", "refusing to start", "exit status 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q", want)
		}
	}
	if want := "[kube-apiserver] fake component: refusing to start"; !strings.Contains(log.String(), want) {
		t.Errorf("Options.Log lacks %q:\n%s", want, log.String())
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("child processes left running: %v", kids)
	}
	assertEmptyDir(t, tmp, "bin")
}

// TestPersistentStateDir checks that a StateDir given by the caller is kept
// and that a second control plane started on it sees the first one's objects.
func TestPersistentStateDir(t *testing.T) {
	bins := binDir(t)
	state := t.TempDir()
	start := func() (*ControlPlane, kubernetes.Interface) {
		t.Helper()
		cp, err := Start(t.Context(), Options{BinDir: bins, StateDir: state})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cp.Stop() })
		return cp, kubernetes.NewForConfigOrDie(cp.RESTConfig())
	}

	cp, client := start()
	cm := createConfigMap(t, client, "default", "persisted", nil)
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"logs/etcd.log", "logs/kube-apiserver.log", "logs/kube-controller-manager.log", "kubeconfig", "pki/ca.crt"} {
		if _, err := os.Stat(filepath.Join(state, name)); err != nil {
			t.Error(err)
		}
	}

	begin := time.Now()
	_, client = start()
	t.Logf("Start on existing state took %v", time.Since(begin).Round(time.Millisecond))
	got, err := client.CoreV1().ConfigMaps("default").Get(t.Context(), cm.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != cm.UID {
		t.Errorf("ConfigMap UID %s, want %s", got.UID, cm.UID)
	}
}

func widget(name, ns string) *unstructured.Unstructured {
	w := &unstructured.Unstructured{}
	w.SetAPIVersion(widgets.GroupVersion().String())
	w.SetKind("Widget")
	w.SetName(name)
	w.SetNamespace(ns)
	return w
}

func createNamespace(t *testing.T, client kubernetes.Interface, prefix string) string {
	t.Helper()
	ns, err := client.CoreV1().Namespaces().Create(t.Context(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

func createConfigMap(t *testing.T, client kubernetes.Interface, ns, name string, owners []metav1.OwnerReference) *corev1.ConfigMap {
	t.Helper()
	cm, err := client.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: owners},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// poll waits up to eventually for check to succeed.
func poll(t *testing.T, what string, check func(context.Context) error) {
	t.Helper()
	begin := time.Now()
	var last error
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, eventually, true, func(ctx context.Context) (bool, error) {
		err := check(ctx)
		if ctx.Err() == nil { // keep the last real answer, not the timeout
			last = err
		}
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("%s: not done after %v: %v", what, eventually, last)
	}
	t.Logf("%s took %v", what, time.Since(begin).Round(time.Millisecond))
}

// notFound turns the result of a Get into nil if the object is gone.
func notFound(_ any, err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err == nil {
		return errors.New("still exists")
	}
	return err
}

// assertGone fails unless every pid is gone. Stop reaps its children, so a
// pid that still answers signal 0 is a survivor (or, improbably, reused).
func assertGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d still exists after Stop (kill 0: %v)", pid, err)
		}
	}
}

// children returns the pids of this process's child processes, zombies
// included.
func children(t *testing.T) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	me := os.Getpid()
	var kids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// Fields after the parenthesized command name: state, ppid, ...
		fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(me) {
			kids = append(kids, pid)
		}
	}
	return kids
}

// assertEmptyDir fails if dir holds anything but the entries in keep.
func assertEmptyDir(t *testing.T, dir string, keep ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !slices.Contains(keep, e.Name()) {
			t.Errorf("%s left behind in %s", e.Name(), dir)
		}
	}
}
