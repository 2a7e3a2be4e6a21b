package crash_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/test/integration"
)

// stamp is an object as a snapshot saw it.
type stamp struct {
	Kind, Namespace, Name string
	UID                   types.UID
	ResourceVersion       string
}

// snapshot maps write keys (kind/namespace/name) of every labforge object, and of every
// object labelled as managed by labforge, to their stamps.
type snapshot map[string]stamp

// takeSnapshot reads every LabTemplate, LabPool, LabClaim and LabEnvironment, and every
// object of the kinds labforge writes that is labelled as labforge's.
func takeSnapshot(ctx context.Context) snapshot {
	snap := snapshot{}
	managed := client.MatchingLabels{labforgev1alpha1.LabelManagedBy: labforgev1alpha1.ManagedByValue}
	kinds := []schema.GroupVersionKind{
		labforgev1alpha1.GroupVersion.WithKind("LabTemplate"), labforgev1alpha1.GroupVersion.WithKind("LabPool"),
		labforgev1alpha1.GroupVersion.WithKind("LabClaim"), labforgev1alpha1.GroupVersion.WithKind("LabEnvironment"),
		{Version: "v1", Kind: "Namespace"},
	}
	kinds = append(kinds, labKinds...)
	for _, gvk := range kinds {
		var l metav1.PartialObjectMetadataList
		l.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		var opts []client.ListOption
		if gvk.Group != labforgev1alpha1.GroupVersion.Group {
			opts = append(opts, managed)
		}
		Expect(k8s.List(ctx, &l, opts...)).To(Succeed())
		for _, o := range l.Items {
			snap[write{Kind: gvk.Kind, Namespace: o.Namespace, Name: o.Name}.key()] = stamp{
				Kind: gvk.Kind, Namespace: o.Namespace, Name: o.Name, UID: o.UID, ResourceVersion: o.ResourceVersion,
			}
		}
	}
	return snap
}

// poolCountsFromAPI counts a pool's labs and waiting claims from a listing of the API, as
// an admin would with kubectl: what the pool's status must say.
func poolCountsFromAPI(ctx context.Context, g Gomega, pool string) labforgev1alpha1.LabPoolStatus {
	var envs labforgev1alpha1.LabEnvironmentList
	g.Expect(k8s.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: pool})).To(Succeed())
	var st labforgev1alpha1.LabPoolStatus
	for _, env := range envs.Items {
		switch {
		case !env.DeletionTimestamp.IsZero():
		case env.Spec.ClaimRef != nil:
			st.BoundReplicas++
		case meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionStalled):
			st.FailedReplicas++
		case meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionReady):
			st.ReadyReplicas++
		default:
			st.BootingReplicas++
		}
	}
	st.Replicas = st.ReadyReplicas + st.BootingReplicas
	var claims labforgev1alpha1.LabClaimList
	g.Expect(k8s.List(ctx, &claims)).To(Succeed())
	for _, c := range claims.Items {
		if c.Spec.PoolRef != nil && c.Spec.PoolRef.Name == pool && c.DeletionTimestamp.IsZero() && c.Status.Lab == "" &&
			!meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionStalled) &&
			!meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionExpired) {
			st.WaitingClaims++
		}
	}
	// Claims a Ready lab is free for are being bound, not waiting.
	st.WaitingClaims = max(0, st.WaitingClaims-st.ReadyReplicas)
	return st
}

// countsOf keeps the counts of a pool's status.
func countsOf(st labforgev1alpha1.LabPoolStatus) labforgev1alpha1.LabPoolStatus {
	return labforgev1alpha1.LabPoolStatus{
		Replicas: st.Replicas, ReadyReplicas: st.ReadyReplicas, BootingReplicas: st.BootingReplicas,
		BoundReplicas: st.BoundReplicas, FailedReplicas: st.FailedReplicas, WaitingClaims: st.WaitingClaims,
	}
}

