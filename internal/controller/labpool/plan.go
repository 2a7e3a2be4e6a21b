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
	// Replicas is the pool's warm target (spec.replicas).
	Replicas int32
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
// Target. The pool wants Desired = min(Replicas + WaitingClaims, MaxLabs - Bound) unbound
// labs, never negative: waiting claims are served first, on top of the warm target, and
// bound labs use up the hard cap.
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
	replicas := nonNeg(in.Replicas)
	maxBooting := nonNeg(in.MaxBooting)
	maxLabs := nonNeg(in.MaxLabs)
	waiting := nonNeg(in.WaitingClaims)
	pendingCreates := nonNeg(in.PendingCreates)
	pendingDeletes := nonNeg(in.PendingDeletes)
	rolling := in.Strategy != labforgev1alpha1.OnDelete

	labs := slices.Clone(in.Labs)
	slices.SortFunc(labs, func(a, b Lab) int { return cmp.Compare(a.Name, b.Name) })

	var (
		p                                            Plan
		total, bound, deleting                       int64
		failed, freshBooting, freshReady, staleBoots []Lab
		staleReady                                   []Lab
	)
	p.Counts.Waiting = int32(waiting)
	for _, l := range labs {
		total++
		switch l.State {
		case StateDeleting:
			deleting++
		case StateFailed:
			failed = append(failed, l)
		case StateBound:
			bound++
		case StateBooting, StateReady:
			stale := l.TemplateGeneration != 0 && in.TemplateGeneration != 0 &&
				l.TemplateGeneration < in.TemplateGeneration
			if stale {
				p.Counts.Stale++
			}
			booting := l.State == StateBooting
			if booting {
				p.Counts.Booting++
			} else {
				p.Counts.Ready++
			}
			switch {
			case stale && rolling && booting:
				staleBoots = append(staleBoots, l)
			case stale && rolling:
				staleReady = append(staleReady, l)
			case booting:
				freshBooting = append(freshBooting, l)
			default:
				freshReady = append(freshReady, l)
			}
		}
	}
	p.Counts.Bound = int32(bound)
	p.Counts.Failed = int32(len(failed))

	desired := max(0, min(replicas+waiting, maxLabs-bound))
	p.Desired = int32(desired)

	for _, l := range failed {
		p.Delete = append(p.Delete, Delete{Name: l.Name, Reason: labforgev1alpha1.ReasonFailed})
	}
	for _, l := range staleBoots {
		p.Delete = append(p.Delete, Delete{Name: l.Name, Reason: labforgev1alpha1.ReasonStale})
	}

	budget := max(1, maxBooting)
	countsTrusted := pendingDeletes == 0
	bootingLeft, readyLeft := int64(len(freshBooting)), int64(len(freshReady))

	if surplus := bootingLeft + readyLeft - desired; surplus > 0 && countsTrusted && pendingCreates == 0 {
		victims := append(newestFirst(freshBooting), newestFirst(freshReady)...)
		for _, l := range victims[:min(surplus, budget)] {
			p.Delete = append(p.Delete, Delete{Name: l.Name, Reason: labforgev1alpha1.ReasonScaleDown})
			if l.State == StateBooting {
				bootingLeft--
			} else {
				readyLeft--
			}
			budget--
		}
	}

	staleQueue := newestFirst(staleReady)
	if countsTrusted && budget > 0 {
		// Keep fresh + stale Ready >= desired: only the stale Ready labs above that go.
		if n := min(int64(len(staleQueue)), readyLeft+int64(len(staleQueue))-desired, budget); n > 0 {
			for _, l := range staleQueue[:n] {
				p.Delete = append(p.Delete, Delete{Name: l.Name, Reason: labforgev1alpha1.ReasonStale})
			}
			staleQueue = staleQueue[n:]
			budget -= n
		}
	}

	want := desired - (bootingLeft + readyLeft + pendingCreates)
	burstRoom := maxBooting - bootingLeft - pendingCreates
	totalRoom := maxLabs - total - pendingCreates
	create := max(0, min(want, burstRoom, totalRoom))
	if in.CircuitOpen {
		create = 0
	}
	p.Create = int32(create)

	// Make room for a rolling update the hard cap would otherwise block forever.
	stuck := rolling && countsTrusted && !in.CircuitOpen && len(staleQueue) > 0 &&
		len(p.Delete) == 0 && deleting == 0 &&
		bootingLeft == 0 && pendingCreates == 0 && totalRoom < min(want, burstRoom)
	if stuck {
		n := min(int64(len(staleQueue)), min(want, burstRoom)-create, budget)
		for _, l := range staleQueue[:max(0, n)] {
			p.Delete = append(p.Delete, Delete{Name: l.Name, Reason: labforgev1alpha1.ReasonStale})
		}
	}
	return p
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
