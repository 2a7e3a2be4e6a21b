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
}

// Key names one object of one kind.
type Key struct {
	Kind string
	types.NamespacedName
}

type pendingWrite struct {
	resourceVersion string // "" for a deletion: only the delete event clears it
	deadline        time.Time
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
	k := Key{kind, client.ObjectKeyFromObject(obj)}
	rv := obj.GetResourceVersion()
	t.mu.Lock()
	defer t.mu.Unlock()
	if seen, ok := t.seen[k]; ok && notOlder(seen, rv) {
		delete(t.pending, k) // its event came first (and superseded any earlier write)
		return
	}
	t.setLocked(k, rv)
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
	t.setLocked(k, "")
}

func (t *Tracker) setLocked(k Key, rv string) {
	t.pending[k] = pendingWrite{resourceVersion: rv, deadline: t.clock.Now().Add(t.ttl)}
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
