package expectations

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	testingclock "k8s.io/utils/clock/testing"
)

// t0 is the fake clock's start.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestExpectations(t *testing.T) {
	const ttl = 2 * time.Minute
	type pending struct{ Creates, Deletes int32 }
	tests := map[string]struct {
		do func(e *Store, clk *testingclock.FakePassiveClock)
		// want is what Pending reports for each pool afterwards.
		want map[string]pending
	}{
		"nothing expected": {
			do:   func(*Store, *testingclock.FakePassiveClock) {},
			want: map[string]pending{"p": {}},
		},
		"creations stay pending until the cache lists them": {
			do: func(e *Store, _ *testingclock.FakePassiveClock) {
				e.ExpectCreations("p", "a", "b", "c")
				e.Observed("p", []string{"a", "old"})
			},
			want: map[string]pending{"p": {Creates: 2}},
		},
		"deletions stay pending until the cache no longer lists them": {
			do: func(e *Store, _ *testingclock.FakePassiveClock) {
				e.ExpectDeletions("p", "a", "b", "c")
				e.Observed("p", []string{"a", "other"})
			},
			want: map[string]pending{"p": {Deletes: 1}},
		},
		"a deletion the API server refused is no longer pending, though the lab stays listed": {
			do: func(e *Store, _ *testingclock.FakePassiveClock) {
				e.ExpectDeletions("p", "a", "b")
				e.LowerDeletion("p", "a")
				e.LowerDeletion("q", "a")
				e.Observed("p", []string{"a", "b"})
			},
			want: map[string]pending{"p": {Deletes: 1}, "q": {}},
		},
		"observing the same cache twice clears each expectation once": {
			do: func(e *Store, _ *testingclock.FakePassiveClock) {
				e.ExpectCreations("p", "a", "b")
				e.Observed("p", []string{"a"})
				e.Observed("p", []string{"a"})
			},
			want: map[string]pending{"p": {Creates: 1}},
		},
		"a refused creation is pending no more": {
			do: func(e *Store, _ *testingclock.FakePassiveClock) {
				e.ExpectCreations("p", "a", "b")
				e.ExpectDeletions("p", "c")
				e.CreationFailed("p", "a")
				e.CreationFailed("other", "b")
			},
			want: map[string]pending{"p": {Creates: 1, Deletes: 1}, "other": {}},
		},
		"expecting the same name twice is one expectation": {
			do: func(e *Store, _ *testingclock.FakePassiveClock) {
				e.ExpectCreations("p", "a")
				e.ExpectCreations("p", "a")
			},
			want: map[string]pending{"p": {Creates: 1}},
		},
		"no names expects nothing": {
			do: func(e *Store, _ *testingclock.FakePassiveClock) {
				e.ExpectCreations("p")
				e.ExpectDeletions("p")
			},
			want: map[string]pending{"p": {}},
		},
		"pools are independent": {
			do: func(e *Store, _ *testingclock.FakePassiveClock) {
				e.ExpectCreations("p", "a")
				e.ExpectDeletions("q", "a")
				e.Observed("p", []string{"a"})
			},
			want: map[string]pending{"p": {}, "q": {Deletes: 1}},
		},
		"observing a pool that expects nothing is a no-op": {
			do: func(e *Store, _ *testingclock.FakePassiveClock) {
				e.Observed("p", []string{"a"})
			},
			want: map[string]pending{"p": {}},
		},
		"an expectation holds until just before its TTL": {
			do: func(e *Store, clk *testingclock.FakePassiveClock) {
				e.ExpectCreations("p", "a")
				e.ExpectDeletions("p", "b")
				clk.SetTime(clk.Now().Add(ttl - time.Nanosecond))
			},
			want: map[string]pending{"p": {Creates: 1, Deletes: 1}},
		},
		"a creation never seen lapses at its TTL so a lost event cannot block the pool": {
			do: func(e *Store, clk *testingclock.FakePassiveClock) {
				e.ExpectCreations("p", "created-and-deleted-before-the-cache-saw-it")
				clk.SetTime(clk.Now().Add(ttl))
			},
			want: map[string]pending{"p": {}},
		},
		"a deletion never seen lapses at its TTL": {
			do: func(e *Store, clk *testingclock.FakePassiveClock) {
				e.ExpectDeletions("p", "a")
				clk.SetTime(clk.Now().Add(ttl))
				e.Observed("p", []string{"a"})
			},
			want: map[string]pending{"p": {}},
		},
		"each expectation lapses on its own": {
			do: func(e *Store, clk *testingclock.FakePassiveClock) {
				e.ExpectCreations("p", "early")
				clk.SetTime(clk.Now().Add(time.Minute))
				e.ExpectCreations("p", "late")
				clk.SetTime(clk.Now().Add(time.Minute))
			},
			want: map[string]pending{"p": {Creates: 1}},
		},
		"expecting a name again restarts its TTL": {
			do: func(e *Store, clk *testingclock.FakePassiveClock) {
				e.ExpectDeletions("p", "a")
				clk.SetTime(clk.Now().Add(time.Minute))
				e.ExpectDeletions("p", "a")
				clk.SetTime(clk.Now().Add(time.Minute + 30*time.Second))
			},
			want: map[string]pending{"p": {Deletes: 1}},
		},
		"forget drops every expectation of the pool only": {
			do: func(e *Store, _ *testingclock.FakePassiveClock) {
				e.ExpectCreations("p", "a")
				e.ExpectDeletions("p", "b")
				e.ExpectCreations("q", "c")
				e.Forget("p")
				e.Forget("unknown")
			},
			want: map[string]pending{"p": {}, "q": {Creates: 1}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clk := testingclock.NewFakePassiveClock(t0)
			e := New(clk, ttl)
			tc.do(e, clk)
			got := map[string]pending{}
			for pool := range tc.want {
				c, d := e.Pending(pool)
				got[pool] = pending{Creates: c, Deletes: d}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Pending() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExpectationsForgetPoolsWithNothingPending: the store holds nothing for a pool once
// every expectation is met or lapsed, so it does not grow with the pools it has seen.
func TestExpectationsForgetPoolsWithNothingPending(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(t0)
	e := New(clk, time.Minute)
	e.ExpectCreations("met", "a")
	e.ExpectDeletions("lapsed", "b")
	e.Observed("met", []string{"a"})
	clk.SetTime(t0.Add(time.Minute))
	e.Pending("lapsed")
	if len(e.pools) != 0 {
		t.Errorf("store still holds %d pools, want 0", len(e.pools))
	}
}

func TestNewDefaults(t *testing.T) {
	e := New(nil, 0)
	if e.ttl != DefaultTTL {
		t.Errorf("ttl = %v, want %v", e.ttl, DefaultTTL)
	}
	e.ExpectCreations("p", "a")
	if c, _ := e.Pending("p"); c != 1 {
		t.Errorf("Pending() creates = %d with the real clock, want 1", c)
	}
}

// TestExpectationsConcurrentUse is meant for -race: reconcilers of several pools share the
// store.
func TestExpectationsConcurrentUse(t *testing.T) {
	e := New(testingclock.NewFakePassiveClock(t0), time.Minute)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			pool := fmt.Sprintf("p-%d", w%2)
			for i := range 200 {
				n := fmt.Sprintf("lab-%d-%d", w, i)
				e.ExpectCreations(pool, n)
				e.Observed(pool, []string{n})
				e.ExpectDeletions(pool, n)
				e.Observed(pool, nil)
				e.Pending(pool)
			}
		})
	}
	wg.Wait()
	for _, pool := range []string{"p-0", "p-1"} {
		if c, d := e.Pending(pool); c != 0 || d != 0 {
			t.Errorf("Pending(%s) = %d, %d after every expectation was met, want 0, 0", pool, c, d)
		}
	}
}
