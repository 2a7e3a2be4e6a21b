package labprobe

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of PoolOptions (decision 55, docs/operations.md "The readiness probe").
const (
	// DefaultWorkers is how many probes of labs in good standing run at once.
	DefaultWorkers = 4
	// DefaultFastBudget is how long one probe may hold one of those workers. A lab API
	// answers in milliseconds; one that has not answered by then is slow or stalling.
	DefaultFastBudget = time.Second
	// DefaultSlowSlots is how many probes that outran the fast budget may go on at once,
	// counting the probes of labs that outran it before.
	DefaultSlowSlots = 8
	// DefaultWait is how long Pool.Probe waits for a lab in good standing to answer, so
	// that a healthy lab's answer lands in the pass that asked (no second status write).
	DefaultWait = 250 * time.Millisecond
	// maxQueued bounds each queue of labs waiting for a probe (one entry per lab). A lab
	// that finds its queue full is asked again at its next pass.
	maxQueued = DefaultMaxCachedLabs
)

// PoolOptions size a Pool. Zero values take the defaults above.
type PoolOptions struct {
	// Workers is how many labs in good standing are probed at once.
	Workers int
	// FastBudget is how long a probe may hold one of the Workers. A probe still running
	// then moves to a slow slot and goes on (until Timeout), or is cancelled when every
	// slow slot is taken; either way its lab is probed only in slow slots from then on.
	FastBudget time.Duration
	// SlowSlots is how many probes that outran FastBudget run at once.
	SlowSlots int
	// Timeout bounds one probe from its start; DefaultTimeout if zero.
	Timeout time.Duration
	// Wait is how long Probe waits for the answer of a lab in good standing; DefaultWait
	// if zero, no wait if negative.
	Wait time.Duration
}

// Pool probes labs on its own goroutines, never on the caller's: a reconcile pass asks
// for a lab's state and gets the latest answer the lab gave, and the lab's next answer
// comes through Notify. It guarantees that
//
//   - at most one probe of a lab is queued or running at any time;
//   - at most Workers + SlowSlots probes run at once, whatever the number of labs;
//   - a lab that does not answer within FastBudget (it accepts TCP and stalls TLS, or is
//     slow) holds a worker at most FastBudget, once: from then on it is probed only in the
//     SlowSlots, which labs in good standing never wait for, and callers never wait for it;
//   - every probe ends by Timeout.
//
// Labs in good standing, whose probes finish within FastBudget, share the Workers first
// come, first served: a stalling lab can delay them by FastBudget once, no more.
type Pool struct {
	prober Prober
	opts   PoolOptions

	// fast and slow queue lab names; a name is in at most one of them at a time (the
	// lab's state says which), except a stale entry of a lab forgotten and asked again.
	fast, slow chan string
	// slowSlots holds a token per probe running in a slow slot.
	slowSlots chan struct{}
	notify    atomic.Pointer[func(env string)]

	mu     sync.Mutex
	labs   map[string]*labState
	epochs uint64
}

// labState is what the pool knows of one lab, for one set of its credentials.
type labState struct {
	digest [32]byte
	creds  Credentials
	// epoch tells this state from an earlier one of the same lab (forgotten, or with
	// other credentials): the result of an earlier state's probe is dropped.
	epoch   uint64
	queued  bool
	running bool
	// suspect: a probe of the lab outran the fast budget; it is probed in slow slots only.
	suspect bool
	// last is the latest answer; fresh says no caller has seen it yet.
	last  *Answer
	fresh bool
	// waiter is a caller of Probe waiting for the running probe.
	waiter chan Answer
}

// Answer is what one probe of a lab found: Prober.Probe's result and error.
type Answer struct {
	Result Result
	Err    error
}

