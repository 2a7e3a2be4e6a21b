package recorder

import (
	"math"
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

// Notifier wakes waiters whenever a tracker saw an event.
type Notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

// Changed returns a channel closed at the next Notify.
func (n *Notifier) Changed() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

// Notify wakes every waiter on the channel Changed returned.
func (n *Notifier) Notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// ClaimRec is what the harness knows of one claim it created.
type ClaimRec struct {
	// Name is the claim's name, in the harness's student namespace.
	Name string
	// T0 is the client's clock just before the Create call.
	T0 time.Time
	// CreateErr is the Create call's error, if it failed.
	CreateErr error
	// UID is the created claim's UID: events of an earlier claim of the same name are ignored.
	UID types.UID
	// BoundAt is when a watch event first showed status.lab; ReadyAt when it first showed
	// Ready=True; DeletedAt when the claim's delete event came.
	BoundAt, ReadyAt, DeletedAt time.Time
	// Launch is the claim's status.launchType as last seen (Warm or Cold).
	Launch labforgev1alpha1.LaunchType
	// Labs are the distinct status.lab values seen, in order: more than one means the
	// claim's lab changed under it.
	Labs  []string
	ready chan struct{}
}

// Ready is closed when a watch event first showed the claim Ready.
func (r *ClaimRec) Ready() <-chan struct{} { return r.ready }

// ClaimTracker follows the claims of one namespace.
type ClaimTracker struct {
	n  *Notifier
	mu sync.Mutex
	// recs are the claims registered by the harness, by name.
	recs map[string]*ClaimRec
	// order is the registration order.
	order []*ClaimRec
}

// NewClaimTracker returns a tracker that wakes n on every claim event.
func NewClaimTracker(n *Notifier) *ClaimTracker {
	return &ClaimTracker{n: n, recs: map[string]*ClaimRec{}}
}

// Register records a claim the harness is about to create; call it before Create.
func (t *ClaimTracker) Register(name string) *ClaimRec {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := &ClaimRec{Name: name, ready: make(chan struct{})}
	t.recs[name] = r
	t.order = append(t.order, r)
	return r
}

// Stamp sets T0 (the moment before Create) under the tracker's lock.
func (t *ClaimTracker) Stamp(r *ClaimRec) {
	t.mu.Lock()
	r.T0 = time.Now()
	t.mu.Unlock()
}

// Created records the Create call's outcome: the claim's UID, or the error.
func (t *ClaimTracker) Created(r *ClaimRec, uid types.UID, err error) {
	t.mu.Lock()
	r.UID, r.CreateErr = uid, err
	t.mu.Unlock()
}

func (t *ClaimTracker) observe(obj any, deleted bool) {
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
	if r == nil || (r.UID != "" && r.UID != c.UID) {
		t.mu.Unlock()
		return
	}
	if deleted {
		if r.DeletedAt.IsZero() {
			r.DeletedAt = now
		}
	} else {
		if lab := c.Status.Lab; lab != "" {
			if r.BoundAt.IsZero() {
				r.BoundAt = now
			}
			if len(r.Labs) == 0 || r.Labs[len(r.Labs)-1] != lab {
				r.Labs = append(r.Labs, lab)
			}
		}
		if c.Status.LaunchType != "" {
			r.Launch = c.Status.LaunchType
		}
		if r.ReadyAt.IsZero() && meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionReady) {
			r.ReadyAt = now
			close(r.ready)
		}
	}
	t.mu.Unlock()
	t.n.Notify()
}

// Handler is the tracker's event handler for a LabClaim informer.
func (t *ClaimTracker) Handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.observe(obj, false) },
		UpdateFunc: func(_, obj any) { t.observe(obj, false) },
		DeleteFunc: func(obj any) { t.observe(obj, true) },
	}
}

// ClaimView is a copy of a ClaimRec, safe to read without the lock.
type ClaimView struct {
	// Name is the claim's name.
	Name string
	// T0, BoundAt, ReadyAt and DeletedAt are as in ClaimRec.
	T0, BoundAt, ReadyAt, DeletedAt time.Time
	// CreateErr is the Create call's error, if it failed.
	CreateErr error
	// Launch is the claim's status.launchType as last seen.
	Launch labforgev1alpha1.LaunchType
	// Labs are the distinct status.lab values seen, in order.
	Labs []string
}

