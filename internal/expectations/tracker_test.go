package expectations

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	testingclock "k8s.io/utils/clock/testing"
)

func TestTracker(t *testing.T) {
	const ttl = 30 * time.Second
	const kind, otherKind = "VirtualMachine", "Pod"
	key := types.NamespacedName{Namespace: "lab-x", Name: "control-plane"}
	obj := func(rv string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name, ResourceVersion: rv}}
	}
	// waited is what Wait and Len report afterwards.
	type waited struct {
		Left    time.Duration
		Expired bool
		Len     int
	}
	tests := map[string]struct {
		do   func(tr *Tracker, clk *testingclock.FakePassiveClock)
		want waited
	}{
		"nothing expected": {
			do:   func(*Tracker, *testingclock.FakePassiveClock) {},
			want: waited{},
		},
		"a write waits for its full TTL": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("1"))
				tr.Expect(kind, obj("2"))
			},
			want: waited{Left: ttl, Len: 1},
		},
		"an older event does not meet a write": {
			do: func(tr *Tracker, clk *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("1"))
				tr.Expect(kind, obj("2"))
				clk.SetTime(clk.Now().Add(time.Second))
				tr.Observe(kind, obj("1"))
			},
			want: waited{Left: ttl - time.Second, Len: 1},
		},
		"the write's own event meets it": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("1"))
				tr.Expect(kind, obj("2"))
				tr.Observe(kind, obj("2"))
			},
			want: waited{},
		},
		"a write whose event came first is not expected": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("3"))
				tr.Expect(kind, obj("3"))
			},
			want: waited{},
		},
		"a write older than what the cache shows is not expected": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("7"))
				tr.Expect(kind, obj("6"))
			},
			want: waited{},
		},
		"a newer resourceVersion meets a write a relist skipped": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("4"))
				tr.Expect(kind, obj("5"))
				tr.Observe(kind, obj("7"))
			},
			want: waited{},
		},
		"resourceVersions that are not numbers are compared for equality only": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("a"))
				tr.Expect(kind, obj("b"))
				tr.Observe(kind, obj("c"))
			},
			want: waited{Left: ttl, Len: 1},
		},
		"kinds are independent": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("1"))
				tr.Expect(kind, obj("2"))
				tr.Observe(otherKind, obj("2"))
			},
			want: waited{Left: ttl, Len: 1},
		},
		"a later write restarts the TTL": {
			do: func(tr *Tracker, clk *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("1"))
				tr.Expect(kind, obj("2"))
				clk.SetTime(clk.Now().Add(20 * time.Second))
				tr.Expect(kind, obj("3"))
				clk.SetTime(clk.Now().Add(20 * time.Second))
			},
			want: waited{Left: ttl - 20*time.Second, Len: 1},
		},
		"a write holds until just before its TTL": {
			do: func(tr *Tracker, clk *testingclock.FakePassiveClock) {
				tr.Expect(kind, obj("2"))
				clk.SetTime(clk.Now().Add(ttl - time.Nanosecond))
			},
			want: waited{Left: time.Nanosecond, Len: 1},
		},
		"a write whose event is lost lapses at its TTL": {
			do: func(tr *Tracker, clk *testingclock.FakePassiveClock) {
				tr.Expect(kind, obj("2"))
				clk.SetTime(clk.Now().Add(ttl))
			},
			want: waited{Expired: true},
		},
		"a deletion waits for the delete event": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("1"))
				tr.ExpectGone(kind, key)
				tr.Observe(kind, obj("9")) // an update before the delete event
			},
			want: waited{Left: ttl, Len: 1},
		},
		"the delete event meets a deletion": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("1"))
				tr.ExpectGone(kind, key)
				tr.Forget(kind, key)
			},
			want: waited{},
		},
		"a deletion whose event came first is not expected": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("1"))
				tr.Forget(kind, key)
				tr.ExpectGone(kind, key)
			},
			want: waited{},
		},
		"the delete event drops an expected write": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Expect(kind, obj("2"))
				tr.Forget(kind, key)
			},
			want: waited{},
		},
		"the delete event forgets what was observed": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, obj("5"))
				tr.Forget(kind, key)
				tr.Expect(kind, obj("2")) // recreated: a new object's first write
			},
			want: waited{Left: ttl, Len: 1},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clk := testingclock.NewFakePassiveClock(t0)
			tr := NewTracker(clk, ttl)
			tc.do(tr, clk)
			var got waited
			got.Left, got.Expired = tr.Wait(kind, key)
			got.Len = tr.Len()
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Wait() and Len() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTrackerWaitDropsALapsedWriteOnce(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(t0)
	tr := NewTracker(clk, time.Second)
	key := types.NamespacedName{Namespace: "n", Name: "a"}
	tr.Expect("Pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "a", ResourceVersion: "1"}})
	clk.SetTime(t0.Add(time.Second))
	if left, expired := tr.Wait("Pod", key); left != 0 || !expired {
		t.Fatalf("first Wait() = %v, %v, want 0, true", left, expired)
	}
	if left, expired := tr.Wait("Pod", key); left != 0 || expired {
		t.Errorf("second Wait() = %v, %v, want 0, false", left, expired)
	}
}

func TestNewTrackerDefaults(t *testing.T) {
	tr := NewTracker(nil, 0)
	if tr.ttl != DefaultTTL {
		t.Errorf("ttl = %v, want %v", tr.ttl, DefaultTTL)
	}
	tr.Expect("Pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: "a", ResourceVersion: "1"}})
	if left, _ := tr.Wait("Pod", types.NamespacedName{Namespace: "n", Name: "a"}); left <= DefaultTTL-time.Minute || left > DefaultTTL {
		t.Errorf("Wait() with the real clock = %v, want just under %v", left, DefaultTTL)
	}
}

// TestTrackerConcurrentUse is meant for -race: a controller's workers and its watch
// handlers share the tracker.
func TestTrackerConcurrentUse(t *testing.T) {
	tr := NewTracker(testingclock.NewFakePassiveClock(t0), time.Minute)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 200 {
				o := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "n", Name: fmt.Sprintf("p-%d-%d", w, i), ResourceVersion: "2"}}
				tr.Expect("Pod", o)
				tr.Observe("Pod", o)
				tr.ExpectGone("Pod", types.NamespacedName{Namespace: "n", Name: o.Name})
				tr.Forget("Pod", types.NamespacedName{Namespace: "n", Name: o.Name})
				tr.Wait("Pod", types.NamespacedName{Namespace: "n", Name: o.Name})
			}
		})
	}
	wg.Wait()
	if n := tr.Len(); n != 0 {
		t.Errorf("Len() = %d after every write was met, want 0", n)
	}
}

