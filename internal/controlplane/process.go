package controlplane

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// stopGrace is how long a child gets to exit after SIGTERM before its
	// process group is sent SIGKILL.
	stopGrace = 5 * time.Second
	// killWait bounds the wait for a SIGKILLed child to be reaped.
	killWait = 5 * time.Second
	// tailLines is how many lines of a child's output an error quotes.
	tailLines = 25
	// tailBytes bounds the output kept in memory for tailLines.
	tailBytes = 16 << 10
)

// spawner starts every child process from one goroutine that is locked to its
// OS thread for the whole life of the control plane.
//
// The kernel delivers Pdeathsig when the *thread* that forked the child exits,
// not when the process does. The Go runtime ends a thread when a goroutine
// locked to it returns, so a child forked from an arbitrary goroutine can be
// SIGKILLed at a random moment. Forking from a dedicated locked thread that
// lives until Stop makes Pdeathsig mean what we want: the child dies with the
// parent process, and at the latest when Stop ends the spawner.
type spawner struct {
	requests chan spawnRequest
	quit     chan struct{}
	done     chan struct{}
}

type spawnRequest struct {
	cmd    *exec.Cmd
	result chan error
}

func newSpawner() *spawner {
	s := &spawner{
		requests: make(chan spawnRequest),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	go s.loop()
	return s
}

func (s *spawner) loop() {
	// Deliberately never unlocked: returning while locked makes the runtime
	// terminate this thread, which fires Pdeathsig for anything still alive.
	runtime.LockOSThread()
	defer close(s.done)
	for {
		select {
		case r := <-s.requests:
			r.result <- r.cmd.Start()
		case <-s.quit:
			return
		}
	}
}

// start runs cmd.Start on the spawner's thread.
func (s *spawner) start(cmd *exec.Cmd) error {
	r := spawnRequest{cmd: cmd, result: make(chan error, 1)}
	select {
	case s.requests <- r:
		return <-r.result
	case <-s.done:
		return errors.New("control plane is stopped")
	}
}

// close ends the spawner and waits for its thread to go away.
func (s *spawner) close() {
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	<-s.done
}

// process is one running child: etcd, kube-apiserver or kube-controller-manager.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string // for error messages; "" if there is no lasting log file
	tail    *tailBuffer
	exited  chan struct{} // closed once the child has been reaped
	waitErr error         // valid after exited is closed
}

// startProcess starts bin with args. Its output goes to out and is also kept
// in memory so that errors can quote the end of it. If out is an io.Closer
// (a log file opened for this child), it is closed once the child is gone.
func startProcess(s *spawner, name, bin string, args []string, out io.Writer, logPath string) (*process, error) {
	closeOut := func() {
		if c, ok := out.(io.Closer); ok {
			_ = c.Close()
		}
	}
	p := &process{name: name, logPath: logPath, tail: &tailBuffer{}, exited: make(chan struct{})}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = io.MultiWriter(out, p.tail)
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group, so that Stop can signal it and anything it
		// might fork as one unit, and a Ctrl-C aimed at our terminal's
		// foreground group does not race our orderly shutdown.
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	// Do not let Wait hang on an output pipe that an orphaned grandchild
	// still holds open after the child itself is gone.
	cmd.WaitDelay = time.Second
	if err := s.start(cmd); err != nil {
		closeOut()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p.cmd = cmd
	go func() {
		p.waitErr = cmd.Wait()
		closeOut()
		close(p.exited)
	}()
	return p, nil
}

// pid returns the child's process id.
func (p *process) pid() int { return p.cmd.Process.Pid }

// running reports whether the child has not exited yet.
func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM to the child's process group, and SIGKILL if it is
// still around after grace. It returns once the child has been reaped.
func (p *process) stop(grace time.Duration) error {
	// Signal the group only while the leader is not reaped: until then its
	// pid, which is also the group id, cannot have been reused.
	if !p.running() {
		return nil
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(grace):
	}
	if p.running() {
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	}
	select {
	case <-p.exited:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%s (pid %d) did not exit after SIGKILL", p.name, p.pid())
	}
}

// errorf returns an error about p that quotes the end of its output.
func (p *process) errorf(format string, args ...any) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", p.name, fmt.Sprintf(format, args...))
	if !p.running() && p.waitErr != nil {
		fmt.Fprintf(&b, " (exit: %v)", p.waitErr)
	}
	where := p.name + " output"
	if p.logPath != "" {
		where = p.logPath
	}
	if tail := p.tail.lastLines(tailLines); tail != "" {
		fmt.Fprintf(&b, "\n--- last lines of %s ---\n%s", where, tail)
	} else {
		fmt.Fprintf(&b, " (no output in %s)", where)
	}
	return errors.New(b.String())
}

// tailBuffer keeps the last tailBytes bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - tailBytes; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) contains(s string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Contains(t.buf, []byte(s))
}

func (t *tailBuffer) lastLines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := strings.Split(strings.TrimRight(string(t.buf), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// prefixWriter writes each complete line it receives to a shared writer,
// prefixed with the child's name, so that the output of several children can
// be interleaved into one Options.Log and still be told apart.
type prefixWriter struct {
	prefix  string
	shared  *lockedWriter
	partial []byte
}

func (w *prefixWriter) Write(b []byte) (int, error) {
	// The exec package copies a child's output from a single goroutine, so
	// partial needs no lock of its own.
	w.partial = append(w.partial, b...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		if err := w.shared.writeLine(w.prefix, w.partial[:i+1]); err != nil {
			return len(b), err
		}
		w.partial = w.partial[i+1:]
	}
}

// lockedWriter serializes whole lines from several children onto one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) writeLine(prefix string, line []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err := l.w.Write(append([]byte(prefix), line...))
	return err
}

// openLog opens the append-only log file of one child.
func openLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}