// Latency is claim -> Ready in milliseconds; +Inf when it did not become Ready within
// deadline (a Ready event can still come after the harness gave up on the claim and deleted
// it).
func (c ClaimView) Latency(deadline time.Duration) float64 {
	if c.ReadyAt.IsZero() || c.T0.IsZero() || c.ReadyAt.Sub(c.T0) > deadline {
		return math.Inf(1)
	}
	return float64(c.ReadyAt.Sub(c.T0)) / float64(time.Millisecond)
}

// Snapshot copies the records of the claims named (all when names is nil), in registration order.
func (t *ClaimTracker) Snapshot(names map[string]bool) []ClaimView {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []ClaimView
	for _, r := range t.order {
		if names != nil && !names[r.Name] {
			continue
		}
		out = append(out, ClaimView{Name: r.Name, T0: r.T0, BoundAt: r.BoundAt, ReadyAt: r.ReadyAt, DeletedAt: r.DeletedAt,
			CreateErr: r.CreateErr, Launch: r.Launch, Labs: append([]string(nil), r.Labs...)})
	}
	return out
}

// Count counts registered claims for which f holds.
func (t *ClaimTracker) Count(f func(r *ClaimRec) bool) int {
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

// LabState is where a lab stands, as the harness classifies it (as the pool controller
// does: the first that applies).
type LabState int

// The states, in the order classify tries them after LabGone.
const (
	// LabGone is a lab whose delete event came (or never seen).
	LabGone LabState = iota
	// LabDeleting is a lab with a deletionTimestamp.
	LabDeleting
	// LabBound is a lab with a claimRef.
	LabBound
	// LabFailed is an unbound lab with Ready=False (a failed boot).
	LabFailed
	// LabReady is an unbound lab with Ready=True: what a warm claim takes.
	LabReady
	// LabBooting is any other lab.
	LabBooting
	// NumLabStates is the number of states, for arrays indexed by LabState.
	NumLabStates
)

// Occupancy counts a pool's labs by state at one moment.
type Occupancy struct {
	// At is when the counts were taken.
	At time.Time
	// Count is the number of labs in each LabState.
	Count [NumLabStates]int
}

// labRec is what the harness knows of one LabEnvironment.
type labRec struct {
	pool     string
	state    LabState
	claimUID types.UID
	// claimChanges counts events where a set claimRef changed or vanished while the lab lived.
	claimChanges int
	readyAt      time.Time
}

// LabTracker follows every LabEnvironment and keeps per-pool occupancy timelines.
type LabTracker struct {
	n      *Notifier
	mu     sync.Mutex
	labs   map[string]*labRec
	counts map[string]*[NumLabStates]int
	// recording, when set for a pool, appends an occupancy sample per change to timeline.
	recording map[string]bool
	timeline  map[string][]Occupancy
}

// NewLabTracker returns a tracker that wakes n on every LabEnvironment event.
func NewLabTracker(n *Notifier) *LabTracker {
	return &LabTracker{n: n, labs: map[string]*labRec{}, counts: map[string]*[NumLabStates]int{},
		recording: map[string]bool{}, timeline: map[string][]Occupancy{}}
}

// classify says where a lab stands.
func classify(env *labforgev1alpha1.LabEnvironment) LabState {
	ready := meta.FindStatusCondition(env.Status.Conditions, labforgev1alpha1.ConditionReady)
	switch {
	case !env.DeletionTimestamp.IsZero():
		return LabDeleting
	case env.Spec.ClaimRef != nil:
		return LabBound
	case ready != nil && ready.Status == "False":
		return LabFailed
	case ready != nil && ready.Status == "True":
		return LabReady
	default:
		return LabBooting
	}
}

func (t *LabTracker) observe(obj any, deleted bool) {
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
	state := LabGone
	if !deleted {
		state = classify(env)
	}
	t.mu.Lock()
	r := t.labs[env.Name]
	if r == nil {
		r = &labRec{pool: pool, state: LabGone}
		t.labs[env.Name] = r
	}
	c := t.counts[pool]
	if c == nil {
		c = &[NumLabStates]int{}
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
		if state == LabReady && r.readyAt.IsZero() {
			r.readyAt = now
		}
	}
	if t.recording[pool] {
		t.timeline[pool] = append(t.timeline[pool], Occupancy{At: now, Count: *c})
	}
	t.mu.Unlock()
	t.n.Notify()
}

// Handler is the tracker's event handler for a LabEnvironment informer.
func (t *LabTracker) Handler() toolscache.ResourceEventHandler {
	return toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { t.observe(obj, false) },
		UpdateFunc: func(_, obj any) { t.observe(obj, false) },
		DeleteFunc: func(obj any) { t.observe(obj, true) },
	}
}