// Reservations and writes made on someone's behalf: how the claim controller's workers
// take turns binding one lab, and find the lab one of them bound a claim to.
func TestTrackerReservations(t *testing.T) {
	const ttl = time.Minute
	const kind = "LabEnvironment"
	key := types.NamespacedName{Name: "lab-a"}
	lab := func(rv string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: key.Name, ResourceVersion: rv}}
	}
	// state is what the tracker says of lab-a afterwards: whether a write is expected, on
	// whose behalf (ExpectedBy "alice"), whether bob may reserve it now, and Len before.
	type state struct {
		Expected, ByAlice, BobReserves bool
		Len                            int
	}
	tests := map[string]struct {
		do   func(tr *Tracker, clk *testingclock.FakePassiveClock)
		want state
	}{
		"nothing expected: anyone may reserve": {
			do:   func(*Tracker, *testingclock.FakePassiveClock) {},
			want: state{BobReserves: true},
		},
		"a reservation keeps the others off": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				if !tr.Reserve(kind, key, "alice") {
					t.Fatal("the first reservation was refused")
				}
			},
			want: state{Expected: true, ByAlice: true, Len: 1},
		},
		"a reservation whose write did not happen is lowered": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Reserve(kind, key, "alice")
				tr.Lower(kind, key)
			},
			want: state{BobReserves: true},
		},
		"the write keeps the others off until the cache shows it": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Reserve(kind, key, "alice")
				tr.ExpectBy(kind, lab("5"), "alice")
				tr.Observe(kind, lab("4"))
			},
			want: state{Expected: true, ByAlice: true, Len: 1},
		},
		"the write's own event ends it": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Reserve(kind, key, "alice")
				tr.ExpectBy(kind, lab("5"), "alice")
				tr.Observe(kind, lab("5"))
			},
			want: state{BobReserves: true},
		},
		"no update event ends a reservation": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Reserve(kind, key, "alice")
				tr.Observe(kind, lab("9"))
			},
			want: state{Expected: true, ByAlice: true, Len: 1},
		},
		"a reservation lapses at its TTL": {
			do: func(tr *Tracker, clk *testingclock.FakePassiveClock) {
				tr.Reserve(kind, key, "alice")
				clk.SetTime(clk.Now().Add(ttl))
			},
			want: state{BobReserves: true, Len: 1},
		},
		"lowering keeps what was observed": {
			do: func(tr *Tracker, _ *testingclock.FakePassiveClock) {
				tr.Observe(kind, lab("5"))
				tr.ExpectBy(kind, lab("6"), "alice")
				tr.Lower(kind, key)
				tr.ExpectBy(kind, lab("5"), "alice") // the cache showed it already
			},
			want: state{BobReserves: true},
		},
		"writes lapsed a TTL ago are swept at the next write": {
			do: func(tr *Tracker, clk *testingclock.FakePassiveClock) {
				tr.ExpectBy(kind, lab("5"), "alice")
				tr.Expect("Pod", lab("1"))
				clk.SetTime(clk.Now().Add(2 * ttl))
				tr.Expect("Pod", lab("2"))
			},
			want: state{BobReserves: true, Len: 1},
		},
		"writes lapsed less than a TTL ago stay for Wait to report": {
			do: func(tr *Tracker, clk *testingclock.FakePassiveClock) {
				tr.ExpectBy(kind, lab("5"), "alice")
				clk.SetTime(clk.Now().Add(2*ttl - time.Second))
				tr.Expect("Pod", lab("2"))
			},
			want: state{BobReserves: true, Len: 2},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			clk := testingclock.NewFakePassiveClock(t0)
			tr := NewTracker(clk, ttl)
			tc.do(tr, clk)
			var got state
			got.Len = tr.Len()
			got.Expected = tr.Expected(kind, key)
			found, ok := tr.ExpectedBy(kind, "alice")
			got.ByAlice = ok && found == key
			got.BobReserves = tr.Reserve(kind, key, "bob")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("state of lab-a (-want +got):\n%s", diff)
			}
		})
	}
}
