package claimsfirst

import (
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

func req(name string) reconcile.Request {
	return reconcile.Request{NamespacedName: types.NamespacedName{Name: name}}
}

func newTestQueue(classes map[string]int) *queue {
	q := NewQueue(func(r reconcile.Request) int { return classes[r.Name] })("test", workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	return q.(*queue)
}

func TestClaimWorkIsServedFirstAndTeardownLast(t *testing.T) {
	q := newTestQueue(map[string]int{"claim": Claim, "teardown": Background, "build": Normal})
	defer q.ShutDown()
	// Added in the worst order: teardown first, the claim last.
	q.Add(req("teardown"))
	q.Add(req("build"))
	q.AddWithOpts(priorityqueue.AddOpts{Priority: ptr(Background)}, req("resync")) // an unchanged object
	q.Add(req("claim"))
	var got []string
	var priorities []int
	for range 4 {
		item, priority, shutdown := q.GetWithPriority()
		if shutdown {
			t.Fatal("the queue shut down")
		}
		got, priorities = append(got, item.Name), append(priorities, priority)
		q.Done(item)
	}
	// The resync and the teardown are both Background; among equals, first in first out.
	if diff := cmp.Diff([]string{"claim", "build", "teardown", "resync"}, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{Claim, Normal, Background, Background}, priorities); diff != "" {
		t.Errorf("priorities (-want +got):\n%s", diff)
	}
}

func TestARequeueFallsBackInLineOnceTheClaimIsServed(t *testing.T) {
	classes := map[string]int{"lab": Claim}
	q := newTestQueue(classes)
	defer q.ShutDown()
	q.Add(req("lab"))
	item, priority, _ := q.GetWithPriority()
	if priority != Claim {
		t.Fatalf("priority %d, want %d", priority, Claim)
	}
	// The claim got its lab; the controller requeues the lab with the priority it had.
	classes["lab"] = Normal
	q.AddWithOpts(priorityqueue.AddOpts{Priority: ptr(priority)}, item)
	q.Done(item)
	if _, priority, _ = q.GetWithPriority(); priority != Normal {
		t.Errorf("requeued with priority %d, want %d", priority, Normal)
	}
}

// TestGetReturnsOnShutdown runs controller-runtime#3538's reproduction: workers adding and
// getting while the queue shuts down must all return.
func TestGetReturnsOnShutdown(t *testing.T) {
	for round := range 20 {
		q := newTestQueue(map[string]int{})
		var wg sync.WaitGroup
		for w := range 20 {
			wg.Go(func() {
				for i := 0; ; i++ {
					q.Add(req(string(rune('a'+w)) + string(rune('a'+i%26))))
					item, _, shutdown := q.GetWithPriority()
					if shutdown {
						return
					}
					q.Done(item)
				}
			})
		}
		time.Sleep(5 * time.Millisecond)
		q.ShutDown()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: workers still blocked in Get 10s after ShutDown", round)
		}
	}
}

func TestTimersAndRetriesOfClaimWorkDoNotJumpTheLine(t *testing.T) {
	q := newTestQueue(map[string]int{"cold-lab": Claim})
	defer q.ShutDown()
	for _, o := range []priorityqueue.AddOpts{{After: time.Millisecond, Priority: ptr(Claim)}, {RateLimited: true, Priority: ptr(Claim)}} {
		q.AddWithOpts(o, req("cold-lab"))
		item, priority, _ := q.GetWithPriority()
		q.Done(item)
		if priority != Normal {
			t.Errorf("added with %+v: priority %d, want %d", o, priority, Normal)
		}
	}
}

func ptr(i int) *int { return &i }
