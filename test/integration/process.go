package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// BuildLabforge builds the labforge command into dir and returns its path.
func BuildLabforge(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "labforge")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/labforge")
	build.Dir = RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building labforge: %w\n%s", err, out)
	}
	return bin, nil
}

// OperatorProcess is `labforge operator` (the manager with every controller and the
// simulated VM backend) running as a child process, to be killed like a real one.
type OperatorProcess struct {
	// LogPath holds everything the process wrote.
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
}

// StartOperatorProcess starts `bin operator --kubeconfig kubeconfig args...`, writing its
// output to logPath (appended: a restarted operator adds to its predecessor's log).
func StartOperatorProcess(bin, kubeconfig, logPath string, args ...string) (*OperatorProcess, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, append([]string{"operator", "--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdout, cmd.Stderr = log, log
	// Never outlive the test binary, even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting labforge operator: %w", err)
	}
	p := &OperatorProcess{LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Kill kills the process with SIGKILL, as a node failure or an OOM kill would, and waits
// for it to be gone.
func (p *OperatorProcess) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop asks the process to stop (SIGTERM), waiting up to 30 seconds before killing it.
func (p *OperatorProcess) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.Kill()
	}
}

// Exited reports whether the process has ended.
func (p *OperatorProcess) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
