// Package labpool is the LabPool reconciler: it keeps a pool's warm labs booted, serves
// waiting claims first, and replaces warm labs built from an old template.
//
// The arithmetic of a pass (how many labs to create, which to delete and why) lives in
// Compute, a pure function of what the reconciler observed, so that every rule is
// table-tested without an API server. Creates and deletes the reconciler issued but the
// cache has not shown yet are tracked by Expectations and fed back into Compute, so that a
// lagging cache never causes over-creation or a second round of deletes.
package labpool

import (
	"cmp"
	"math"
	"slices"
	"time"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// LabState is where one of the pool's labs stands, as the pool reconciler sees it. The
// states are exclusive; the caller classifies a lab by the first that applies: Deleting
// (it has a deletion timestamp), Bound (it has a claimRef: its fate is the claim's, even if
// it breaks), Failed (its boot failed), Ready (the lab itself reported bootstrap complete),
// Booting (everything else).
type LabState string

// The states of a lab. A lab in any other state counts toward MaxLabs only.
const (
	// StateBooting is an unbound lab that is not Ready yet.
	StateBooting LabState = "Booting"
	// StateReady is an unbound lab a claim can take now.
	StateReady LabState = "Ready"
	// StateBound is a lab held by a claim. The pool never deletes it.
	StateBound LabState = "Bound"
	// StateFailed is an unbound lab whose boot failed. The pool deletes it.
	StateFailed LabState = "Failed"
	// StateDeleting is a lab whose deletion has begun; it occupies MaxLabs until it is gone.
	StateDeleting LabState = "Deleting"
)

// Lab is one of the pool's labs as observed in the cache.
type Lab struct {
	// Name of the LabEnvironment.
	Name string
	// Created is the lab's creation time. It orders deletes (newest first).
	Created time.Time
	// State is where the lab stands.
	State LabState
	// TemplateGeneration is the generation of the template the lab was built from; 0 means
	// not known yet, and such a lab is never stale (see Compute).
	TemplateGeneration int64
}

// Input is everything one pass of the pool reconciler observed. Negative numbers are read
// as 0.
type Input struct {
	// Replicas is the pool's buffer: the unbound labs it keeps beyond the waiting claims
	// (spec.replicas, or an open window's buffer: Sizing.Buffer).
	Replicas int32
	// MinLabs is the pool's floor on its labs, bound or unbound (spec.minLabs, or an open
	// window's: Sizing.MinLabs); 0 is no floor.
	MinLabs int32
	// MaxBooting caps the labs booting at once (spec.maxBooting).
	MaxBooting int32
	// MaxLabs caps the pool's labs of every state (spec.maxLabs).
	MaxLabs int32
	// Strategy is the pool's update strategy; empty means RollingUpdate, the API default.
	Strategy labforgev1alpha1.PoolUpdateStrategyType
	// TemplateGeneration is the current generation of the pool's template; 0 means not
	// known, and then no lab is stale.
	TemplateGeneration int64
	// Labs is every lab of the pool as observed, in any order.
	Labs []Lab
	// WaitingClaims is the number of claims of this pool waiting for a lab.
	WaitingClaims int32
	// PendingCreates is the number of creates issued but not yet seen in Labs.
	PendingCreates int32
	// PendingDeletes is the number of deletes issued whose lab Labs still shows undeleted.
	PendingDeletes int32
	// CircuitOpen is true when refilling stopped after repeated boot failures.
	CircuitOpen bool
}

// Plan is what one pass should do, and what it counted.
type Plan struct {
	// Create is the number of labs to create now, from the current template.
	Create int32
	// Delete lists the labs to delete now and why: failed labs first, then stale booting
	// labs (both by name), then scale-down and stale Ready labs in the order they were
	// picked.
	Delete []Delete
	// Desired is the number of unbound labs the pool wants (see Compute).
	Desired int32
	// Target is what the rules ask of unbound labs before waiting claims are added:
	// max(Replicas, MinLabs - Bound), not capped by MaxLabs. It moves with the bound labs
	// only under a floor, never with claims that come and bind at once, so the pool's
	// status can show it without a write per claim.
	Target int32
	// Rule is what sets Target: Replicas (the buffer), MinLabs (the floor's remainder is
	// more), or MaxLabs (the hard cap holds the pool below it).
	Rule labforgev1alpha1.PoolScalingRule
	// Counts is what the pool's status reports: the labs as observed this pass, before
	// the plan is carried out.
	Counts Counts
}

// Delete is one lab to delete and why.
type Delete struct {
	// Name of the lab.
	Name string
	// Reason is labforgev1alpha1.ReasonFailed, labforgev1alpha1.ReasonScaleDown or labforgev1alpha1.ReasonStale.
	Reason string
}

// Counts are the pool's labs by state, as observed this pass.
type Counts struct {
	// Ready is the number of Ready unbound labs, stale or not: what claims can take now.
	Ready int32
	// Booting is the number of unbound labs still booting, stale or not.
	Booting int32
	// Bound is the number of labs held by a claim.
	Bound int32
	// Failed is the number of failed labs not yet being deleted.
	Failed int32
	// Stale is the number of unbound (Ready or Booting) labs built from an older template,
	// whatever the update strategy.
	Stale int32
	// Waiting is the number of claims waiting for a lab.
	Waiting int32
}

// Unserved is the number of waiting claims no Ready lab is free for: those that wait for
// a lab to boot. It is what the pool's status and metrics call waiting. A claim a Ready
// lab is there for is bound within milliseconds, and counting it would rewrite the pool's
// status twice for every warm claim (it arrives, it binds) to say nothing an admin can
// act on.
func (c Counts) Unserved() int32 { return max(0, c.Waiting-c.Ready) }

// Compute decides one pass of the pool: how many labs to create and which to delete. It is
// a pure function of what was observed; running it twice on the same input gives the same
// plan, whatever the order of in.Labs. The rules, and why:
//
// Counting. Unbound labs are Ready plus Booting; Booting labs count toward the target
// because they will be Ready soon and counting only Ready ones would overshoot on every
// pass while labs boot. Every lab, whatever its state (Failed and Deleting included),
// occupies MaxLabs until it is gone, because until then it holds host resources. Deleting
// labs count nowhere else.
//
// Target. The pool wants Desired = min(max(Replicas + WaitingClaims, MinLabs - Bound),
// MaxLabs - Bound) unbound labs, never negative: waiting claims are served first, on top
// of the buffer (Replicas), and bound labs use up the hard cap. The floor (MinLabs) counts
// bound labs too: a class of 30 wants 30 labs, and each student who claims one needs one
// fewer waiting; the claims waiting are part of the floor, not on top of it (Agones'
// Buffer policy sizes a fleet as allocated + buffer within min and max the same way).
// Without a floor this is min(Replicas + WaitingClaims, MaxLabs - Bound), as before
// floors existed.
//
// Creates. Create = Desired - (fresh unbound labs + PendingCreates), then capped so that
// booting labs + PendingCreates + Create <= MaxBooting (the burst cap protects the host
// from a boot storm) and all labs + PendingCreates + Create <= MaxLabs (the hard cap);
// never negative. PendingCreates always subtract: they are creates the cache has not shown
// yet, and forgetting them is how a lagging cache causes over-creation. Create is 0 while
// the circuit is open (repeated boot failures: booting more would only fail more), but
// deletes still happen, since they free resources and remove broken labs.
//
// Failed labs are always deleted (labforgev1alpha1.ReasonFailed), whatever the expectations: a failed lab
// serves nobody, and deleting a named lab twice is harmless. They still occupy MaxLabs
// until gone, so a failing template cannot make the pool exceed its hard cap.
//
// Bound labs are never deleted by the pool, stale or not: they belong to a student.
//
// Scale-down. When fresh unbound labs exceed Desired, the surplus is deleted
// (labforgev1alpha1.ReasonScaleDown): booting labs before Ready ones, newest first, ties broken by name. A
// booting lab is further from serving anyone, and claims take the oldest Ready lab (first
// come, first served), so the oldest Ready labs are the ones worth keeping. Scale-down
// waits while PendingCreates > 0 (the labs the cache does not show yet would change the
// count; the next pass sees them) and while PendingDeletes > 0 (the cache may still show
// labs already being deleted, and counting them again would delete a second batch).
//
// Update strategy. A lab is stale when it was built from an older template generation
// (0, not known yet, is never stale: a lab the environment controller has not reconciled
// yet must not be deleted as soon as it is created). With OnDelete, stale labs are treated
// exactly as fresh ones: counted, kept and handed out; only new labs use the new template.
// With RollingUpdate:
//   - stale Booting labs are deleted at once (labforgev1alpha1.ReasonStale): nobody waits on them yet, and
//     finishing a boot only to replace it wastes the burst;
//   - stale Ready labs do not count toward Desired, so replacements are created (within the
//     burst and hard caps) while the stale labs keep serving claims;
//   - a stale Ready lab is deleted (labforgev1alpha1.ReasonStale, newest first) only when the Ready labs left
//     (fresh plus remaining stale) stay at Desired or more, so warm capacity never drops
//     because of an update. Like scale-down, this is a count and waits while
//     PendingDeletes > 0.
//   - one exception keeps the update from deadlocking: when the hard cap leaves no room for
//     the replacements and nothing will free room or bring a fresh lab (no fresh lab
//     booting, no pending create, no lab being deleted, nothing else deleted this pass),
//     stale Ready labs are deleted to make room for as many replacements as the burst cap
//     allows. MaxLabs is a hard cap, so warm capacity then dips by at most one burst; the
//     alternative is an update that never finishes.
//
// Batching. The count-based deletes of a pass (scale-down and stale Ready) are capped at
// MaxBooting (at least 1). Deleting is cheap for the API server, but a pass that issues a
// thousand deletes blocks the pool's reconcile (and so its claims) behind the client's
// rate limiter, and a single wrong input (a replicas of 0 read by mistake) could wipe the
// whole pool in one pass. Batches of MaxBooting bound both; a scale from 1000 to 0 still
// finishes quickly because each next pass runs as soon as the cache shows the deletes.
// Failed and stale Booting labs are not capped: each is a fact about one object, not a
// count, and their number is already bounded by the burst cap they booted under.
func Compute(in Input) Plan {
	c := classify(in)
	var p Plan
	p.Counts = c.counts
	p.Counts.Waiting = int32(c.waiting)
	p.Target, p.Rule = c.target()
	p.Desired = int32(c.desired())
	for _, l := range c.failed {
		p.Delete = append(p.Delete, Delete{Name: l.Name, Reason: labforgev1alpha1.ReasonFailed})
	}
	for _, l := range c.staleBoots {
		p.Delete = append(p.Delete, Delete{Name: l.Name, Reason: labforgev1alpha1.ReasonStale})
	}
	c.planDeletes(&p)
	c.planCreates(&p)
	return p
}

// census is one pass's input, sorted into what Compute's rules need, and what the rules
// have decided so far.
type census struct {
	in                                           Input
	buffer, minLabs, maxBooting, maxLabs         int64
	waiting, pendingCreates                      int64
	rolling, countsTrusted                       bool
	total, bound, deleting                       int64
	failed, freshBooting, freshReady, staleBoots []Lab
	staleReady                                   []Lab
	counts                                       Counts

	// Filled as the plan is made: the fresh labs no delete took, the stale Ready labs
	// left, and how many more count-based deletes the batch allows.
	bootingLeft, readyLeft int64
	staleQueue             []Lab
	budget                 int64
}

// classify sorts the labs by state and freshness and reads the input's numbers.
func classify(in Input) *census {
	c := &census{
		in: in, buffer: nonNeg(in.Replicas), minLabs: nonNeg(in.MinLabs), maxBooting: nonNeg(in.MaxBooting),
		maxLabs: nonNeg(in.MaxLabs), waiting: nonNeg(in.WaitingClaims), pendingCreates: nonNeg(in.PendingCreates),
		rolling: in.Strategy != labforgev1alpha1.OnDelete, countsTrusted: nonNeg(in.PendingDeletes) == 0,
	}
	labs := slices.Clone(in.Labs)
	slices.SortFunc(labs, func(a, b Lab) int { return cmp.Compare(a.Name, b.Name) })
	for _, l := range labs {
		c.total++
		switch l.State {
		case StateDeleting:
			c.deleting++
		case StateFailed:
			c.failed = append(c.failed, l)
		case StateBound:
			c.bound++
		case StateBooting, StateReady:
			c.unbound(l)
		}
	}
	c.counts.Bound, c.counts.Failed = int32(c.bound), int32(len(c.failed))
	c.bootingLeft, c.readyLeft = int64(len(c.freshBooting)), int64(len(c.freshReady))
	c.budget = max(1, c.maxBooting)
	return c
}

// unbound files one unbound lab by state and freshness.
func (c *census) unbound(l Lab) {
	stale := l.TemplateGeneration != 0 && c.in.TemplateGeneration != 0 && l.TemplateGeneration < c.in.TemplateGeneration
	if stale {
		c.counts.Stale++
	}
	booting := l.State == StateBooting
	if booting {
		c.counts.Booting++
	} else {
		c.counts.Ready++
	}
	switch {
	case stale && c.rolling && booting:
		c.staleBoots = append(c.staleBoots, l)
	case stale && c.rolling:
		c.staleReady = append(c.staleReady, l)
	case booting:
		c.freshBooting = append(c.freshBooting, l)
	default:
		c.freshReady = append(c.freshReady, l)
	}
}

// target is what the rules ask of unbound labs before waiting claims (the buffer, or the
// floor's remainder), uncapped, and which rule that is: MinLabs when the floor asks more
// than the buffer, MaxLabs when the hard cap holds the pool below it.
func (c *census) target() (int32, labforgev1alpha1.PoolScalingRule) {
	t := max(c.buffer, c.minLabs-c.bound)
	rule := labforgev1alpha1.ScalingReplicas
	if c.minLabs-c.bound > c.buffer {
		rule = labforgev1alpha1.ScalingMinLabs
	}
	if t > c.maxLabs-c.bound {
		rule = labforgev1alpha1.ScalingMaxLabs
	}
	return int32(min(t, math.MaxInt32)), rule
}

// desired is the unbound labs the pool wants: the buffer beyond the waiting claims, or
// the floor's remainder, whichever is more, within the hard cap.
func (c *census) desired() int64 {
	return max(0, min(max(c.buffer+c.waiting, c.minLabs-c.bound), c.maxLabs-c.bound))
}

// planDeletes adds the count-based deletes: scale-down, then stale Ready labs.
func (c *census) planDeletes(p *Plan) {
	desired := int64(p.Desired)
	if surplus := c.bootingLeft + c.readyLeft - desired; surplus > 0 && c.countsTrusted && c.pendingCreates == 0 {
		victims := append(newestFirst(c.freshBooting), newestFirst(c.freshReady)...)
		for _, l := range victims[:min(surplus, c.budget)] {
			p.Delete = append(p.Delete, Delete{Name: l.Name, Reason: labforgev1alpha1.ReasonScaleDown})
			if l.State == StateBooting {
				c.bootingLeft--
			} else {
				c.readyLeft--
			}
			c.budget--
		}
	}
	c.staleQueue = newestFirst(c.staleReady)
	if !c.countsTrusted || c.budget <= 0 {
		return
	}
	// Keep fresh + stale Ready >= desired: only the stale Ready labs above that go.
	if n := min(int64(len(c.staleQueue)), c.readyLeft+int64(len(c.staleQueue))-desired, c.budget); n > 0 {
		for _, l := range c.staleQueue[:n] {
			p.Delete = append(p.Delete, Delete{Name: l.Name, Reason: labforgev1alpha1.ReasonStale})
		}
		c.staleQueue = c.staleQueue[n:]
		c.budget -= n
	}
}

// planCreates sets the creates, and makes room for a rolling update the hard cap would
// otherwise block forever.
func (c *census) planCreates(p *Plan) {
	want := int64(p.Desired) - (c.bootingLeft + c.readyLeft + c.pendingCreates)
	burstRoom := c.maxBooting - c.bootingLeft - c.pendingCreates
	totalRoom := c.maxLabs - c.total - c.pendingCreates
	create := max(0, min(want, burstRoom, totalRoom))
	if c.in.CircuitOpen {
		create = 0
	}
	p.Create = int32(create)

	stuck := c.rolling && c.countsTrusted && !c.in.CircuitOpen && len(c.staleQueue) > 0 &&
		len(p.Delete) == 0 && c.deleting == 0 &&
		c.bootingLeft == 0 && c.pendingCreates == 0 && totalRoom < min(want, burstRoom)
	if !stuck {
		return
	}
	n := min(int64(len(c.staleQueue)), min(want, burstRoom)-create, c.budget)
	for _, l := range c.staleQueue[:max(0, n)] {
		p.Delete = append(p.Delete, Delete{Name: l.Name, Reason: labforgev1alpha1.ReasonStale})
	}
}

// newestFirst returns labs sorted by creation time, newest first, ties broken by name.
func newestFirst(labs []Lab) []Lab {
	out := slices.Clone(labs)
	slices.SortStableFunc(out, func(a, b Lab) int {
		if c := b.Created.Compare(a.Created); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return out
}

// nonNeg widens n so that sums cannot overflow, reading a negative number as 0.
func nonNeg(n int32) int64 { return max(0, int64(n)) }
