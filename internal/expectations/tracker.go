package expectations

import (
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Tracker remembers a controller's own writes to single objects until its cache shows
// them: the resourceVersion-aware expectations of KubeVirt's and Kubernetes' own
// controllers. Without it, a pass right after a write reads the stale cached object and
// writes the same change again (or takes a write it made for one nobody made). Where Store
// counts a pool's creates and deletes by name, Tracker follows each object's updates by
// resourceVersion.
//
// Objects are keyed by kind and namespace/name; the kind is the caller's own name for the
// watch the object arrives on (two watches of one type keep separate entries).
//
// Watch events of one kind arrive in order and the cache is updated before its handlers
// run, so once an event with the resourceVersion of a write has been observed, the cache
// holds that write or something newer. The event can arrive before the writer has even
// recorded its write, so the tracker also remembers the last resourceVersion it observed
// of every object until its delete event.
//
// Every expectation lapses after its TTL: the event normally arrives within milliseconds,
// and the bound matters only if it is lost (a relist that skips the write's
// resourceVersion still clears it through a newer one, see Observe).
//
// Tracker is safe for concurrent use. The zero value is not usable; use NewTracker.
type Tracker struct {
	clock clock.PassiveClock
	ttl   time.Duration

	mu      sync.Mutex
	pending map[Key]pendingWrite
	seen    map[Key]string // last resourceVersion observed
	swept   time.Time      // when lapsed expectations were last dropped
}

// Key names one object of one kind.
type Key struct {
	Kind string
	types.NamespacedName
}

type pendingWrite struct {
	// resourceVersion is "" for a deletion or a reservation: no update event meets it.
	resourceVersion string
	deadline        time.Time
	// by is on whose behalf the write was made (ExpectBy, Reserve).
	by string
}

// NewTracker returns an empty tracker whose expectations lapse ttl after they were
// recorded, by clk. A nil clk is the real clock; a ttl of 0 or less is DefaultTTL.
func NewTracker(clk clock.PassiveClock, ttl time.Duration) *Tracker {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Tracker{clock: clk, ttl: ttl, pending: map[Key]pendingWrite{}, seen: map[Key]string{}}
}

// Expect records a write whose result, obj as the API server returned it, the cache must
// show before the object is worked on again. It supersedes any earlier expectation of the
// object; it expects nothing when the cache already showed obj's resourceVersion or a
// newer one.
func (t *Tracker) Expect(kind string, obj client.Object) {
	t.ExpectBy(kind, obj, "")
}

// ExpectBy is Expect for a write made on behalf of by (the claim a lab was bound to, say),
// which ExpectedBy finds again until the write is met.
func (t *Tracker) ExpectBy(kind string, obj client.Object, by string) {
	k := Key{kind, client.ObjectKeyFromObject(obj)}
	rv := obj.GetResourceVersion()
	t.mu.Lock()
	defer t.mu.Unlock()
	if seen, ok := t.seen[k]; ok && notOlder(seen, rv) {
		delete(t.pending, k) // its event came first (and superseded any earlier write)
		return
	}
	t.setLocked(k, rv, by)
}

// Reserve records that a write of the object key is under way on behalf of by, unless a
// write of it is expected already, and says whether it did. Workers of one process that
// must not write one object at once (two binds of one lab) take turns by it, and one's
// write keeps the others off until the cache shows it: ExpectBy records the write's
// result in place of the reservation, Lower drops a reservation whose write did not
// happen. No event meets a reservation; it lapses after the TTL like any expectation.
func (t *Tracker) Reserve(kind string, key types.NamespacedName, by string) bool {
	k := Key{kind, key}
	t.mu.Lock()
	defer t.mu.Unlock()
	if p, ok := t.pending[k]; ok && t.clock.Now().Before(p.deadline) {
		return false
	}
	t.setLocked(k, "", by)
	return true
}

// Lower drops what is expected of the object key: a write that did not happen, or one
// the caller saw the cache show by other means (a list by index). What was observed of
// the object stays.
func (t *Tracker) Lower(kind string, key types.NamespacedName) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending, Key{kind, key})
}

// Expected says whether a write of the object key is expected and has not lapsed.
func (t *Tracker) Expected(kind string, key types.NamespacedName) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pending[Key{kind, key}]
	return ok && t.clock.Now().Before(p.deadline)
}

// ExpectedBy returns the object of kind with a write expected on behalf of by that has
// not lapsed, if there is one. It looks through every expected write: it is for the few
// a controller has in flight, not for thousands.
func (t *Tracker) ExpectedBy(kind, by string) (types.NamespacedName, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	for k, p := range t.pending {
		if k.Kind == kind && p.by == by && now.Before(p.deadline) {
			return k.NamespacedName, true
		}
	}
	return types.NamespacedName{}, false
}

// ExpectGone records a deletion, which only the object's delete event (Forget) meets. It
// expects nothing when the tracker has observed nothing of the object since its last
// delete event: then that event came first.
func (t *Tracker) ExpectGone(kind string, key types.NamespacedName) {
	k := Key{kind, key}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, exists := t.seen[k]; !exists {
		return
	}
	t.setLocked(k, "", "")
}

// setLocked expects a write of k. Once a TTL, it drops the expectations that lapsed a TTL
// ago or more, which no Wait dropped: the store must not grow with the writes of objects
// nobody asks about again (a claim deleted before its next pass). t.mu must be held.
func (t *Tracker) setLocked(k Key, rv, by string) {
	now := t.clock.Now()
	if now.Sub(t.swept) >= t.ttl {
		for old, p := range t.pending {
			if now.Sub(p.deadline) >= t.ttl {
				delete(t.pending, old)
			}
		}
		t.swept = now
	}
	t.pending[k] = pendingWrite{resourceVersion: rv, deadline: now.Add(t.ttl), by: by}
}

// Observe is called for every add and update event of kind: it meets the expected write
// of obj if obj is that write or newer.
func (t *Tracker) Observe(kind string, obj client.Object) {
	k := Key{kind, client.ObjectKeyFromObject(obj)}
	rv := obj.GetResourceVersion()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.seen[k] = rv
	if p, ok := t.pending[k]; ok && p.resourceVersion != "" && notOlder(rv, p.resourceVersion) {
		delete(t.pending, k)
	}
}

// Forget is called for every delete event of kind: it meets an expected deletion, drops
// an expected write (the object is gone, the cache will never show it) and forgets what
// was observed of the object.
func (t *Tracker) Forget(kind string, key types.NamespacedName) {
	k := Key{kind, key}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending, k)
	delete(t.seen, k)
}

// Wait returns how long to wait for the cache to show the last write expected of the
// object, zero when it does; expired is true when the expectation lapsed just now (it is
// then dropped, and the caller should say it gave up waiting).
func (t *Tracker) Wait(kind string, key types.NamespacedName) (left time.Duration, expired bool) {
	k := Key{kind, key}
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pending[k]
	if !ok {
		return 0, false
	}
	left = p.deadline.Sub(t.clock.Now())
	if left <= 0 {
		delete(t.pending, k)
		return 0, true
	}
	return left, false
}

// Len is the number of writes expected but not yet observed, lapsed ones included until
// Wait drops them.
func (t *Tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// notOlder reports whether resourceVersion a is b or newer. resourceVersions are opaque
// to clients in general, but the API server's own watch cache orders them as unsigned
// integers (etcd revisions); anything else is compared for equality only.
func notOlder(a, b string) bool {
	if a == b {
		return true
	}
	x, errA := strconv.ParseUint(a, 10, 64)
	y, errB := strconv.ParseUint(b, 10, 64)
	return errA == nil && errB == nil && x >= y
}
