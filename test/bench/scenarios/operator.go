package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/labforge/labforge/test/bench/recorder"
)

// spawner starts child processes from one goroutine locked to its OS thread for the
// harness's whole life. Pdeathsig fires when the thread that forked a child ends, not the
// process: forking from an arbitrary goroutine's thread could kill the operator at a random
// moment, while forking from this thread kills it only when the harness dies (the same
// reasoning as internal/controlplane's spawner).
type spawner struct {
	Requests chan spawnRequest
}

type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

func newSpawner() *spawner {
	s := &spawner{Requests: make(chan spawnRequest)}
	go func() {
		runtime.LockOSThread() // never unlocked: the thread lives as long as the harness
		for r := range s.Requests {
			r.result <- r.cmd.Start()
		}
	}()
	return s
}

func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnRequest{cmd: cmd, result: make(chan error, 1)}
	s.Requests <- r
	return <-r.result
}

// processSpawner is shared by every operator the harness starts.
var processSpawner = newSpawner()

// operator is `labforge operator` run as a child process against a control plane, with
// its metrics on a loopback port and its log in a file.
type operator struct {
	bin, kubeconfig, logDir string
	bootDelay               time.Duration
	// pprof serves the process's Go profiles on a port of its own (pprofAddr).
	pprof bool

	mu sync.Mutex
	// proc is the running process; nil before start and after stop or kill.
	proc *opProcess
	gen  int
	// unexpected is closed when a process exits that the harness did not stop or kill.
	unexpected     chan struct{}
	unexpectedOnce sync.Once
	unexpectedErr  error
}

// opProcess is one run of the operator.
type opProcess struct {
	gen  int
	cmd  *exec.Cmd
	addr string
	// pprofAddr serves /debug/pprof when the operator was started with profiles on.
	pprofAddr string
	log       string
	started   time.Time
	exited    chan struct{}
	waitErr   error
	// ending is set when the harness stops or kills the process on purpose.
	ending bool
}

func newOperator(bin, kubeconfig, logDir string, bootDelay time.Duration) *operator {
	return &operator{bin: bin, kubeconfig: kubeconfig, logDir: logDir, bootDelay: bootDelay, unexpected: make(chan struct{})}
}

// start runs a new operator process and returns once its metrics endpoint answers.
func (o *operator) start(ctx context.Context) (*opProcess, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := o.startOnce(ctx)
		if err == nil {
			return p, nil
		}
		lastErr = err
		// A port picked free may have been taken before the operator bound it: try again.
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func (o *operator) startOnce(ctx context.Context) (*opProcess, error) {
	o.mu.Lock()
	if o.proc != nil {
		o.mu.Unlock()
		return nil, errors.New("operator already running")
	}
	o.gen++
	gen := o.gen
	o.mu.Unlock()

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	logPath := filepath.Join(o.logDir, fmt.Sprintf("operator-%d.log", gen))
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := []string{"operator", "--kubeconfig", o.kubeconfig, "--metrics-bind-address", addr, "--boot-delay", o.bootDelay.String()}
	pprofAddr := ""
	if o.pprof {
		pport, err := freePort()
		if err != nil {
			return nil, err
		}
		pprofAddr = "127.0.0.1:" + strconv.Itoa(pport)
		args = append(args, "--pprof-bind-address", pprofAddr)
	}
	cmd := exec.Command(o.bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &opProcess{gen: gen, cmd: cmd, addr: addr, pprofAddr: pprofAddr, log: logPath, exited: make(chan struct{})}
	p.started = time.Now()
	if err := processSpawner.start(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s operator: %w", o.bin, err)
	}
	o.mu.Lock()
	o.proc = p
	o.mu.Unlock()
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		o.mu.Lock()
		ending := p.ending
		if o.proc == p {
			o.proc = nil
		}
		o.mu.Unlock()
		close(p.exited)
		if !ending {
			o.unexpectedOnce.Do(func() {
				o.mu.Lock()
				defer o.mu.Unlock()
				o.unexpectedErr = fmt.Errorf("the operator (pid %d) exited on its own: %v; its log ends with:\n%s", cmd.Process.Pid, p.waitErr, tail(logPath, 20))
				close(o.unexpected)
			})
		}
	}()

	deadline := time.Now().Add(90 * time.Second)
	for {
		reqCtx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := recorder.ScrapeOperator(reqCtx, addr)
		cancel()
		if err == nil {
			return p, nil
		}
		select {
		case <-p.exited:
			return nil, fmt.Errorf("the operator exited before serving metrics (%v): %s", p.waitErr, tail(logPath, 20))
		case <-ctx.Done():
			_ = o.kill()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = o.kill()
			return nil, fmt.Errorf("the operator's metrics at %s did not answer within 90s: %v", addr, err)
		}
	}
}

// nextGen is the generation the next started process will have.
func (o *operator) nextGen() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.gen + 1
}

// current is the running process, or nil.
func (o *operator) current() *opProcess {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.proc
}

// kill sends SIGKILL to the operator's process group and waits for it to be reaped.
func (o *operator) kill() error { return o.end(syscall.SIGKILL, 0) }

// stop asks the operator to shut down (SIGTERM) and kills it after grace.
func (o *operator) stop(grace time.Duration) error { return o.end(syscall.SIGTERM, grace) }

func (o *operator) end(sig syscall.Signal, grace time.Duration) error {
	o.mu.Lock()
	p := o.proc
	if p != nil {
		p.ending = true
	}
	o.mu.Unlock()
	if p == nil {
		return nil
	}
	pid := p.cmd.Process.Pid
	if sig == syscall.SIGKILL {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	} else {
		_ = syscall.Kill(pid, sig)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace + 10*time.Second):
	}
	if sig != syscall.SIGKILL {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("operator pid %d did not exit after SIGKILL", pid)
	}
}

// Failed is closed when the operator exits without being asked to.
func (o *operator) Failed() <-chan struct{} { return o.unexpected }

// failure says why failed was closed.
func (o *operator) failure() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.unexpectedErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", path, err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// countInFile counts the lines of the file at path that contain s.
func countInFile(path, s string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(data), s)
}
