package crash_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/test/integration"
)

// scenario is one student's claim, and the writes that are about it: the claim's own
// (anything in its namespace) and its lab's (the LabEnvironment, its namespace and
// everything in it). A warm scenario knows its lab from the start; a cold one learns it
// from the LabEnvironment the operator creates for the claim.
type scenario struct {
	ns, claim string

	mu  sync.Mutex
	env string
}

func (s *scenario) lab() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.env
}

func (s *scenario) match(w write, obj client.Object) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.Namespace == s.ns {
		return true
	}
	if w.Kind == "LabEnvironment" {
		if env, ok := obj.(*labforgev1alpha1.LabEnvironment); ok && s.env == "" && env.Spec.ClaimRef != nil &&
			env.Spec.ClaimRef.Namespace == s.ns && env.Spec.ClaimRef.Name == s.claim {
			s.env = w.Name
		}
		return s.env != "" && w.Name == s.env
	}
	return s.env != "" && (w.Namespace == lab.Namespace(s.env) || (w.Kind == "Namespace" && w.Name == lab.Namespace(s.env)))
}

// claimReady says whether the scenario's claim is Ready.
func (s *scenario) claimReady(ctx context.Context) bool {
	var c labforgev1alpha1.LabClaim
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: s.ns, Name: s.claim}, &c); err != nil {
		return false
	}
	return meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionReady)
}

// crashRun is what happened to one scenario.
type crashRun struct {
	k       int
	crashed bool
	// at is the write the operator crashed after.
	at write
	// keys is the lab's key material as the crash left it, if it had any.
	keys    keyMaterial
	hadKeys bool
	// writes are the scenario's counted writes until it was Ready: the first operator's
	// when it did not crash, the recovering operator's when it did.
	writes []write
	// pkiCreates counts the creates of the lab's PKI Secret, by both operators.
	pkiCreates int
	// refused counts the writes the crashed operator still tried to send.
	refused int
}

// waitQuiet waits until the recorder has counted no new write for a moment: the end of a
// burst of reconciles.
func waitQuiet(rec *recorder) {
	last, since := -1, time.Now()
	Eventually(func() bool {
		n, _ := rec.counts()
		if n != last {
			last, since = n, time.Now()
			return false
		}
		return time.Since(since) >= 500*time.Millisecond
	}).Should(BeTrue())
}

// serve arms op to crash right after the k-th write of sc (never when k is 0), creates the
// claim, and waits for the claim to be Ready; if op crashed, a fresh operator takes over
// and serves it. It returns the operator running afterwards and what happened.
func serve(ctx context.Context, op *operator, sc *scenario, k int, claim *labforgev1alpha1.LabClaim) (*operator, crashRun) {
	run := crashRun{k: k}
	from := map[*recorder]int{op.rec: op.rec.mark()}
	op.rec.arm(sc.match, k)
	Expect(k8s.Create(ctx, claim)).To(Succeed())
	Eventually(func() bool { return op.rec.hasCrashed() || sc.claimReady(ctx) }).Should(BeTrue())
	if !op.rec.hasCrashed() {
		waitQuiet(op.rec)
	}
	// No crash after this: the next scenario arms the recorder again.
	writes := op.rec.countedWrites()
	op.rec.arm(nil, 0)
	crashedOp := op
	if op.rec.crashing() {
		<-op.rec.crashedNow()
		op.stop()
		run.crashed, run.at, run.refused = true, op.rec.crashWrite(), op.rec.refusedWrites()
		if env := sc.lab(); env != "" {
			run.keys, run.hadKeys = readKeyMaterial(ctx, Default, env)
		}
		op = startOperator(nil)
		op.rec.arm(sc.match, 0)
		// Ready, and looked at by the new operator (which may have nothing left to do).
		Eventually(func() bool {
			return sc.claimReady(ctx) && op.rec.hasRead("LabClaim", client.ObjectKey{Namespace: sc.ns, Name: sc.claim}) &&
				op.rec.hasRead("LabEnvironment", client.ObjectKey{Name: sc.lab()})
		}).Should(BeTrue(), "the claim is not Ready after the crash after write %d (%s)", k, run.at)
		waitQuiet(op.rec)
		writes = op.rec.countedWrites()
		op.rec.arm(nil, 0)
	}
	run.writes = writes
	env := sc.lab()
	recorders := []*recorder{op.rec}
	if run.crashed {
		recorders = append(recorders, crashedOp.rec)
	}
	for _, r := range recorders {
		for _, w := range r.allWrites()[from[r]:] {
			if w.Verb == "create" && w.Kind == "Secret" && w.Namespace == lab.Namespace(env) && w.Name == lab.PKISecret {
				run.pkiCreates++
			}
		}
	}
	return op, run
}

