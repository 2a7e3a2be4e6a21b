package main

import (
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	kubevirtv1 "kubevirt.io/api/core/v1"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// The trackers turn watch events into timestamps: each handler stamps time.Now() the moment
// the event is delivered, and does nothing slow, so that the stamp is when the harness (a
// client like any student's `kubectl wait`) saw the change.

// notifier wakes waiters whenever a tracker saw an event.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// changed returns a channel closed at the next notify.
func (n *notifier) changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// claimRec is what the harness knows of one claim it created.
type claimRec struct {
	name string
	// t0 is the client's clock just before the Create call.
	t0 time.Time
	// createErr is the Create call's error, if it failed.
	createErr error
	uid       types.UID
	// boundAt is when a watch event first showed status.lab; readyAt when it first showed
	// Ready=True; deletedAt when the claim's delete event came.
	boundAt, readyAt, deletedAt time.Time
	launch                      labforgev1alpha1.LaunchType
	// labs are the distinct status.lab values seen, in order: more than one means the
	// claim's lab changed under it.
	labs  []string
	ready chan struct{}
}

// claimTracker follows the claims of one namespace.
type claimTracker struct {
	n  *notifier
	mu sync.Mutex
	// recs are the claims registered by the harness, by name.
	recs map[string]*claimRec
	// order is the registration order.
	order []*claimRec
}

func newClaimTracker(n *notifier) *claimTracker {
	return &claimTracker{n: n, recs: map[string]*claimRec{}}
}

// register records a claim the harness is about to create; call it before Create.
func (t *claimTracker) register(name string) *claimRec {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &claimRec{name: name, ready: make(chan struct{})}
	t.recs[name] = r
	t.order = append(t.order, r)
	return r
}

// stamp sets t0 (the moment before Create) under the tracker's lock.
func (t *claimTracker) stamp(r *claimRec) {
	t.mu.Lock()
	r.t0 = time.Now()
	t.mu.Unlock()
}

func (t *claimTracker) created(r *claimRec, uid types.UID, err error) {
	t.mu.Lock()
	r.uid, r.createErr = uid, err
	t.mu.Unlock()
}

func (t *claimTracker) observe(obj any, deleted bool) {
	now := time.Now()
	c, ok := obj.(*labforgev1alpha1.LabClaim)
	if !ok {
		if tomb, isTomb := obj.(toolscache.DeletedFinalStateUnknown); isTomb {
			c, ok = tomb.Obj.(*labforgev1alpha1.LabClaim)
		}
		if !ok {
			return
		}
	}
	t.mu.Lock()
	r := t.recs[c.Name]
	if r == nil || (r.uid != "" && r.uid != c.UID) {
		t.mu.Unlock()
		return
	}
	if deleted {
		if r.deletedAt.IsZero() {
			r.deletedAt = now
		}
	} else {
		if lab := c.Status.Lab; lab != "" {
			if r.boundAt.IsZero() {
				r.boundAt = now
			}
			if len(r.labs) == 0 || r.labs[len(r.labs)-1] != lab {
				r.labs = append(r.labs, lab)
			}
		}
		if c.Status.LaunchType != "" {
			r.launch = c.Status.LaunchType
		}
		if r.readyAt.IsZero() && meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionReady) {
			r.readyAt = now
			close(r.ready)
		}
	}
	t.mu.Unlock()
	t.n.notify()
}

func (t *claimTracker) handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.observe(obj, false) },
		UpdateFunc: func(_, obj any) { t.observe(obj, false) },
		DeleteFunc: func(obj any) { t.observe(obj, true) },
	}
}

// claimView is a copy of a claimRec, safe to read without the lock.
type claimView struct {
	name                            string
	t0, boundAt, readyAt, deletedAt time.Time
	createErr                       error
	launch                          labforgev1alpha1.LaunchType
	labs                            []string
}

// latency is claim -> Ready; +Inf when it did not become Ready within readyDeadline (a
// Ready event can still come after the harness gave up on the claim and deleted it).
func (c claimView) latency() float64 {
	if c.readyAt.IsZero() || c.t0.IsZero() || c.readyAt.Sub(c.t0) > readyDeadline {
		return inf
	}
	return ms(c.readyAt.Sub(c.t0))
}

// snapshot copies the records of the claims named (all when names is nil), in registration order.
func (t *claimTracker) snapshot(names map[string]bool) []claimView {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []claimView
	for _, r := range t.order {
		if names != nil && !names[r.name] {
			continue
		}
		out = append(out, claimView{name: r.name, t0: r.t0, boundAt: r.boundAt, readyAt: r.readyAt, deletedAt: r.deletedAt,
			createErr: r.createErr, launch: r.launch, labs: append([]string(nil), r.labs...)})
	}
	return out
}

