// Package claimsfirst orders a controller's work queue so that what a claim waits on is
// served before lab building and teardown (decision 91). It is controller-runtime's
// priority queue, with each item's priority decided by the controller from its cache
// when the item is added, whoever adds it: an event, a requeue, a probe's answer.
package claimsfirst

import (
	"sync"
	"time"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/controller/priorityqueue"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Priorities a Classifier gives.
const (
	// Claim is work a claim waits on: a claim being bound or handed its lab, a lab booting
	// for a claim that took it cold. Served before anything else.
	Claim = 100
	// Normal is everything else a controller does: building a warm lab, say. Events
	// from the initial list and resyncs stay below it (controller-runtime's
	// handler.LowPriority), as controller-runtime's own handlers set them.
	Normal = 0
	// Background is teardown: a lab being deleted, a released claim's clean-up. Nobody
	// waits on it but the pool's refill, which waits on the building anyway.
	Background = handler.LowPriority
)

// Classifier says which of Claim, Normal or Background the work on req is now, from the
// controller's cache. It runs on every add, in the adder's goroutine: a cache read, no
// API call.
type Classifier func(req reconcile.Request) int

// NewQueue returns a controller.Options.NewQueue that orders the controller's work by
// classify.
func NewQueue(classify Classifier) func(string, workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	return func(name string, rateLimiter workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
		return newQueue(priorityqueue.New(name, func(o *priorityqueue.Opts[reconcile.Request]) {
			o.RateLimiter = rateLimiter
		}), classify)
	}
}

func newQueue(inner priorityqueue.PriorityQueue[reconcile.Request], classify Classifier) *queue {
	return &queue{PriorityQueue: inner, classify: classify, done: make(chan struct{})}
}

// queue is a priority queue whose items' priorities classify decides, and whose Get
// returns once it is shut down.
type queue struct {
	priorityqueue.PriorityQueue[reconcile.Request]
	classify Classifier
	done     chan struct{}
	stop     sync.Once
}

// priority is the priority an item added with o gets: Background when the classifier
// says so; Claim when it says so and the item is a wake-up (an event, a probe's answer),
// not a timer or a retry, so that labs polling for their boot or failing again and again
// cannot hold every worker and starve the builds; otherwise the given one, never above
// Normal, so that a requeue of work that was the claim's falls back in line once the
// claim is served.
func (q *queue) priority(o priorityqueue.AddOpts, item reconcile.Request) *int {
	switch c := q.classify(item); {
	case c == Background, c == Claim && o.After == 0 && !o.RateLimited:
		return &c
	}
	p := Normal
	if o.Priority != nil && *o.Priority < Normal {
		p = *o.Priority
	}
	return &p
}

// AddWithOpts adds items with the priorities their classification gives.
func (q *queue) AddWithOpts(o priorityqueue.AddOpts, items ...reconcile.Request) {
	for _, item := range items {
		opts := o
		opts.Priority = q.priority(o, item)
		q.PriorityQueue.AddWithOpts(opts, item)
	}
}

// Add adds item now.
func (q *queue) Add(item reconcile.Request) { q.AddWithOpts(priorityqueue.AddOpts{}, item) }

// AddAfter adds item after d.
func (q *queue) AddAfter(item reconcile.Request, d time.Duration) {
	q.AddWithOpts(priorityqueue.AddOpts{After: d}, item)
}

// AddRateLimited adds item after its rate limiter's backoff.
func (q *queue) AddRateLimited(item reconcile.Request) {
	q.AddWithOpts(priorityqueue.AddOpts{RateLimited: true}, item)
}

// GetWithPriority waits for the next item and returns shutdown once the queue is shut
// down. controller-runtime v0.24.1's priority queue can hand an item to a Get that already
// returned on shutdown and then block with its lock held, so that a worker's next Get
// never returns and the manager never stops (kubernetes-sigs/controller-runtime#3538,
// fixed by #3540 after v0.24.1). The inner Get runs in a goroutine of its own, left
// behind if that happens: a goroutine, not a manager that cannot stop.
func (q *queue) GetWithPriority() (reconcile.Request, int, bool) {
	select {
	case <-q.done:
		return reconcile.Request{}, 0, true
	default:
	}
	type got struct {
		item     reconcile.Request
		priority int
		shutdown bool
	}
	ch := make(chan got, 1)
	go func() {
		item, priority, shutdown := q.PriorityQueue.GetWithPriority()
		ch <- got{item, priority, shutdown}
	}()
	select {
	case g := <-ch:
		return g.item, g.priority, g.shutdown
	case <-q.done:
		return reconcile.Request{}, 0, true
	}
}

// Done marks item done. The priority queue's Done takes the lock #3538 can leave held
// after a shutdown, so it too gives up once the queue is shut down.
func (q *queue) Done(item reconcile.Request) {
	finished := make(chan struct{})
	go func() {
		q.PriorityQueue.Done(item)
		close(finished)
	}()
	select {
	case <-finished:
	case <-q.done:
	}
}

// Get waits for the next item (GetWithPriority).
func (q *queue) Get() (reconcile.Request, bool) {
	item, _, shutdown := q.GetWithPriority()
	return item, shutdown
}

// ShutDown shuts the queue down: every Get returns.
func (q *queue) ShutDown() {
	q.stop.Do(func() {
		close(q.done)
		q.PriorityQueue.ShutDown()
	})
}

// ShutDownWithDrain shuts the queue down (the priority queue does not drain).
func (q *queue) ShutDownWithDrain() { q.ShutDown() }
