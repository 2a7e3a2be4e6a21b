package crash_test

import (
	"context"
	"strconv"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/test/integration"
)

// laggingReads makes an operator's view of one pool's labs lag: while frozen, a List of
// LabEnvironments that selects the pool's label is served from a snapshot taken when it
// froze, whatever the operator wrote since. The pool controller reads its labs that way;
// the only other reader of that list, the claim controller binding a claim, has nothing
// to do in a story without claims.
type laggingReads struct {
	pool string

	mu       sync.Mutex
	frozen   bool
	snapshot []labforgev1alpha1.LabEnvironment
	served   int
}

// wrap is the client wrapper (beneath the recorder) of an operator whose reads lag.
func (l *laggingReads) wrap(c client.Client) client.Client {
	return interceptor.NewClient(watchless{c}, interceptor.Funcs{
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			envs, ok := list.(*labforgev1alpha1.LabEnvironmentList)
			lo := (&client.ListOptions{}).ApplyOptions(opts)
			if !ok || lo.LabelSelector == nil || lo.FieldSelector != nil {
				return c.List(ctx, list, opts...)
			}
			if pool, _ := lo.LabelSelector.RequiresExactMatch(labforgev1alpha1.LabelPool); pool != l.pool {
				return c.List(ctx, list, opts...)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if !l.frozen {
				return c.List(ctx, list, opts...)
			}
			envs.Items = nil
			for i := range l.snapshot {
				if lo.LabelSelector.Matches(labels.Set(l.snapshot[i].Labels)) {
					envs.Items = append(envs.Items, *l.snapshot[i].DeepCopy())
				}
			}
			l.served++
			return nil
		},
	})
}

// freeze makes the pool's labs, as the operator sees them, what the API holds now.
func (l *laggingReads) freeze(ctx context.Context) {
	var envs labforgev1alpha1.LabEnvironmentList
	Expect(k8s.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: l.pool})).To(Succeed())
	l.mu.Lock()
	defer l.mu.Unlock()
	l.frozen, l.snapshot = true, envs.Items
}

// catchUp ends the lag: the operator reads its labs as they are again.
func (l *laggingReads) catchUp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.frozen, l.snapshot = false, nil
}

// staleReads is how many lists were served from the snapshot.
func (l *laggingReads) staleReads() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.served
}

// labWatch follows a pool's labs through a watch on the API server and records how many
// there were at most (and, since reset, at least): counts a poll could miss.
type labWatch struct {
	mu      sync.Mutex
	live    map[string]bool // no deletion timestamp
	all     map[string]bool
	maxLive int
	maxAll  int
	minLive int
	broken  error
}

func watchLabs(ctx context.Context, pool string) *labWatch {
	w, err := k8s.Watch(ctx, &labforgev1alpha1.LabEnvironmentList{}, client.MatchingLabels{labforgev1alpha1.LabelPool: pool})
	Expect(err).NotTo(HaveOccurred())
	lw := &labWatch{live: map[string]bool{}, all: map[string]bool{}}
	lw.resetMin()
	go func() {
		defer GinkgoRecover()
		for ev := range w.ResultChan() {
			env, ok := ev.Object.(*labforgev1alpha1.LabEnvironment)
			lw.mu.Lock()
			switch {
			case !ok:
				lw.broken = apierrors.FromObject(ev.Object)
			case ev.Type == watch.Deleted:
				delete(lw.live, env.Name)
				delete(lw.all, env.Name)
			default:
				lw.all[env.Name] = true
				if env.DeletionTimestamp.IsZero() {
					lw.live[env.Name] = true
				} else {
					delete(lw.live, env.Name)
				}
			}
			lw.maxLive, lw.maxAll = max(lw.maxLive, len(lw.live)), max(lw.maxAll, len(lw.all))
			lw.minLive = min(lw.minLive, len(lw.live))
			lw.mu.Unlock()
		}
	}()
	DeferCleanup(w.Stop)
	return lw
}

// counts returns the labs live now, and the most live and existing at once so far.
func (lw *labWatch) counts() (live, maxLive, maxAll, minLive int, err error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return len(lw.live), lw.maxLive, lw.maxAll, lw.minLive, lw.broken
}

// resetMin starts recording the fewest live labs from now.
func (lw *labWatch) resetMin() {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.minLive = len(lw.live)
}

// readyLabs counts the pool's labs that are Ready, unbound and not being deleted, in the
// API.
func readyLabs(ctx context.Context, g Gomega, pool string) int {
	var envs labforgev1alpha1.LabEnvironmentList
	g.Expect(k8s.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: pool})).To(Succeed())
	n := 0
	for _, env := range envs.Items {
		if env.DeletionTimestamp.IsZero() && env.Spec.ClaimRef == nil && meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionReady) {
			n++
		}
	}
	return n
}