// count counts registered claims for which f holds.
func (t *claimTracker) count(f func(r *claimRec) bool) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, r := range t.order {
		if f(r) {
			n++
		}
	}
	return n
}

// labState is where a lab stands, as the harness classifies it (as the pool controller
// does: the first that applies).
type labState int

const (
	labGone labState = iota
	labDeleting
	labBound
	labFailed
	labReady
	labBooting
	numLabStates
)

// occupancy counts a pool's labs by state at one moment.
type occupancy struct {
	at    time.Time
	count [numLabStates]int
}

// labRec is what the harness knows of one LabEnvironment.
type labRec struct {
	pool     string
	state    labState
	claimUID types.UID
	// claimChanges counts events where a set claimRef changed or vanished while the lab lived.
	claimChanges int
	readyAt      time.Time
}

// labTracker follows every LabEnvironment and keeps per-pool occupancy timelines.
type labTracker struct {
	n      *notifier
	mu     sync.Mutex
	labs   map[string]*labRec
	counts map[string]*[numLabStates]int
	// recording, when set for a pool, appends an occupancy sample per change to timeline.
	recording map[string]bool
	timeline  map[string][]occupancy
}

func newLabTracker(n *notifier) *labTracker {
	return &labTracker{n: n, labs: map[string]*labRec{}, counts: map[string]*[numLabStates]int{},
		recording: map[string]bool{}, timeline: map[string][]occupancy{}}
}

func classify(env *labforgev1alpha1.LabEnvironment) labState {
	ready := meta.FindStatusCondition(env.Status.Conditions, labforgev1alpha1.ConditionReady)
	switch {
	case !env.DeletionTimestamp.IsZero():
		return labDeleting
	case env.Spec.ClaimRef != nil:
		return labBound
	case ready != nil && ready.Status == "False":
		return labFailed
	case ready != nil && ready.Status == "True":
		return labReady
	default:
		return labBooting
	}
}

func (t *labTracker) observe(obj any, deleted bool) {
	now := time.Now()
	env, ok := obj.(*labforgev1alpha1.LabEnvironment)
	if !ok {
		if tomb, isTomb := obj.(toolscache.DeletedFinalStateUnknown); isTomb {
			env, ok = tomb.Obj.(*labforgev1alpha1.LabEnvironment)
		}
		if !ok {
			return
		}
	}
	pool := ""
	if env.Spec.PoolRef != nil {
		pool = env.Spec.PoolRef.Name
	}
	state := labGone
	if !deleted {
		state = classify(env)
	}
	t.mu.Lock()
	r := t.labs[env.Name]
	if r == nil {
		r = &labRec{pool: pool, state: labGone}
		t.labs[env.Name] = r
	}
	c := t.counts[pool]
	if c == nil {
		c = &[numLabStates]int{}
		t.counts[pool] = c
	}
	c[r.state]--
	c[state]++
	r.state = state
	if !deleted {
		var uid types.UID
		if ref := env.Spec.ClaimRef; ref != nil {
			uid = ref.UID
		}
		if r.claimUID != "" && uid != r.claimUID {
			r.claimChanges++
		}
		if uid != "" {
			r.claimUID = uid
		}
		if state == labReady && r.readyAt.IsZero() {
			r.readyAt = now
		}
	}
	if t.recording[pool] {
		t.timeline[pool] = append(t.timeline[pool], occupancy{at: now, count: *c})
	}
	t.mu.Unlock()
	t.n.notify()
}

func (t *labTracker) handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.observe(obj, false) },
		UpdateFunc: func(_, obj any) { t.observe(obj, false) },
		DeleteFunc: func(obj any) { t.observe(obj, true) },
	}
}

// occupancy returns the pool's current counts.
func (t *labTracker) occupancy(pool string) occupancy {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := occupancy{at: time.Now()}
	if c := t.counts[pool]; c != nil {
		o.count = *c
	}
	return o
}

// record starts a pool's timeline with its current counts.
func (t *labTracker) record(pool string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recording[pool] = true
	o := occupancy{at: time.Now()}
	if c := t.counts[pool]; c != nil {
		o.count = *c
	}
	t.timeline[pool] = []occupancy{o}
}

// stopRecording ends a pool's timeline and returns it.
func (t *labTracker) stopRecording(pool string) []occupancy {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recording[pool] = false
	return append([]occupancy(nil), t.timeline[pool]...)
}