// Occupancy returns the pool's current counts.
func (t *LabTracker) Occupancy(pool string) Occupancy {
	t.mu.Lock()
	defer t.mu.Unlock()
	o := Occupancy{At: time.Now()}
	if c := t.counts[pool]; c != nil {
		o.Count = *c
	}
	return o
}

// Record starts a pool's timeline with its current counts.
func (t *LabTracker) Record(pool string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recording[pool] = true
	o := Occupancy{At: time.Now()}
	if c := t.counts[pool]; c != nil {
		o.Count = *c
	}
	t.timeline[pool] = []Occupancy{o}
}

// StopRecording ends a pool's timeline and returns it.
func (t *LabTracker) StopRecording(pool string) []Occupancy {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.recording[pool] = false
	return append([]Occupancy(nil), t.timeline[pool]...)
}

// Integrity counts labs whose claimRef changed, and claim UIDs named by more than one live lab.
func (t *LabTracker) Integrity() (changed, shared int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	byClaim := map[types.UID]int{}
	for _, r := range t.labs {
		if r.claimChanges > 0 {
			changed++
		}
		if r.claimUID != "" && r.state != LabGone {
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

// Live counts labs not gone.
func (t *LabTracker) Live() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, r := range t.labs {
		if r.state != LabGone {
			n++
		}
	}
	return n
}

// VMTracker follows VirtualMachines and their instances by namespace: when each VM was
// first seen and when each VMI was first seen Running.
type VMTracker struct {
	n          *Notifier
	mu         sync.Mutex
	vmSeen     map[string]map[string]time.Time
	vmiRunning map[string]map[string]time.Time
}

// NewVMTracker returns a tracker that wakes n on every VM and VMI event.
func NewVMTracker(n *Notifier) *VMTracker {
	return &VMTracker{n: n, vmSeen: map[string]map[string]time.Time{}, vmiRunning: map[string]map[string]time.Time{}}
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

// Handlers are the tracker's event handlers for a VirtualMachine and a
// VirtualMachineInstance informer.
func (t *VMTracker) Handlers() (vm, vmi toolscache.ResourceEventHandler) {
	onVM := func(obj any) {
		now := time.Now()
		if v, ok := obj.(*kubevirtv1.VirtualMachine); ok {
			t.mu.Lock()
			firstSeen(t.vmSeen, v.Namespace, v.Name, now)
			t.mu.Unlock()
			t.n.Notify()
		}
	}
	onVMI := func(obj any) {
		now := time.Now()
		if v, ok := obj.(*kubevirtv1.VirtualMachineInstance); ok && v.Status.Phase == kubevirtv1.Running {
			t.mu.Lock()
			firstSeen(t.vmiRunning, v.Namespace, v.Name, now)
			t.mu.Unlock()
			t.n.Notify()
		}
	}
	return toolscache.ResourceEventHandlerFuncs{AddFunc: onVM, UpdateFunc: func(_, o any) { onVM(o) }},
		toolscache.ResourceEventHandlerFuncs{AddFunc: onVMI, UpdateFunc: func(_, o any) { onVMI(o) }}
}

// AllSeen returns when the last of want VMs of namespace ns was first seen, and when the
// last of their VMIs was first seen Running; zero times when not all were.
func (t *VMTracker) AllSeen(ns string, want int) (vms, running time.Time) {
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

// PoolTracker follows LabPool status: when a pool's status first reported a number of
// Ready labs.
type PoolTracker struct {
	n      *Notifier
	mu     sync.Mutex
	status map[string]labforgev1alpha1.LabPoolStatus
	// firstReady maps pool -> readyReplicas -> when status first said so.
	firstReady map[string]map[int32]time.Time
}

// NewPoolTracker returns a tracker that wakes n on every LabPool event.
func NewPoolTracker(n *Notifier) *PoolTracker {
	return &PoolTracker{n: n, status: map[string]labforgev1alpha1.LabPoolStatus{}, firstReady: map[string]map[int32]time.Time{}}
}

// Handler is the tracker's event handler for a LabPool informer.
func (t *PoolTracker) Handler() toolscache.ResourceEventHandler {
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
		t.n.Notify()
	}
	return toolscache.ResourceEventHandlerFuncs{AddFunc: on, UpdateFunc: func(_, o any) { on(o) }}
}

// ReadySince is when the pool's status first reported n Ready labs (zero if never).
func (t *PoolTracker) ReadySince(pool string, n int32) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.firstReady[pool][n]
}