var _ = Describe("A pool controller whose reads lag behind its own writes", Ordered, func() {
	It("never creates or deletes a lab twice, and refills to exactly its size once it catches up", func(ctx context.Context) {
		const pool = "lag"
		lag := &laggingReads{pool: pool}
		op := startOperator(lag.wrap)
		DeferCleanup(func() { op.stop() })
		labs := watchLabs(ctx, pool)
		labWrites := func(verb string, from int) int {
			n := 0
			for _, w := range op.rec.allWrites()[from:] {
				if w.Verb == verb && w.Kind == "LabEnvironment" {
					n++
				}
			}
			return n
		}
		setReplicas := func(n int32) {
			var p labforgev1alpha1.LabPool
			Expect(k8s.Get(ctx, client.ObjectKey{Name: pool}, &p)).To(Succeed())
			patch := client.MergeFrom(p.DeepCopy())
			p.Spec.Replicas = n
			Expect(k8s.Patch(ctx, &p, patch)).To(Succeed())
		}
		// A cache that catches up delivers the events it held back; a snapshot that is
		// dropped delivers none, so the story sends the pool one, as those would.
		nudge := func(n int) {
			var p labforgev1alpha1.LabPool
			Expect(k8s.Get(ctx, client.ObjectKey{Name: pool}, &p)).To(Succeed())
			patch := client.MergeFrom(p.DeepCopy())
			p.Annotations = map[string]string{"test.labforge.dev/nudge": strconv.Itoa(n)}
			Expect(k8s.Patch(ctx, &p, patch)).To(Succeed())
		}

		By("filling a pool of 2 with a cache that keeps up")
		Expect(k8s.Create(ctx, integration.MakeTemplate("lag").BootTimeout(2*time.Hour).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, "lag").Replicas(2).MaxLabs(10).Obj())).To(Succeed())
		Eventually(poolStatus(ctx, pool)).Should(And(HaveField("ReadyReplicas", int32(2)), HaveField("Replicas", int32(2))))

		By("scaling to 5 while the pool controller sees its labs as they were")
		lag.freeze(ctx)
		from := op.rec.mark()
		setReplicas(5)
		Eventually(func(g Gomega) { g.Expect(readyLabs(ctx, g, pool)).To(Equal(5)) }).Should(Succeed())
		staleBefore := lag.staleReads()
		// Each lab's boot woke the pool; each time it saw 2 labs, and 3 it had created.
		Expect(staleBefore).To(BeNumerically(">=", 3))
		Eventually(poolStatus(ctx, pool)).Should(HaveField("ObservedGeneration", int64(2)))
		Expect(poolStatus(ctx, pool)(Default)).To(HaveField("ReadyReplicas", int32(2)), "the pool's view must lag")
		Expect(labWrites("create", from)).To(Equal(3), "the pool sent a create its expectations should have held back")

		By("deleting a lab by hand while the view still lags: the pool, which cannot see it, waits")
		var victim labforgev1alpha1.LabEnvironment
		Expect(k8s.Get(ctx, client.ObjectKey{Name: pool + "-0"}, &victim)).To(Succeed())
		Expect(k8s.Delete(ctx, &victim)).To(Succeed())
		Eventually(func(g Gomega) {
			live, _, _, _, err := labs.counts()
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(live).To(Equal(4))
			g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(&victim), &labforgev1alpha1.LabEnvironment{}))).To(BeTrue())
		}).WithTimeout(time.Minute).Should(Succeed())
		// Its deletion, its finalizer's removal and its going all woke the pool.
		Expect(lag.staleReads()).To(BeNumerically(">=", staleBefore+2), "the pool looked again")
		Expect(labWrites("create", from)).To(Equal(3))

		By("catching up: the pool refills to exactly 5")
		lag.catchUp()
		nudge(1)
		Eventually(func(g Gomega) {
			g.Expect(readyLabs(ctx, g, pool)).To(Equal(5))
			g.Expect(poolStatus(ctx, pool)(g)).To(And(HaveField("ReadyReplicas", int32(5)), HaveField("Replicas", int32(5)), HaveField("BootingReplicas", int32(0))))
		}).WithTimeout(time.Minute).Should(Succeed())
		Expect(labWrites("create", from)).To(Equal(4))
		_, maxLive, maxAll, _, err := labs.counts()
		Expect(err).NotTo(HaveOccurred())
		Expect(maxLive).To(Equal(5), "labs live at once, at most")
		Expect(maxAll).To(BeNumerically("<=", 6), "labs at once, the one being deleted included")

		By("scaling down to 2 while the view lags: the pool deletes 3 labs once, never more")
		lag.freeze(ctx)
		labs.resetMin()
		from = op.rec.mark()
		setReplicas(2)
		Eventually(func(g Gomega) { g.Expect(readyLabs(ctx, g, pool)).To(Equal(2)) }).Should(Succeed())
		staleBefore = lag.staleReads()
		Eventually(func(g Gomega) {
			var envs labforgev1alpha1.LabEnvironmentList
			g.Expect(k8s.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: pool})).To(Succeed())
			g.Expect(envs.Items).To(HaveLen(2), "the deleted labs are gone")
		}).WithTimeout(time.Minute).Should(Succeed())
		Expect(lag.staleReads()).To(BeNumerically(">", staleBefore), "the pool looked again while the deleted labs went")
		Expect(labWrites("delete", from)).To(Equal(3), "the pool sent a delete its expectations should have held back")

		lag.catchUp()
		nudge(2)
		Eventually(poolStatus(ctx, pool)).Should(And(HaveField("ReadyReplicas", int32(2)), HaveField("Replicas", int32(2))))
		Consistently(func(g Gomega) { g.Expect(readyLabs(ctx, g, pool)).To(Equal(2)) }).WithTimeout(time.Second).Should(Succeed())
		_, _, _, minLive, err := labs.counts()
		Expect(err).NotTo(HaveOccurred())
		Expect(minLive).To(Equal(2), "labs live at once, at least, after the scale-down")
		Expect(labWrites("delete", from)).To(Equal(3))
		Expect(labWrites("create", from)).To(BeZero())

		By("deleting the pool: nothing is left")
		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabPool{ObjectMeta: metav1.ObjectMeta{Name: pool}})).To(Succeed())
		expectAllGone(ctx)
	})
})
