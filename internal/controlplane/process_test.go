package controlplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperEnv makes the test binary act as the parent process in
// TestChildrenDieWithParent instead of running tests.
const helperEnv = "LABFORGE_CONTROLPLANE_HELPER"

func TestMain(m *testing.M) {
	if bins := os.Getenv(helperEnv); bins != "" {
		os.Exit(helperMain(bins))
	}
	os.Exit(m.Run())
}

// helperMain starts etcd from a goroutine that locks its OS thread and then
// exits, which terminates that thread: a child forked from it directly would
// get Pdeathsig right away. It reports etcd's pid once etcd has survived
// that, then waits to be killed.
func helperMain(bins string) int {
	// Keep the main thread for this goroutine. The runtime never ends the
	// main thread, so the goroutine below must not run on it for its
	// thread to end, and for the test to catch Pdeathsig firing then.
	runtime.LockOSThread()
	c, err := newControlPlane(Options{BinDir: bins})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		errc <- c.startEtcd(context.Background())
	}()
	if err := <-errc; err != nil {
		fmt.Println("error:", err)
		_ = c.Stop()
		return 1
	}
	time.Sleep(500 * time.Millisecond)
	if !c.etcd.running() {
		fmt.Println("error: etcd died with the thread of the goroutine that started it")
		_ = c.Stop()
		return 1
	}
	fmt.Println("etcd", c.etcd.pid(), c.stateDir)
	select {}
}

// TestChildrenDieWithParent kills a process running a control plane (etcd
// only) with SIGKILL, so that Stop never runs, and checks that etcd dies too.
func TestChildrenDieWithParent(t *testing.T) {
	bins := binDir(t, etcdBinary)
	abs, err := filepath.Abs(bins)
	if err != nil {
		t.Fatal(err)
	}
	// Become the subreaper of our descendants, so that the orphaned etcd is
	// reparented to us and we can collect its exit status. (Without this it
	// goes to the init process, which in a container often never reaps it.)
	if err := setChildSubreaper(true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = setChildSubreaper(false) })

	helper := exec.Command(os.Args[0], "-test.run=^$")
	helper.Env = append(os.Environ(), helperEnv+"="+abs)
	helper.Stderr = os.Stderr
	out, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	var pid int
	var stateDir string
	if err == nil {
		_, err = fmt.Sscanf(line, "etcd %d %s", &pid, &stateDir)
	}
	if err != nil {
		_ = helper.Process.Kill()
		_ = helper.Wait()
		t.Fatalf("helper: %q: %v", line, err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(stateDir) }) // Stop never ran

	if err := helper.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = helper.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var status syscall.WaitStatus
		reaped, err := syscall.Wait4(pid, &status, syscall.WNOHANG, nil)
		if err != nil {
			t.Fatalf("wait4(%d): %v", pid, err)
		}
		if reaped == pid {
			if !status.Signaled() || status.Signal() != syscall.SIGKILL {
				t.Errorf("etcd ended with status %#x, want killed by SIGKILL", status)
			}
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("etcd (pid %d) outlived its parent", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func setChildSubreaper(on bool) error {
	const prSetChildSubreaper = 36 // PR_SET_CHILD_SUBREAPER, linux/prctl.h
	var arg uintptr
	if on {
		arg = 1
	}
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, arg, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", errno)
	}
	return nil
}

// TestLaunchRetriesBindFailure checks that a child dying of a port taken in
// the meantime is started again with new arguments, and nothing else is.
func TestLaunchRetriesBindFailure(t *testing.T) {
	dir := t.TempDir()
	tried, ready := filepath.Join(dir, "tried"), filepath.Join(dir, "ready")
	// Fails like etcd or kube-apiserver on a taken port the first time, then
	// becomes ready and runs until stopped.
	flaky := fmt.Sprintf(`#!/bin/sh
if [ ! -e %[1]s ]; then
	touch %[1]s
	echo "listen tcp 127.0.0.1:$1: bind: address already in use" >&2
	exit 1
fi
touch %[2]s
exec sleep 60
`, tried, ready)
	broken := "#!/bin/sh\necho 'something else went wrong' >&2\nexit 1\n"
	for name, script := range map[string]string{"flaky": flaky, "broken": broken} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := &ControlPlane{binDir: dir, stateDir: dir, stopping: make(chan struct{}), spawner: newSpawner()}
	if err := os.Mkdir(c.path("logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	defer c.Stop()

	var attempts []int
	p, err := c.launch(t.Context(), "flaky", func(attempt int) ([]string, error) {
		attempts = append(attempts, attempt)
		return []string{strconv.Itoa(attempt)}, nil
	}, func(context.Context) error {
		_, err := os.Stat(ready)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop(stopGrace)
	if len(attempts) != 2 {
		t.Errorf("args called for attempts %v, want [1 2]", attempts)
	}

	// Any other early exit is final.
	_, err = c.launch(t.Context(), "broken", func(attempt int) ([]string, error) {
		if attempt > 1 {
			t.Error("retried a failure that was not about a port")
		}
		return nil, nil
	}, func(context.Context) error { return errors.New("not ready") })
	if err == nil || !strings.Contains(err.Error(), "something else went wrong") {
		t.Errorf("got %v, want an early exit", err)
	}
}
