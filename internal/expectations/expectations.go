// Package expectations remembers the writes a controller made that its cache does not
// show yet (Kubernetes' ControllerExpectations): Store counts the labs the pool controller
// created or deleted and the labs the claim controller boots for template claims; Tracker
// follows single objects by resourceVersion (the simulator's VMs, VMIs and launcher pods;
// the claim controller's binds, bound statuses and released labs).
// Both lapse after a TTL on an injected clock.
package expectations

import (
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// DefaultTTL is how long an expectation waits to be observed before it lapses.
// A create or delete normally shows in the cache within milliseconds; two minutes is long
// enough for a slow watch and short enough that a lost event stalls a pool only briefly.
const DefaultTTL = 2 * time.Minute

// Store remembers, per pool, the labs the reconciler created or deleted that the
// cache does not reflect yet, so that the next pass neither creates them again nor counts
// deleted labs as still there (Kubernetes' ControllerExpectations, agent-sandbox's
// warm-pool expectations). It tracks names, not just counts, so that observing the cache
// is idempotent: seeing the same lab twice clears one expectation once.
//
// Every expectation lapses after its TTL: if the event that would clear it is lost (the
// lab was created and deleted before the cache saw it, a watch was dropped), the pool must
// not be blocked forever. A lapsed expectation at worst lets one pass act on a stale
// count, which the next pass corrects.
//
// Store is safe for concurrent use. The zero value is not usable; use
// New.
type Store struct {
	clock clock.PassiveClock
	ttl   time.Duration

	mu    sync.Mutex
	pools map[string]*poolExpectations
}

// poolExpectations maps lab names to when the create or delete was expected.
type poolExpectations struct {
	creates map[string]time.Time
	deletes map[string]time.Time
}

// New returns an empty store whose expectations lapse ttl after they were
// recorded, by clk. A nil clk is the real clock; a ttl of 0 or less is
// DefaultTTL.
func New(clk clock.PassiveClock, ttl time.Duration) *Store {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return &Store{clock: clk, ttl: ttl, pools: map[string]*poolExpectations{}}
}

// ExpectCreations records that the labs named were created for pool. Call it once the API
// server accepted each create; expecting a name again restarts its TTL.
func (e *Store) ExpectCreations(pool string, names ...string) {
	e.expect(pool, names, func(p *poolExpectations) map[string]time.Time { return p.creates })
}

// ExpectDeletions records that the labs named were deleted from pool. Call it once the API
// server accepted each delete; expecting a name again restarts its TTL.
func (e *Store) ExpectDeletions(pool string, names ...string) {
	e.expect(pool, names, func(p *poolExpectations) map[string]time.Time { return p.deletes })
}

// LowerDeletion drops the expected deletion of the lab named, for a delete the API
// server refused: the lab stays (a claim bound it meanwhile, say), and waiting for the
// cache to show it gone would hold the pool's arithmetic for the whole TTL.
func (e *Store) LowerDeletion(pool, name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.pools[pool]; p != nil {
		delete(p.deletes, name)
		e.pruneLocked(pool, p)
	}
}

func (e *Store) expect(pool string, names []string, which func(*poolExpectations) map[string]time.Time) {
	if len(names) == 0 {
		return
	}
	now := e.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pools[pool]
	if p == nil {
		p = &poolExpectations{creates: map[string]time.Time{}, deletes: map[string]time.Time{}}
		e.pools[pool] = p
	}
	m := which(p)
	for _, n := range names {
		m[n] = now
	}
}

// CreationFailed drops the expected creations of the labs named: the API server refused
// them, so the cache will never show them, and waiting for their TTL would hold their
// place for nothing.
func (e *Store) CreationFailed(pool string, names ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pools[pool]
	if p == nil {
		return
	}
	for _, n := range names {
		delete(p.creates, n)
	}
	e.pruneLocked(pool, p)
}

// Observed settles pool's expectations against the cache: labs are the names of the
// pool's labs the cache holds and that are not being deleted. An expected creation is
// met once its lab is listed; an expected deletion is met once its lab is no longer
// listed. Leaving labs being deleted out of the list is what lets a deletion be met as
// soon as the cache shows its deletion timestamp, rather than only once the lab's
// finalizer has run.
func (e *Store) Observed(pool string, labs []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pools[pool]
	if p == nil {
		return
	}
	seen := make(map[string]struct{}, len(labs))
	for _, n := range labs {
		seen[n] = struct{}{}
	}
	for n := range p.creates {
		if _, ok := seen[n]; ok {
			delete(p.creates, n)
		}
	}
	for n := range p.deletes {
		if _, ok := seen[n]; !ok {
			delete(p.deletes, n)
		}
	}
	e.pruneLocked(pool, p)
}

// Pending returns how many creations and deletions of pool are expected but not yet
// observed, not counting lapsed ones (which it drops). These are Input.PendingCreates and
// Input.PendingDeletes.
func (e *Store) Pending(pool string) (creates, deletes int32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.pools[pool]
	if p == nil {
		return 0, 0
	}
	e.pruneLocked(pool, p)
	return int32(len(p.creates)), int32(len(p.deletes))
}

// Forget drops every expectation of pool, for when the pool is deleted (so the store does
// not grow with pools that are gone) or when the caller no longer trusts them.
func (e *Store) Forget(pool string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.pools, pool)
}

// pruneLocked drops the lapsed expectations of pool, and pool itself once it expects
// nothing. e.mu must be held.
func (e *Store) pruneLocked(pool string, p *poolExpectations) {
	now := e.clock.Now()
	for _, m := range []map[string]time.Time{p.creates, p.deletes} {
		for n, at := range m {
			if now.Sub(at) >= e.ttl {
				delete(m, n)
			}
		}
	}
	if len(p.creates) == 0 && len(p.deletes) == 0 {
		delete(e.pools, pool)
	}
}
