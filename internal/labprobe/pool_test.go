package labprobe_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labprobe"
)

// stallListener is a lab endpoint that accepts TCP and never says a word: a TLS handshake
// with it never finishes. It counts the connections it holds.
type stallListener struct {
	ln               net.Listener
	mu               sync.Mutex
	accepted, closed int
}

func newStallListener(t *testing.T) *stallListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &stallListener{ln: ln}
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.accepted++
			conns = append(conns, c)
			s.mu.Unlock()
			go func() {
				// Reads what the client sends (its ClientHello) and answers nothing,
				// until the client gives up.
				_, _ = io.Copy(io.Discard, c)
				s.mu.Lock()
				s.closed++
				s.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return s
}

func (s *stallListener) counts() (accepted, open int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted, s.accepted - s.closed
}

// notifications records the labs a pool woke.
type notifications struct {
	mu   sync.Mutex
	envs []string
}

func (n *notifications) add(env string) {
	n.mu.Lock()
	n.envs = append(n.envs, env)
	n.mu.Unlock()
}

func (n *notifications) get() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.envs...)
}

func startPool(t *testing.T, p labprobe.Prober, opts labprobe.PoolOptions) (*labprobe.Pool, *notifications) {
	t.Helper()
	pool := labprobe.NewPool(p, opts)
	n := &notifications{}
	pool.SetNotify(n.add)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		_ = pool.Start(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return pool, n
}

// eventually polls cond until it holds, failing the test after a minute: a bound on a
// hang, not a measure of speed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestPoolStallingLabsDoNotHoldWorkers: more labs that accept TCP and stall TLS than
// the pool has workers and slow slots, then a healthy lab: the healthy lab's answer comes
// while the one stall that got a slow slot still holds its connection (its probe may run
// an hour), and the stalls that found no slot were cut off after the fast budget.
func TestPoolStallingLabsDoNotHoldWorkers(t *testing.T) {
	l := newLabPKI(t, "kubernetes")
	healthy := labServer(t, l.serving(t, lab.APIServiceHost("healthy", lab.DefaultClusterDomain)), l.pool(),
		serveMarker(map[string]string{lab.MarkerPhase: lab.MarkerPhaseComplete}))
	stall := newStallListener(t)
	prober := &labprobe.HTTPSProber{
		Timeout: time.Hour,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			target := healthy.Listener.Addr().String()
			if strings.HasPrefix(addr, "lab-api.lab-stall-") {
				target = stall.ln.Addr().String()
			}
			var d net.Dialer
			return d.DialContext(ctx, network, target)
		},
	}
	pool, woken := startPool(t, prober, labprobe.PoolOptions{
		Workers: 1, SlowSlots: 1, FastBudget: 50 * time.Millisecond, Timeout: time.Hour, Wait: -1,
	})
	ctx := context.Background()
	stalls := []string{"stall-1", "stall-2", "stall-3"}
	for _, env := range stalls {
		if _, known := pool.Probe(ctx, env, l.creds); known {
			t.Fatalf("Probe(%s) knew an answer before any probe ran", env)
		}
	}
	if _, known := pool.Probe(ctx, "healthy", l.creds); known {
		t.Fatal("Probe(healthy) knew an answer before any probe ran")
	}

	eventually(t, "the healthy lab's answer to wake it", func() bool {
		for _, env := range woken.get() {
			if env == "healthy" {
				return true
			}
		}
		return false
	})
	answer, known := pool.Probe(ctx, "healthy", l.creds)
	if !known || answer.Err != nil || !answer.Result.Complete() {
		t.Fatalf("Probe(healthy) = %+v, %v; want a complete bootstrap", answer, known)
	}
	// The one worker took the labs in order: every stall was dialled before the healthy
	// lab, and stall-1 still holds the slow slot, its probe running.
	if accepted, open := stall.counts(); accepted != 3 || open < 1 {
		t.Fatalf("stalls accepted %d, open %d; want 3 accepted, stall-1's still open", accepted, open)
	}
	eventually(t, "the stalls without a slow slot to be cut off", func() bool {
		_, open := stall.counts()
		return open == 1
	})
	for _, env := range stalls[1:] {
		answer, known := pool.Probe(ctx, env, l.creds)
		want := "lab " + env + ": the lab API did not answer within 50ms, and all 1 probes of slow labs are running; it is asked again later"
		if !known || answer.Err == nil || answer.Err.Error() != want {
			t.Errorf("Probe(%s) = %+v, %v; want the error %q", env, answer, known, want)
		}
	}
	// stall-1's probe is still running: nothing is known of it, and asking does not
	// start a second probe of it.
	if answer, known := pool.Probe(ctx, "stall-1", l.creds); known {
		t.Errorf("Probe(stall-1) = %+v; want no answer while its probe runs", answer)
	}
	// The cut-off stalls asked again wait for the slow slot stall-1 holds: no new
	// connection, however often the healthy lab is probed meanwhile.
	for range 3 {
		before := len(woken.get())
		if _, known := pool.Probe(ctx, "healthy", l.creds); !known {
			t.Fatal("Probe(healthy) forgot its answer")
		}
		eventually(t, "the healthy lab's next answer", func() bool { return len(woken.get()) > before })
		_, _ = pool.Probe(ctx, "healthy", l.creds) // take the fresh answer
	}
	if accepted, open := stall.counts(); accepted != 3 || open != 1 {
		t.Errorf("stalls accepted %d, open %d; want 3 and 1: suspects wait for a slow slot", accepted, open)
	}
}