// integrity counts labs whose claimRef changed, and claim UIDs named by more than one live lab.
func (t *labTracker) integrity() (changed, shared int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	byClaim := map[types.UID]int{}
	for _, r := range t.labs {
		if r.claimChanges > 0 {
			changed++
		}
		if r.claimUID != "" && r.state != labGone {
			byClaim[r.claimUID]++
		}
	}
	for _, n := range byClaim {
		if n > 1 {
			shared++
		}
	}
	return changed, shared
}

// live counts labs not gone.
func (t *labTracker) live() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, r := range t.labs {
		if r.state != labGone {
			n++
		}
	}
	return n
}

// vmTracker follows VirtualMachines and their instances by namespace: when each VM was
// first seen and when each VMI was first seen Running.
type vmTracker struct {
	n          *notifier
	mu         sync.Mutex
	vmSeen     map[string]map[string]time.Time
	vmiRunning map[string]map[string]time.Time
}

func newVMTracker(n *notifier) *vmTracker {
	return &vmTracker{n: n, vmSeen: map[string]map[string]time.Time{}, vmiRunning: map[string]map[string]time.Time{}}
}

func firstSeen(m map[string]map[string]time.Time, ns, name string, at time.Time) {
	byName := m[ns]
	if byName == nil {
		byName = map[string]time.Time{}
		m[ns] = byName
	}
	if _, ok := byName[name]; !ok {
		byName[name] = at
	}
}

func (t *vmTracker) handlers() (vm, vmi toolscache.ResourceEventHandler) {
	onVM := func(obj any) {
		now := time.Now()
		if v, ok := obj.(*kubevirtv1.VirtualMachine); ok {
			t.mu.Lock()
			firstSeen(t.vmSeen, v.Namespace, v.Name, now)
			t.mu.Unlock()
			t.n.notify()
		}
	}
	onVMI := func(obj any) {
		now := time.Now()
		if v, ok := obj.(*kubevirtv1.VirtualMachineInstance); ok && v.Status.Phase == kubevirtv1.Running {
			t.mu.Lock()
			firstSeen(t.vmiRunning, v.Namespace, v.Name, now)
			t.mu.Unlock()
			t.n.notify()
		}
	}
	return toolscache.ResourceEventHandlerFuncs{AddFunc: onVM, UpdateFunc: func(_, o any) { onVM(o) }},
		toolscache.ResourceEventHandlerFuncs{AddFunc: onVMI, UpdateFunc: func(_, o any) { onVMI(o) }}
}

// allSeen returns when the last of want VMs of namespace ns was first seen, and when the
// last of their VMIs was first seen Running; zero times when not all were.
func (t *vmTracker) allSeen(ns string, want int) (vms, running time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	latest := func(m map[string]time.Time) time.Time {
		if len(m) < want {
			return time.Time{}
		}
		var last time.Time
		for _, at := range m {
			if at.After(last) {
				last = at
			}
		}
		return last
	}
	return latest(t.vmSeen[ns]), latest(t.vmiRunning[ns])
}

// poolTracker follows LabPool status: when a pool's status first reported a number of
// Ready labs.
type poolTracker struct {
	n      *notifier
	mu     sync.Mutex
	status map[string]labforgev1alpha1.LabPoolStatus
	// firstReady maps pool -> readyReplicas -> when status first said so.
	firstReady map[string]map[int32]time.Time
}

func newPoolTracker(n *notifier) *poolTracker {
	return &poolTracker{n: n, status: map[string]labforgev1alpha1.LabPoolStatus{}, firstReady: map[string]map[int32]time.Time{}}
}

func (t *poolTracker) handler() toolscache.ResourceEventHandler {
	on := func(obj any) {
		now := time.Now()
		p, ok := obj.(*labforgev1alpha1.LabPool)
		if !ok {
			return
		}
		t.mu.Lock()
		t.status[p.Name] = p.Status
		m := t.firstReady[p.Name]
		if m == nil {
			m = map[int32]time.Time{}
			t.firstReady[p.Name] = m
		}
		if _, ok := m[p.Status.ReadyReplicas]; !ok {
			m[p.Status.ReadyReplicas] = now
		}
		t.mu.Unlock()
		t.n.notify()
	}
	return toolscache.ResourceEventHandlerFuncs{AddFunc: on, UpdateFunc: func(_, o any) { on(o) }}
}

// readySince is when the pool's status first reported n Ready labs (zero if never).
func (t *poolTracker) readySince(pool string, n int32) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.firstReady[pool][n]
}
