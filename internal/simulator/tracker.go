package simulator

import (
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// pendingTTL bounds how long a reconcile waits for the cache to show one of the
// simulator's own writes. The watch event normally arrives within milliseconds, but can
// lag by seconds on a loaded machine (a pool fill on two cores); the bound only matters
// if the event is lost, and a relist that skips the write's resourceVersion still clears
// it through a newer one (see observe).
const pendingTTL = 30 * time.Second

// writeTracker remembers the simulator's own writes until the cache shows them: the
// "expectations" of KubeVirt's and Kubernetes' own controllers. Without it, a reconcile
// right after a write reads the stale cached object and writes the same change again,
// which the write-counting benchmarks would see.
//
// Watch events of one kind arrive in order and the cache is updated before its handlers
// run, so once an event with the resourceVersion of a write has been observed, the cache
// holds that write or something newer. The event can arrive before the writer has even
// recorded its write, so the tracker also remembers the last resourceVersion seen of
// every object it watches.
type writeTracker struct {
	mu      sync.Mutex
	pending map[trackKey]pendingWrite
	seen    map[trackKey]string // last resourceVersion observed
}

type trackKey struct {
	kind string
	types.NamespacedName
}

type pendingWrite struct {
	resourceVersion string // "" for a deletion: only the delete event clears it
	deadline        time.Time
}

// expect records a write whose result, obj as the server returned it, the cache must
// show before the object is worked on again.
func (t *writeTracker) expect(kind string, obj client.Object) {
	k := trackKey{kind, client.ObjectKeyFromObject(obj)}
	rv := obj.GetResourceVersion()
	t.mu.Lock()
	defer t.mu.Unlock()
	if seen, ok := t.seen[k]; ok && notOlder(seen, rv) {
		delete(t.pending, k) // its event came first (and superseded any earlier write)
		return
	}
	t.setLocked(k, rv)
}

// expectGone records a deletion.
func (t *writeTracker) expectGone(kind string, key types.NamespacedName) {
	k := trackKey{kind, key}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, exists := t.seen[k]; !exists {
		return // its delete event came first
	}
	t.setLocked(k, "")
}

func (t *writeTracker) setLocked(k trackKey, rv string) {
	if t.pending == nil {
		t.pending = map[trackKey]pendingWrite{}
	}
	t.pending[k] = pendingWrite{resourceVersion: rv, deadline: time.Now().Add(pendingTTL)}
}

// observe is called for every add and update event of kind.
func (t *writeTracker) observe(kind string, obj client.Object) {
	k := trackKey{kind, client.ObjectKeyFromObject(obj)}
	rv := obj.GetResourceVersion()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.seen == nil {
		t.seen = map[trackKey]string{}
	}
	t.seen[k] = rv
	if p, ok := t.pending[k]; ok && p.resourceVersion != "" && notOlder(rv, p.resourceVersion) {
		delete(t.pending, k)
	}
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

// forget is called for every delete event of kind.
func (t *writeTracker) forget(kind string, key types.NamespacedName) {
	k := trackKey{kind, key}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.pending, k)
	delete(t.seen, k)
}

// wait returns how long to wait for the cache to show the last write to the object,
// zero when it does; expired is true when it gave up waiting.
func (t *writeTracker) wait(kind string, key types.NamespacedName) (left time.Duration, expired bool) {
	k := trackKey{kind, key}
	t.mu.Lock()
	defer t.mu.Unlock()
	p, ok := t.pending[k]
	if !ok {
		return 0, false
	}
	left = time.Until(p.deadline)
	if left <= 0 {
		delete(t.pending, k)
		return 0, true
	}
	return left, false
}

// len is the number of writes not yet seen in the cache.
func (t *writeTracker) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}