var _ = Describe("An operator restarted with claims in every state", Ordered, func() {
	It("re-provisions nothing, re-binds nothing, forgets nothing, and rebuilds the pool's counts from the API", func(ctx context.Context) {
		const ns, pool = "restart", "restart"
		countAll := func(write, client.Object) bool { return true }
		Expect(k8s.Create(ctx, integration.MakeTemplate("restart").BootTimeout(2*time.Hour).AdmitClaimsFrom(ns).Obj())).To(Succeed())
		// Three labs at most, one warm.
		Expect(k8s.Create(ctx, integration.MakePool(pool, "restart").Replicas(1).MaxLabs(3).Obj())).To(Succeed())
		createNamespace(ctx, ns)
		// The first operator lives an hour in the past; the new one on the real clock. The
		// clock moves back, not forward, because labs minted by the new operator must be
		// valid now: a CA or certificate minted an hour ahead would not be valid for the
		// simulated labs (real time) yet, and a lab would never become Ready.
		clk.Set(-time.Hour)
		DeferCleanup(func() { clk.Set(0) })
		op := startOperator(nil)
		DeferCleanup(func() { op.stop() })
		op.rec.arm(countAll, 0)

		ready := func(name string) func(Gomega) {
			return func(g Gomega) {
				c := getClaim(ctx, g, ns, name)
				g.Expect(meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionReady)).To(BeTrue(), "claim %s is not Ready", name)
			}
		}
		By("serving three claims from the pool: one to keep, one to expire, one to delete")
		for _, c := range []struct {
			name     string
			duration time.Duration
		}{{"ready", 4 * time.Hour}, {"expiring", time.Hour}, {"deleting", 4 * time.Hour}} {
			Eventually(poolStatus(ctx, pool)).Should(HaveField("ReadyReplicas", int32(1)))
			Expect(k8s.Create(ctx, integration.MakeClaim(ns, c.name).Pool(pool).GenerateKeyPair().Duration(c.duration).Obj())).To(Succeed())
			Eventually(ready(c.name)).Should(Succeed())
		}
		By("queueing a fourth claim on the pool, which is at its maxLabs")
		Expect(k8s.Create(ctx, integration.MakeClaim(ns, "waiting").Pool(pool).GenerateKeyPair().Duration(4*time.Hour).Obj())).To(Succeed())
		Eventually(func(g Gomega) {
			c := getClaim(ctx, g, ns, "waiting")
			g.Expect(meta.FindStatusCondition(c.Status.Conditions, labforgev1alpha1.ConditionReady)).To(
				And(Not(BeNil()), HaveField("Reason", labforgev1alpha1.ReasonWaitingForLab)))
		}).Should(Succeed())
		Eventually(poolStatus(ctx, pool)).Should(And(HaveField("BoundReplicas", int32(3)), HaveField("WaitingClaims", int32(1))))

		By("binding a template claim to a lab that cannot boot while the VM backend is down")
		backend.stop()
		Expect(k8s.Create(ctx, integration.MakeClaim(ns, "booting").Template("restart").GenerateKeyPair().Duration(4*time.Hour).Obj())).To(Succeed())
		var bootingLab string
		Eventually(func(g Gomega) {
			c := getClaim(ctx, g, ns, "booting")
			g.Expect(c.Status.Lab).NotTo(BeEmpty())
			g.Expect(meta.FindStatusCondition(c.Status.Conditions, labforgev1alpha1.ConditionReady)).To(
				And(Not(BeNil()), HaveField("Reason", "LabBooting")))
			var vms metav1.PartialObjectMetadataList
			vms.SetGroupVersionKind(schema.GroupVersionKind{Group: "kubevirt.io", Version: "v1", Kind: "VirtualMachineList"})
			g.Expect(k8s.List(ctx, &vms, client.InNamespace(lab.Namespace(c.Status.Lab)))).To(Succeed())
			g.Expect(vms.Items).To(HaveLen(2))
			bootingLab = c.Status.Lab
		}).Should(Succeed())
		waitQuiet(op.rec)
		op.stop()
		before := op.rec.allWrites()

		claims := map[string]*labforgev1alpha1.LabClaim{}
		for _, name := range []string{"ready", "expiring", "deleting", "waiting", "booting"} {
			claims[name] = getClaim(ctx, Default, ns, name)
		}
		labOf := func(c *labforgev1alpha1.LabClaim) *labforgev1alpha1.LabEnvironment {
			var env labforgev1alpha1.LabEnvironment
			Expect(k8s.Get(ctx, client.ObjectKey{Name: c.Status.Lab}, &env)).To(Succeed())
			return &env
		}
		labs := map[string]*labforgev1alpha1.LabEnvironment{}
		for _, name := range []string{"ready", "expiring", "deleting", "booting"} {
			labs[name] = labOf(claims[name])
		}
		Expect(labs["booting"].Name).To(Equal(bootingLab))

		By("deleting a claim while no operator runs: it goes at once (no finalizer), its lab stays until the operator is back")
		deleting := claims["deleting"]
		Expect(k8s.Delete(ctx, deleting)).To(Succeed())
		Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(deleting), &labforgev1alpha1.LabClaim{}))).To(BeTrue())
		var envsBefore labforgev1alpha1.LabEnvironmentList
		Expect(k8s.List(ctx, &envsBefore)).To(Succeed())
		Expect(envsBefore.Items).To(HaveLen(4), "three labs of the pool and the template claim's")

		Expect(meta.IsStatusConditionTrue(claims["expiring"].Status.Conditions, labforgev1alpha1.ConditionExpired)).To(BeFalse())

		By("starting a new operator and VM backend an hour later: the expiring claim is due")
		clk.Set(0)
		snap := takeSnapshot(ctx)
		backend.start()
		op = startOperator(nil)
		op.rec.arm(countAll, 0)

		By("ending the deleted claim and its lab")
		Eventually(func() bool {
			return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(deleting), &labforgev1alpha1.LabClaim{}))
		}).Should(BeTrue())
		By("expiring the expiring claim, which stays to say so")
		Eventually(func(g Gomega) {
			c := getClaim(ctx, g, ns, "expiring")
			g.Expect(meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionExpired)).To(BeTrue())
		}).Should(Succeed())
		for _, name := range []string{"deleting", "expiring"} {
			// Gone: the pool may give its name (its lowest free ordinal) to a new lab.
			Eventually(func() bool {
				var env labforgev1alpha1.LabEnvironment
				err := k8s.Get(ctx, client.ObjectKeyFromObject(labs[name]), &env)
				return apierrors.IsNotFound(err) || (err == nil && env.UID != labs[name].UID)
			}).WithTimeout(time.Minute).Should(BeTrue(), "the lab of claim %s is still there", name)
		}
		By("booting the template claim's lab to Ready: the same lab, not a new one")
		Eventually(ready("booting")).Should(Succeed())
		By("serving the waiting claim with a lab booted once one was freed")
		Eventually(ready("waiting")).WithTimeout(time.Minute).Should(Succeed())

		after := map[string]*labforgev1alpha1.LabClaim{}
		for _, name := range []string{"ready", "expiring", "waiting", "booting"} {
			after[name] = getClaim(ctx, Default, ns, name)
		}
		for _, name := range []string{"ready", "booting"} {
			Expect(after[name].Status.Lab).To(Equal(labs[name].Name), "claim %s was re-bound", name)
			env := labOf(after[name])
			Expect(env.UID).To(Equal(labs[name].UID), "the lab of claim %s was re-created", name)
			Expect(env.Spec.ClaimRef).To(Equal(labs[name].Spec.ClaimRef), "the claimRef of the lab of %s changed", name)
			Expect(labInventory(ctx, Default, env.Name, env.UID)).To(HaveKeyWithValue("Service", []string{"lab-api"}))
		}
		Expect(after["ready"].ResourceVersion).To(Equal(claims["ready"].ResourceVersion), "the Ready claim was written to")
		Expect(after["booting"].Status.LaunchType).To(Equal(labforgev1alpha1.LaunchCold))
		waitingLab := labOf(after["waiting"])
		for _, env := range envsBefore.Items {
			Expect(waitingLab.UID).NotTo(Equal(env.UID), "the waiting claim took lab %s, from before the restart", env.Name)
		}
		Expect(waitingLab.Spec.PoolRef).To(HaveField("Name", pool))
		Expect(after["waiting"].Status.LaunchType).To(Equal(labforgev1alpha1.LaunchCold), "the waiting claim's lab was booted for it")
		Expect(after["expiring"].Status.Lab).To(Equal(labs["expiring"].Name))

		By("keeping every object of the kept labs: same UIDs, and no write to the Ready one")
		now := takeSnapshot(ctx)
		ofLab := func(st stamp, env string) bool {
			return (st.Kind == "LabEnvironment" && st.Name == env) || (st.Kind == "Namespace" && st.Name == lab.Namespace(env)) ||
				st.Namespace == lab.Namespace(env)
		}
		kept := map[string]int{}
		for key, was := range snap {
			switch {
			case ofLab(was, labs["deleting"].Name) || ofLab(was, labs["expiring"].Name):
				// Gone, and their names free for new labs of the pool.
			case was.Kind == "LabClaim" && was.Name == "deleting", was.Kind == "Secret" && was.Namespace == ns &&
				(strings.HasPrefix(was.Name, "deleting-") || strings.HasPrefix(was.Name, "expiring-")):
				Expect(now).NotTo(HaveKey(key), "%s outlived its claim", key)
			case ofLab(was, labs["ready"].Name):
				// The Ready claim's lab: not one write.
				Expect(now).To(HaveKeyWithValue(key, was), "%s of the Ready claim's lab changed; the operator's writes to it: %v", key, writesTo(op.rec.allWrites(), key))
				kept["ready"]++
			default:
				Expect(now).To(HaveKey(key), "%s is gone", key)
				Expect(now[key].UID).To(Equal(was.UID), "%s was re-created", key)
				if ofLab(was, labs["booting"].Name) {
					kept["booting"]++
				}
			}
		}
		// The LabEnvironment, its namespace, quota, limit range, 2 policies, template
		// snapshot, 4 Secrets, the API Service, 2 VMs and their VMIs; the booting lab had
		// no VMI yet.
		Expect(kept).To(Equal(map[string]int{"ready": 16, "booting": 14}))

		By("rebuilding the pool's counts from the API: one warm lab, two bound, nobody waiting")
		Eventually(func(g Gomega) {
			var p labforgev1alpha1.LabPool
			g.Expect(k8s.Get(ctx, client.ObjectKey{Name: pool}, &p)).To(Succeed())
			fromAPI := poolCountsFromAPI(ctx, g, pool)
			g.Expect(countsOf(p.Status)).To(Equal(fromAPI))
			g.Expect(fromAPI).To(Equal(labforgev1alpha1.LabPoolStatus{Replicas: 1, ReadyReplicas: 1, BoundReplicas: 2}))
		}).WithTimeout(time.Minute).Should(Succeed())
		Eventually(func(g Gomega) { expectNoOrphans(ctx, g) }).Should(Succeed())
		waitQuiet(op.rec)

		writes := op.rec.allWrites()
		var noops, changed, toReadyLab []write
		for _, w := range writes {
			was, ok := snap[w.key()]
			if ok && ofLab(was, labs["ready"].Name) {
				toReadyLab = append(toReadyLab, w)
			}
			// A write that left an object at the resourceVersion it had before the
			// restart changed nothing (a delete leaves the object it was given as it was).
			if ok && w.Err == nil && w.ResourceVersion == was.ResourceVersion && !strings.HasPrefix(w.Verb, "delete") {
				noops = append(noops, w)
			} else {
				changed = append(changed, w)
			}
		}
		AddReportEntry("writes of the restart", fmt.Sprintf(
			"before the restart (3 claims served, 1 waiting, 1 booting): %d writes\n"+
				"after the restart, until settled: %d writes\n"+
				"  %d re-applied objects unchanged since before the restart (%s)\n"+
				"  %d of those went to the Ready claim's lab, which none of them changed\n"+
				"  %d did the work of the restart (%s)",
			len(before), len(writes), len(noops), summarize(noops), len(toReadyLab), len(changed), summarize(changed)))

		By("ending every claim and the pool: nothing is left")
		Expect(k8s.DeleteAllOf(ctx, &labforgev1alpha1.LabClaim{}, client.InNamespace(ns))).To(Succeed())
		Expect(k8s.Delete(ctx, &labforgev1alpha1.LabPool{ObjectMeta: metav1.ObjectMeta{Name: pool}})).To(Succeed())
		expectAllGone(ctx)
	})
})

// writesTo keeps the writes to the object of a snapshot key.
func writesTo(writes []write, key string) []write {
	var out []write
	for _, w := range writes {
		if w.key() == key {
			out = append(out, w)
		}
	}
	return out
}