// expectServedOnce checks the end state of a served scenario: the claim Ready with its
// launch type, exactly one lab bound to it (that lab: env), the lab's objects exactly
// those of want, each owned by the lab, the key material the lab was first given, the
// student's Secrets and access, and no orphan anywhere.
func expectServedOnce(ctx context.Context, sc *scenario, launch labforgev1alpha1.LaunchType, envUID types.UID, want inventory, keys keyMaterial) {
	claim := getClaim(ctx, Default, sc.ns, sc.claim)
	Expect(meta.IsStatusConditionTrue(claim.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue())
	Expect(claim.Status.Lab).To(Equal(sc.lab()))
	Expect(claim.Status.LaunchType).To(Equal(launch))
	bound := labsBoundTo(ctx, Default, claim.UID)
	Expect(bound).To(HaveLen(1), "labs bound to claim %s/%s", sc.ns, sc.claim)
	Expect(bound[0].Name).To(Equal(sc.lab()))
	if envUID != "" {
		Expect(bound[0].UID).To(Equal(envUID), "lab %s was re-created", sc.lab())
	}
	Expect(labInventory(ctx, Default, sc.lab(), bound[0].UID)).To(Equal(want))
	expectOneKeyMaterial(ctx, Default, sc.lab(), keys)
	expectHandedOver(ctx, Default, claim, keys)
	Eventually(func(g Gomega) { expectNoOrphans(ctx, g) }).Should(Succeed())
}

// crashPoints returns the writes to crash after: each of 1..n under LABFORGE_RELIABILITY=1
// (make test-reliability); else at most budget of them, spread evenly, the first and the
// last included, so that make test covers every phase in a few minutes.
func crashPoints(n, budget int) []int {
	if reliability() || n <= budget {
		ks := make([]int, n)
		for i := range ks {
			ks[i] = i + 1
		}
		return ks
	}
	ks := make([]int, 0, budget)
	for i := range budget {
		k := 1 + i*(n-1)/(budget-1)
		if len(ks) == 0 || ks[len(ks)-1] != k {
			ks = append(ks, k)
		}
	}
	return ks
}

// release deletes a scenario's claim (and with it its lab), without waiting.
func release(ctx context.Context, sc *scenario) {
	Expect(client.IgnoreNotFound(k8s.Delete(ctx, &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: sc.ns, Name: sc.claim}}))).To(Succeed())
}

// expectAllGone waits until no LabEnvironment and no lab namespace is left.
func expectAllGone(ctx context.Context) {
	Eventually(func(g Gomega) {
		var envs labforgev1alpha1.LabEnvironmentList
		g.Expect(k8s.List(ctx, &envs)).To(Succeed())
		g.Expect(envs.Items).To(BeEmpty())
		var namespaces corev1.NamespaceList
		g.Expect(k8s.List(ctx, &namespaces, client.HasLabels{labforgev1alpha1.LabelEnvironment})).To(Succeed())
		g.Expect(namespaces.Items).To(BeEmpty())
	}).WithTimeout(3 * time.Minute).WithPolling(500 * time.Millisecond).Should(Succeed())
	Eventually(func(g Gomega) { expectNoOrphans(ctx, g) }).Should(Succeed())
}

// expectReached checks that the operator made write k, and died after it, in every run
// but the last few of n writes. Controllers run concurrently, and the lab's quota is
// re-applied whenever kube-controller-manager updates its usage, so a claim's writes vary
// by a few from run to run: the last crash points may come after a run's last write.
func expectReached(runs []crashRun, n int) {
	for _, r := range runs {
		if r.k <= n-4 {
			Expect(r.crashed).To(BeTrue(), "the operator never made write %d (of %d when learned)", r.k, n)
		}
	}
}

func describeRuns(runs []crashRun) string {
	var b strings.Builder
	for _, r := range runs {
		switch {
		case r.crashed:
			fmt.Fprintf(&b, "crash after write %2d (%s), %d writes refused after it: the new operator wrote %d times to finish\n",
				r.k, r.at, r.refused, len(r.writes))
		default:
			fmt.Fprintf(&b, "no crash at write %2d: the claim was Ready after %d writes\n", r.k, len(r.writes))
		}
	}
	return b.String()
}

func describeWrites(ws []write) string {
	var b strings.Builder
	for _, w := range ws {
		fmt.Fprintf(&b, "%2d %s\n", w.Seq, w)
	}
	return b.String()
}