// NewPool returns a pool that probes with p. It runs once Start is called.
func NewPool(p Prober, opts PoolOptions) *Pool {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.FastBudget <= 0 {
		opts.FastBudget = DefaultFastBudget
	}
	if opts.SlowSlots <= 0 {
		opts.SlowSlots = DefaultSlowSlots
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Wait == 0 {
		opts.Wait = DefaultWait
	}
	return &Pool{
		prober:    p,
		opts:      opts,
		fast:      make(chan string, maxQueued),
		slow:      make(chan string, maxQueued),
		slowSlots: make(chan struct{}, opts.SlowSlots),
		labs:      map[string]*labState{},
	}
}

// SetNotify sets what is called, with the lab's name, when a probe's answer arrives that
// no caller of Probe waited for. It must not block.
func (p *Pool) SetNotify(f func(env string)) { p.notify.Store(&f) }

// Start runs the workers until ctx ends (a manager.Runnable).
func (p *Pool) Start(ctx context.Context) error {
	var wg sync.WaitGroup
	for range p.opts.Workers {
		wg.Go(func() { p.fastWorker(ctx) })
	}
	wg.Go(func() { p.slowDispatcher(ctx) })
	wg.Wait()
	return nil
}

// Probe returns the latest answer of the lab env (known is false while none has come
// yet), and has the lab probed again unless a probe of it is queued or running, or its
// latest answer is one the caller has not seen yet (the caller asks again after its
// probe interval). For a lab in good standing it waits up to PoolOptions.Wait for the
// probe to finish; it never waits longer, nor for a lab that outran the fast budget.
func (p *Pool) Probe(ctx context.Context, env string, creds Credentials) (latest Answer, known bool) {
	if env == "" {
		return Answer{Err: errors.New("labprobe: empty lab name")}, true
	}
	st, wait, fresh := p.ask(env, creds)
	if fresh != nil {
		return *fresh, true
	}
	return p.await(ctx, st, wait)
}

// ask hands out env's fresh answer (one no pass has taken yet), or else queues a probe of
// the lab unless one is queued or running, and returns a channel its answer arrives on
// when the caller should wait for it.
func (p *Pool) ask(env string, creds Credentials) (st *labState, wait chan Answer, fresh *Answer) {
	sum := credentialsDigest(creds)
	p.mu.Lock()
	defer p.mu.Unlock()
	st = p.labs[env]
	if st == nil || st.digest != sum {
		p.epochs++
		st = &labState{digest: sum, creds: creds, epoch: p.epochs}
		p.labs[env] = st
	}
	if st.fresh {
		st.fresh = false
		a := *st.last
		return st, nil, &a
	}
	if !st.queued && !st.running {
		q := p.fast
		if st.suspect {
			q = p.slow
		}
		select {
		case q <- env:
			st.queued = true
		default:
			// Full: the lab's next pass asks again.
		}
	}
	if !st.suspect && p.opts.Wait > 0 && (st.queued || st.running) && st.waiter == nil {
		wait = make(chan Answer, 1)
		st.waiter = wait
	}
	return st, wait, nil
}

// await waits up to PoolOptions.Wait for the answer on wait (not at all when wait is nil),
// and returns the lab's latest answer then; known is false when it has none yet.
func (p *Pool) await(ctx context.Context, st *labState, wait chan Answer) (latest Answer, known bool) {
	if wait != nil {
		t := time.NewTimer(p.opts.Wait)
		defer t.Stop()
		select {
		case a := <-wait:
			return a, true
		case <-t.C:
		case <-ctx.Done():
		}
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	if wait != nil && st.waiter == wait {
		st.waiter = nil
	}
	if wait != nil {
		select {
		case a := <-wait: // arrived as the wait ended
			return a, true
		default:
		}
	}
	if st.last == nil {
		return Answer{}, false
	}
	st.fresh = false
	return *st.last, true
}

// Forget drops what the pool and its prober keep of env: the lab is Ready or gone. A
// probe of env still running is left to end by its deadline, and its answer dropped.
func (p *Pool) Forget(env string) {
	p.mu.Lock()
	delete(p.labs, env)
	p.mu.Unlock()
	p.prober.Forget(env)
}

// job is one probe: the lab, its credentials and the state it answers for.
type job struct {
	env    string
	creds  Credentials
	epoch  uint64
	done   chan Answer
	cancel context.CancelFunc
}

// begin takes env's queued probe, if it is still wanted.
func (p *Pool) begin(env string) *job {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.labs[env]
	if st == nil || !st.queued {
		return nil // forgotten, or a stale queue entry
	}
	st.queued, st.running = false, true
	return &job{env: env, creds: st.creds, epoch: st.epoch}
}

// run starts j's probe on its own goroutine, bounded by the pool's Timeout.
func (p *Pool) run(ctx context.Context, j *job) {
	ctx, j.cancel = context.WithTimeout(ctx, p.opts.Timeout)
	j.done = make(chan Answer, 1)
	go func() {
		defer j.cancel()
		res, err := p.prober.Probe(ctx, j.env, j.creds)
		j.done <- Answer{Result: res, Err: err}
	}()
}

// finish records j's answer and hands it to the waiting caller, or notifies.
func (p *Pool) finish(j *job, a Answer) {
	p.mu.Lock()
	st := p.labs[j.env]
	if st == nil || st.epoch != j.epoch {
		p.mu.Unlock()
		if st == nil {
			// The probe may have cached a client after Forget: forget it again.
			p.prober.Forget(j.env)
		}
		return
	}
	st.running = false
	st.last = &a
	notify := false
	if st.waiter != nil {
		st.waiter <- a
		st.waiter, st.fresh = nil, false
	} else {
		st.fresh, notify = true, true
	}
	p.mu.Unlock()
	if f := p.notify.Load(); notify && f != nil {
		(*f)(j.env)
	}
}

// suspect marks j's lab as one probed in slow slots only, and lets go of a caller
// waiting for it: the answer comes through Notify.
func (p *Pool) suspect(j *job) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.labs[j.env]; st != nil && st.epoch == j.epoch {
		st.suspect = true
	}
}

// fastWorker probes labs in good standing, each for at most the fast budget.
func (p *Pool) fastWorker(ctx context.Context) {
	for {
		var env string
		select {
		case env = <-p.fast:
		case <-ctx.Done():
			return
		}
		j := p.begin(env)
		if j == nil {
			continue
		}
		p.run(ctx, j)
		budget := time.NewTimer(p.opts.FastBudget)
		select {
		case a := <-j.done:
			budget.Stop()
			p.finish(j, a)
			continue
		case <-budget.C:
		}
		// Slow or stalling: it goes on in a slow slot, or stops here.
		p.suspect(j)
		select {
		case p.slowSlots <- struct{}{}:
			go func() {
				a := <-j.done
				<-p.slowSlots
				p.finish(j, a)
			}()
		default:
			j.cancel()
			<-j.done
			p.finish(j, Answer{Err: fmt.Errorf(
				"lab %s: the lab API did not answer within %s, and all %d probes of slow labs are running; it is asked again later",
				j.env, p.opts.FastBudget, p.opts.SlowSlots)})
		}
	}
}

// slowDispatcher runs the probes of labs that outran the fast budget, each in a slow slot.
func (p *Pool) slowDispatcher(ctx context.Context) {
	for {
		var env string
		select {
		case env = <-p.slow:
		case <-ctx.Done():
			return
		}
		select {
		case p.slowSlots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		j := p.begin(env)
		if j == nil {
			<-p.slowSlots
			continue
		}
		p.run(ctx, j)
		go func() {
			a := <-j.done
			<-p.slowSlots
			p.finish(j, a)
		}()
	}
}