// fakeProber answers from a channel and counts probes and forgets.
type fakeProber struct {
	mu       sync.Mutex
	probes   map[string]int
	forgets  map[string]int
	answer   chan labprobe.Answer
	immediat *labprobe.Answer
}

func newFakeProber() *fakeProber {
	return &fakeProber{probes: map[string]int{}, forgets: map[string]int{}, answer: make(chan labprobe.Answer)}
}

func (f *fakeProber) Probe(ctx context.Context, env string, _ labprobe.Credentials) (labprobe.Result, error) {
	f.mu.Lock()
	f.probes[env]++
	now := f.immediat
	f.mu.Unlock()
	if now != nil {
		return now.Result, now.Err
	}
	select {
	case a := <-f.answer:
		return a.Result, a.Err
	case <-ctx.Done():
		return labprobe.Result{}, ctx.Err()
	}
}

func (f *fakeProber) Forget(env string) {
	f.mu.Lock()
	f.forgets[env]++
	f.mu.Unlock()
}

func (f *fakeProber) counts(env string) (probes, forgets int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.probes[env], f.forgets[env]
}

func creds(ca string) labprobe.Credentials { return labprobe.Credentials{CACertPEM: []byte(ca)} }

// TestPoolOneProbePerLab: a lab asked about again and again while its probe runs is
// probed once; its answer wakes it once and is handed out once before the next probe.
func TestPoolOneProbePerLab(t *testing.T) {
	f := newFakeProber()
	pool, woken := startPool(t, f, labprobe.PoolOptions{Wait: -1})
	ctx := context.Background()
	for range 5 {
		if _, known := pool.Probe(ctx, "a", creds("ca")); known {
			t.Fatal("an answer before the probe answered")
		}
	}
	eventually(t, "the probe to start", func() bool { n, _ := f.counts("a"); return n == 1 })
	f.answer <- labprobe.Answer{Result: labprobe.Result{Reachable: true}}
	eventually(t, "the answer to wake the lab", func() bool { return len(woken.get()) == 1 })

	a, known := pool.Probe(ctx, "a", creds("ca"))
	if !known || !a.Result.Reachable || a.Err != nil {
		t.Fatalf("Probe() = %+v, %v; want the answer", a, known)
	}
	if n, _ := f.counts("a"); n != 1 {
		t.Fatalf("probes = %d after the fresh answer was handed out; want 1 (the next pass asks again)", n)
	}
	// The next pass: the latest answer, and a new probe.
	a, known = pool.Probe(ctx, "a", creds("ca"))
	if !known || !a.Result.Reachable {
		t.Fatalf("Probe() = %+v, %v; want the latest answer", a, known)
	}
	eventually(t, "the second probe", func() bool { n, _ := f.counts("a"); return n == 2 })
	if got := woken.get(); len(got) != 1 || got[0] != "a" {
		t.Errorf("woken = %v, want [a]", got)
	}

	// Other credentials (the lab was built again): the old answer is not theirs.
	if a, known := pool.Probe(ctx, "a", creds("other")); known {
		t.Errorf("Probe() with new credentials = %+v; want no answer yet", a)
	}
}

// TestPoolWaitsForPromptAnswer: a lab that answers at once has its answer in the pass that
// asked, and is not woken for it.
func TestPoolWaitsForPromptAnswer(t *testing.T) {
	f := newFakeProber()
	f.immediat = &labprobe.Answer{Result: labprobe.Result{Reachable: true, Phase: lab.MarkerPhaseComplete}}
	pool, woken := startPool(t, f, labprobe.PoolOptions{Wait: time.Minute})
	a, known := pool.Probe(context.Background(), "a", creds("ca"))
	if !known || !a.Result.Complete() {
		t.Fatalf("Probe() = %+v, %v; want the complete answer in the same call", a, known)
	}
	if got := woken.get(); len(got) != 0 {
		t.Errorf("woken = %v; want nothing, the caller had the answer", got)
	}
}

// TestPoolForget: the answer of a probe running when its lab is forgotten is dropped,
// and the prober forgets the lab again after it (the probe may have cached a client).
func TestPoolForget(t *testing.T) {
	f := newFakeProber()
	pool, woken := startPool(t, f, labprobe.PoolOptions{Wait: -1})
	ctx := context.Background()
	pool.Probe(ctx, "a", creds("ca"))
	eventually(t, "the probe to start", func() bool { n, _ := f.counts("a"); return n == 1 })
	pool.Forget("a")
	f.answer <- labprobe.Answer{Err: errors.New("late")}
	eventually(t, "the prober to forget the lab after the late answer", func() bool { _, n := f.counts("a"); return n == 2 })
	if got := woken.get(); len(got) != 0 {
		t.Errorf("woken = %v; a forgotten lab is not woken", got)
	}
	if a, known := pool.Probe(ctx, "a", creds("ca")); known {
		t.Errorf("Probe() after Forget = %+v; want no answer", a)
	}
}