var _ = Describe("An operator killed right after one of its writes", Ordered, func() {
	var op *operator
	BeforeAll(func(ctx context.Context) {
		// Each scenario claims from a namespace of its own.
		Expect(k8s.Create(ctx, integration.MakeTemplate("crash").BootTimeout(2*time.Hour).AdmitAllClaims().Obj())).To(Succeed())
		op = startOperator(nil)
		DeferCleanup(func() { op.stop() })
	})

	It("still gives a cold claim exactly one lab, one CA and one kubeconfig, whichever write it died after", func(ctx context.Context) {
		By("learning the writes of a cold claim, from templateRef to Ready, without a crash")
		base := &scenario{ns: "cold-base", claim: "alice"}
		createNamespace(ctx, base.ns)
		var baseRun crashRun
		op, baseRun = serve(ctx, op, base, 0, integration.MakeClaim(base.ns, base.claim).Template("crash").GenerateKeyPair().Duration(time.Hour).Obj())
		n := len(baseRun.writes)
		AddReportEntry("writes of a cold claim", describeWrites(baseRun.writes))
		baseEnv := labsBoundTo(ctx, Default, getClaim(ctx, Default, base.ns, base.claim).UID)
		Expect(baseEnv).To(HaveLen(1))
		want := labInventory(ctx, Default, base.lab(), baseEnv[0].UID)
		Expect(want).To(HaveKeyWithValue("Namespace", []string{labNamespace}))
		Expect(want).To(HaveKeyWithValue("Service", []string{"lab-api"}))
		baseKeys, _ := readKeyMaterial(ctx, Default, base.lab())
		expectServedOnce(ctx, base, labforgev1alpha1.LaunchCold, "", want, baseKeys)
		Expect(baseRun.pkiCreates).To(Equal(1))
		release(ctx, base)

		var runs []crashRun
		for _, k := range crashPoints(n, 12) {
			By(fmt.Sprintf("crashing right after write %d of %d", k, n))
			sc := &scenario{ns: fmt.Sprintf("cold-%02d", k), claim: "alice"}
			createNamespace(ctx, sc.ns)
			var run crashRun
			op, run = serve(ctx, op, sc, k, integration.MakeClaim(sc.ns, sc.claim).Template("crash").GenerateKeyPair().Duration(time.Hour).Obj())
			runs = append(runs, run)
			keys := run.keys
			if !run.hadKeys {
				// Nothing was minted before the crash: the lab's first key material is
				// what the new operator minted.
				keys, _ = readKeyMaterial(ctx, Default, sc.lab())
			}
			expectServedOnce(ctx, sc, labforgev1alpha1.LaunchCold, "", want, keys)
			Expect(run.pkiCreates).To(Equal(1), "the lab's key material was minted %d times", run.pkiCreates)
			release(ctx, sc)
		}
		AddReportEntry("cold claims crashed after write k", describeRuns(runs))
		expectReached(runs, n)
		expectAllGone(ctx)
	})

	It("still hands a warm lab over exactly once, whichever write it died after", func(ctx context.Context) {
		// A pool of one lab at most: the lab taken is never replaced, so every write
		// after the claim is the handover's.
		warmLab := func(pool string) (string, types.UID, keyMaterial) {
			Expect(k8s.Create(ctx, integration.MakePool(pool, "crash").Replicas(1).MaxLabs(1).Obj())).To(Succeed())
			Eventually(poolStatus(ctx, pool)).Should(HaveField("ReadyReplicas", int32(1)))
			var env labforgev1alpha1.LabEnvironment
			Expect(k8s.Get(ctx, client.ObjectKey{Name: pool + "-0"}, &env)).To(Succeed())
			keys, found := readKeyMaterial(ctx, Default, env.Name)
			Expect(found).To(BeTrue())
			return env.Name, env.UID, keys
		}
		By("learning the writes of a warm claim's handover, without a crash")
		env, envUID, keys := warmLab("warm-base")
		base := &scenario{ns: "warm-base", claim: "bob", env: env}
		createNamespace(ctx, base.ns)
		baseBefore := labInventory(ctx, Default, env, envUID)
		Expect(baseBefore).To(HaveKeyWithValue("Service", []string{"lab-api"}), "a warm lab has no NodePorts")
		var baseRun crashRun
		op, baseRun = serve(ctx, op, base, 0, integration.MakeClaim(base.ns, base.claim).Pool("warm-base").GenerateKeyPair().Duration(time.Hour).Obj())
		n := len(baseRun.writes)
		AddReportEntry("writes of a warm claim's handover", describeWrites(baseRun.writes))
		want := labInventory(ctx, Default, env, envUID)
		expectServedOnce(ctx, base, labforgev1alpha1.LaunchWarm, envUID, want, keys)
		Expect(baseRun.pkiCreates).To(BeZero())
		release(ctx, base)

		var runs []crashRun
		for _, k := range crashPoints(n, 9) {
			By(fmt.Sprintf("crashing right after write %d of %d", k, n))
			pool := fmt.Sprintf("warm-%02d", k)
			env, envUID, keys := warmLab(pool)
			sc := &scenario{ns: pool, claim: "bob", env: env}
			createNamespace(ctx, sc.ns)
			var run crashRun
			op, run = serve(ctx, op, sc, k, integration.MakeClaim(sc.ns, sc.claim).Pool(pool).GenerateKeyPair().Duration(time.Hour).Obj())
			runs = append(runs, run)
			expectServedOnce(ctx, sc, labforgev1alpha1.LaunchWarm, envUID, want, keys)
			Expect(run.pkiCreates).To(BeZero())
			Eventually(poolStatus(ctx, pool)).Should(And(HaveField("BoundReplicas", int32(1)), HaveField("Replicas", int32(0))))
			release(ctx, sc)
		}
		AddReportEntry("warm claims crashed after write k", describeRuns(runs))
		expectReached(runs, n)
		Expect(k8s.DeleteAllOf(ctx, &labforgev1alpha1.LabPool{})).To(Succeed())
		expectAllGone(ctx)
		Eventually(func(g Gomega) {
			var pools labforgev1alpha1.LabPoolList
			g.Expect(k8s.List(ctx, &pools)).To(Succeed())
			g.Expect(pools.Items).To(BeEmpty())
		}).Should(Succeed())
	})
})

