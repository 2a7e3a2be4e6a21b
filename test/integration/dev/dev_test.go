// Package dev_test checks `labforge dev` the way a developer uses it: it comes up, serves
// the samples, refuses a second run on the same state dir, and leaves nothing behind.
package dev_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/labforge/labforge/test/integration"
)

func TestDev(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "labforge dev")
}

var labforgeBin string

var _ = BeforeSuite(func(ctx context.Context) {
	labforgeBin = filepath.Join(GinkgoT().TempDir(), "labforge")
	build := exec.CommandContext(ctx, "go", "build", "-o", labforgeBin, "./cmd/labforge")
	build.Dir = integration.RepoRoot()
	out, err := build.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), string(out))
}, NodeTimeout(5*time.Minute))

// output collects a child's output; the child writes while the test reads.
type output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// run starts `labforge dev` on stateDir and waits for its kubeconfig.
func run(stateDir string) (*exec.Cmd, *output) {
	out := &output{}
	cmd := exec.Command(labforgeBin, "dev", "--state-dir", stateDir, "--bin-dir", integration.BinDir())
	cmd.Stdout, cmd.Stderr = out, out
	Expect(cmd.Start()).To(Succeed())
	DeferCleanup(func() { _ = cmd.Process.Kill() })
	Eventually(func() error { _, err := os.Stat(filepath.Join(stateDir, "kubeconfig")); return err }).
		WithTimeout(90*time.Second).WithPolling(200*time.Millisecond).Should(Succeed(), func() string { return out.String() })
	return cmd, out
}

// processesUsing lists the pids whose command line mentions dir.
func processesUsing(dir string) []string {
	var pids []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte(dir)) {
			pids = append(pids, e.Name()+": "+strings.ReplaceAll(string(cmdline), "\x00", " "))
		}
	}
	return pids
}

func kubectl(ctx context.Context, kubeconfig string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Dir = integration.RepoRoot()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

var _ = Describe("labforge dev", func() {
	It("runs the platform until SIGTERM, then stops every process it started", func(ctx context.Context) {
		stateDir := GinkgoT().TempDir()
		cmd, out := run(stateDir)
		kubeconfig := filepath.Join(stateDir, "kubeconfig")
		Eventually(out.String).Should(ContainSubstring("export KUBECONFIG=" + kubeconfig))
		Expect(processesUsing(stateDir)).To(HaveLen(4), "labforge dev, etcd, kube-apiserver, kube-controller-manager")

		By("serving the samples as the README's tour applies them: the platform, then a warm claim")
		o, err := kubectl(ctx, kubeconfig, "apply", "-f", "config/samples/")
		Expect(err).NotTo(HaveOccurred(), o)
		Expect(o).To(Equal("labtemplate.labforge.dev/broken-dns created\nlabpool.labforge.dev/broken-dns created\n"),
			"the template comes before the pool that names it")
		Eventually(func() string {
			o, _ := kubectl(ctx, kubeconfig, "get", "labtemplate", "broken-dns", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}")
			return o
		}).WithTimeout(30 * time.Second).Should(Equal("True"))
		o, err = kubectl(ctx, kubeconfig, "wait", "--for=condition=Ready", "labpool/broken-dns", "--timeout=90s")
		Expect(err).NotTo(HaveOccurred(), o)
		o, err = kubectl(ctx, kubeconfig, "get", "events", "--field-selector", "type=Warning", "-A", "-o",
			`jsonpath={range .items[*]}{.involvedObject.namespace}/{.involvedObject.kind}/{.involvedObject.name}: {.reason}: {.message}{"\n"}{end}`)
		Expect(err).NotTo(HaveOccurred(), o)
		Expect(warningsOfLabforge(o)).To(BeEmpty(), "a newcomer's first steps raise no Warning")
		o, err = kubectl(ctx, kubeconfig, "apply", "-f", "config/samples/student/")
		Expect(err).NotTo(HaveOccurred(), o)
		o, err = kubectl(ctx, kubeconfig, "wait", "--for=condition=Ready", "labclaim/alice", "--timeout=60s")
		Expect(err).NotTo(HaveOccurred(), o)
		o, err = kubectl(ctx, kubeconfig, "get", "labclaim", "alice", "-o", "jsonpath={.status.launchType}")
		Expect(err).NotTo(HaveOccurred(), o)
		Expect(o).To(Equal("Warm"))

		By("refusing a second run on the same state dir")
		second := exec.CommandContext(ctx, labforgeBin, "dev", "--state-dir", stateDir, "--bin-dir", integration.BinDir())
		secondOut, err := second.CombinedOutput()
		Expect(err).To(HaveOccurred())
		Expect(string(secondOut)).To(ContainSubstring("another labforge dev is already running with state dir " + stateDir))

		By("stopping everything on SIGTERM")
		Expect(cmd.Process.Signal(syscall.SIGTERM)).To(Succeed())
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		Eventually(done).WithTimeout(30*time.Second).Should(Receive(BeNil()), func() string { return out.String() })
		Expect(processesUsing(stateDir)).To(BeEmpty())
		Expect(filepath.Join(stateDir, "kubeconfig")).NotTo(BeAnExistingFile())

		By("starting again on the same state dir")
		cmd, _ = run(stateDir)
		Expect(cmd.Process.Signal(syscall.SIGINT)).To(Succeed())
		Expect(cmd.Wait()).To(Succeed())
	}, NodeTimeout(4*time.Minute))

	It("leaves no control-plane process behind even when it is killed outright", func(ctx context.Context) {
		stateDir := GinkgoT().TempDir()
		cmd, _ := run(stateDir)
		Expect(processesUsing(stateDir)).To(HaveLen(4))
		Expect(cmd.Process.Kill()).To(Succeed())
		_ = cmd.Wait()
		Eventually(func() []string { return processesUsing(stateDir) }).WithTimeout(10 * time.Second).Should(BeEmpty())
	}, NodeTimeout(3*time.Minute))
})

// warningsOfLabforge drops, from Warning event lines "namespace/kind/name: reason: message",
// those about the API server's own default/kubernetes Service and its endpoints, which the
// control plane's controllers may warn about while they start (a CI run saw one); every
// other Warning is the newcomer's to see.
func warningsOfLabforge(lines string) []string {
	var kept []string
	for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
		if l == "" {
			continue
		}
		if ns, rest, _ := strings.Cut(l, "/"); ns == "default" {
			if _, name, _ := strings.Cut(rest, "/"); strings.HasPrefix(name, "kubernetes:") {
				continue
			}
		}
		kept = append(kept, l)
	}
	return kept
}