var _ = Describe("An operator killed right after it bound a warm lab", Ordered, func() {
	It("boots exactly one replacement once restarted: the claim is bound, not waiting", func(ctx context.Context) {
		const pool = "rebind"
		Expect(k8s.Create(ctx, integration.MakeTemplate("rebind").BootTimeout(2*time.Hour).Obj())).To(Succeed())
		Expect(k8s.Create(ctx, integration.MakePool(pool, "rebind").Replicas(1).MaxLabs(5).Obj())).To(Succeed())
		createNamespace(ctx, pool)
		labs := watchLabs(ctx, pool)
		op := startOperator(nil)
		DeferCleanup(func() { op.stop() })
		Eventually(poolStatus(ctx, pool)).Should(And(HaveField("ReadyReplicas", int32(1)), HaveField("Replicas", int32(1))))

		By("dying right after the bind, before the claim's status says so")
		bind := func(w write, _ client.Object) bool {
			return w.Verb == "update" && w.Kind == "LabEnvironment" && w.Name == pool+"-0"
		}
		op.rec.arm(bind, 1)
		Expect(k8s.Create(ctx, integration.MakeClaim(pool, "carol").Pool(pool).GenerateKeyPair().Duration(time.Hour).Obj())).To(Succeed())
		Eventually(op.rec.crashedNow()).Should(BeClosed())
		op.stop()
		Expect(getClaim(ctx, Default, pool, "carol").Status.Lab).To(BeEmpty())

		By("restarting: the claim is handed its lab, and the pool boots one lab in its place")
		op = startOperator(nil)
		sc := &scenario{ns: pool, claim: "carol", env: pool + "-0"}
		Eventually(func() bool { return sc.claimReady(ctx) }).Should(BeTrue())
		Eventually(poolStatus(ctx, pool)).Should(And(HaveField("ReadyReplicas", int32(1)), HaveField("BoundReplicas", int32(1)),
			HaveField("Replicas", int32(1)), HaveField("WaitingClaims", int32(0))))
		Expect(getClaim(ctx, Default, pool, "carol").Status.LaunchType).To(Equal(labforgev1alpha1.LaunchWarm))
		_, maxLive, maxAll, _, err := labs.counts()
		Expect(err).NotTo(HaveOccurred())
		Expect(maxLive).To(Equal(2), "labs live at once, at most: the bound one and its replacement")
		Expect(maxAll).To(Equal(2), "labs at once, at most")

		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: pool, Name: "carol"}})).To(Succeed())
		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabPool{ObjectMeta: metav1.ObjectMeta{Name: pool}})).To(Succeed())
		expectAllGone(ctx)
	})
})
