package labpool

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/expectations"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// currentGen is the template generation of the pools in these tests; labs of gen 1 are
// stale.
const currentGen = 2

// lab is a fresh lab created minute minutes after t0.
func lab(name string, minute int, s LabState) Lab {
	return Lab{Name: name, Created: t0.Add(time.Duration(minute) * time.Minute), State: s, TemplateGeneration: currentGen}
}

// staleLab is lab built from the previous template generation.
func staleLab(name string, minute int, s LabState) Lab {
	l := lab(name, minute, s)
	l.TemplateGeneration = currentGen - 1
	return l
}

func labs(prefix string, n int, s LabState) []Lab {
	out := make([]Lab, n)
	for i := range out {
		out[i] = lab(fmt.Sprintf("%s-%d", prefix, i), i, s)
	}
	return out
}

func del(reason string, names ...string) []Delete {
	out := make([]Delete, len(names))
	for i, n := range names {
		out[i] = Delete{Name: n, Reason: reason}
	}
	return out
}

func TestCompute(t *testing.T) {
	tests := map[string]struct {
		in   Input
		want Plan
	}{
		"empty pool fills up to the burst cap": {
			in:   Input{Replicas: 10, MaxBooting: 3, MaxLabs: 100},
			want: Plan{Create: 3, Desired: 10},
		},
		"empty pool smaller than the burst cap fills at once": {
			in:   Input{Replicas: 2, MaxBooting: 5, MaxLabs: 100},
			want: Plan{Create: 2, Desired: 2},
		},
		"booting labs count toward the target": {
			in:   Input{Replicas: 3, MaxBooting: 5, MaxLabs: 100, Labs: labs("b", 2, StateBooting)},
			want: Plan{Create: 1, Desired: 3, Counts: Counts{Booting: 2}},
		},
		"full pool does nothing": {
			in: Input{Replicas: 3, MaxBooting: 5, MaxLabs: 100, TemplateGeneration: currentGen,
				Labs: labs("r", 3, StateReady)},
			want: Plan{Desired: 3, Counts: Counts{Ready: 3}},
		},
		"pending creates of a lagging cache are not created again": {
			in:   Input{Replicas: 5, MaxBooting: 5, MaxLabs: 100, Labs: labs("b", 2, StateBooting), PendingCreates: 3},
			want: Plan{Desired: 5, Counts: Counts{Booting: 2}},
		},
		"pending creates cover part of the target": {
			in:   Input{Replicas: 5, MaxBooting: 10, MaxLabs: 100, Labs: labs("r", 1, StateReady), PendingCreates: 2},
			want: Plan{Create: 2, Desired: 5, Counts: Counts{Ready: 1}},
		},
		"pending creates use up the burst cap": {
			in:   Input{Replicas: 10, MaxBooting: 5, MaxLabs: 100, Labs: labs("b", 2, StateBooting), PendingCreates: 2},
			want: Plan{Create: 1, Desired: 10, Counts: Counts{Booting: 2}},
		},
		"pending creates use up the hard cap": {
			in:   Input{Replicas: 10, MaxBooting: 10, MaxLabs: 4, Labs: labs("r", 1, StateReady), PendingCreates: 2},
			want: Plan{Create: 1, Desired: 4, Counts: Counts{Ready: 1}},
		},
		"waiting claims add to the warm target": {
			in: Input{Replicas: 2, MaxBooting: 10, MaxLabs: 100, WaitingClaims: 3,
				Labs: labs("r", 2, StateReady)},
			want: Plan{Create: 3, Desired: 5, Counts: Counts{Ready: 2, Waiting: 3}},
		},
		"labs booting for waiting claims are not booted twice": {
			in: Input{Replicas: 2, MaxBooting: 10, MaxLabs: 100, WaitingClaims: 3,
				Labs: append(labs("r", 2, StateReady), labs("b", 3, StateBooting)...)},
			want: Plan{Desired: 5, Counts: Counts{Ready: 2, Booting: 3, Waiting: 3}},
		},
		"replicas 0 with waiting claims boots labs for the claims": {
			in:   Input{Replicas: 0, MaxBooting: 5, MaxLabs: 100, WaitingClaims: 2},
			want: Plan{Create: 2, Desired: 2, Counts: Counts{Waiting: 2}},
		},
		"bound labs use up the hard cap": {
			in: Input{Replicas: 5, MaxBooting: 5, MaxLabs: 8,
				Labs: append(labs("c", 6, StateBound), lab("r-0", 10, StateReady))},
			want: Plan{Create: 1, Desired: 2, Counts: Counts{Ready: 1, Bound: 6}},
		},
		"hard cap reached by bound labs leaves waiting claims waiting": {
			in: Input{Replicas: 2, MaxBooting: 5, MaxLabs: 4, WaitingClaims: 3,
				Labs: labs("c", 4, StateBound)},
			want: Plan{Desired: 0, Counts: Counts{Bound: 4, Waiting: 3}},
		},
		"failed and deleting labs occupy the hard cap": {
			in: Input{Replicas: 3, MaxBooting: 5, MaxLabs: 5,
				Labs: []Lab{lab("c", 0, StateBound), lab("f", 1, StateFailed), lab("d", 2, StateDeleting)}},
			want: Plan{Create: 2, Desired: 3, Delete: del(labforgev1alpha1.ReasonFailed, "f"), Counts: Counts{Bound: 1, Failed: 1}},
		},
		"failed labs are deleted by name and still counted": {
			in: Input{Replicas: 3, MaxBooting: 5, MaxLabs: 4,
				Labs: []Lab{lab("f-b", 0, StateFailed), lab("r", 1, StateReady), lab("f-a", 2, StateFailed)}},
			want: Plan{Create: 1, Desired: 3, Delete: del(labforgev1alpha1.ReasonFailed, "f-a", "f-b"), Counts: Counts{Ready: 1, Failed: 2}},
		},
		"failed labs are deleted even while deletes are pending": {
			in: Input{Replicas: 1, MaxBooting: 5, MaxLabs: 10, PendingDeletes: 1,
				Labs: []Lab{lab("f", 0, StateFailed), lab("r-0", 1, StateReady), lab("r-1", 2, StateReady)}},
			want: Plan{Desired: 1, Delete: del(labforgev1alpha1.ReasonFailed, "f"), Counts: Counts{Ready: 2, Failed: 1}},
		},
		"scale down deletes booting labs newest first, then ready labs newest first": {
			in: Input{Replicas: 2, MaxBooting: 10, MaxLabs: 100, Labs: []Lab{
				lab("r-old", 0, StateReady), lab("r-mid", 5, StateReady), lab("r-new", 10, StateReady),
				lab("b-old", 12, StateBooting), lab("b-new", 15, StateBooting),
			}},
			want: Plan{Desired: 2, Delete: del(labforgev1alpha1.ReasonScaleDown, "b-new", "b-old", "r-new"), Counts: Counts{Ready: 3, Booting: 2}},
		},
		"scale down breaks creation-time ties by name": {
			in: Input{Replicas: 1, MaxBooting: 10, MaxLabs: 100, Labs: []Lab{
				lab("r-c", 3, StateReady), lab("r-b", 3, StateReady), lab("r-a", 3, StateReady),
			}},
			want: Plan{Desired: 1, Delete: del(labforgev1alpha1.ReasonScaleDown, "r-a", "r-b"), Counts: Counts{Ready: 3}},
		},
		"scale down waits for pending creates": {
			in:   Input{Replicas: 1, MaxBooting: 10, MaxLabs: 100, PendingCreates: 1, Labs: labs("r", 3, StateReady)},
			want: Plan{Desired: 1, Counts: Counts{Ready: 3}},
		},
		"scale down waits for pending deletes": {
			in:   Input{Replicas: 1, MaxBooting: 10, MaxLabs: 100, PendingDeletes: 2, Labs: labs("r", 3, StateReady)},
			want: Plan{Desired: 1, Counts: Counts{Ready: 3}},
		},
		"scale down is batched by maxBooting": {
			in:   Input{Replicas: 0, MaxBooting: 2, MaxLabs: 100, Labs: labs("r", 5, StateReady)},
			want: Plan{Delete: del(labforgev1alpha1.ReasonScaleDown, "r-4", "r-3"), Counts: Counts{Ready: 5}},
		},
		"replicas 0 and no claims drains unbound labs but keeps bound ones": {
			in: Input{Replicas: 0, MaxBooting: 5, MaxLabs: 100,
				Labs: []Lab{lab("c", 0, StateBound), lab("r", 1, StateReady), lab("b", 2, StateBooting)}},
			want: Plan{Delete: del(labforgev1alpha1.ReasonScaleDown, "b", "r"), Counts: Counts{Ready: 1, Booting: 1, Bound: 1}},
		},
		"maxLabs 0 creates nothing, even for waiting claims, and drains unbound labs": {
			in: Input{Replicas: 0, MaxBooting: 5, MaxLabs: 0, WaitingClaims: 3,
				Labs: []Lab{lab("r", 1, StateReady)}},
			want: Plan{Delete: del(labforgev1alpha1.ReasonScaleDown, "r"), Counts: Counts{Ready: 1, Waiting: 3}},
		},
		"bound labs are never deleted, stale or not, whatever the caps": {
			in: Input{Replicas: 0, MaxBooting: 1, MaxLabs: 0, TemplateGeneration: currentGen,
				Labs: []Lab{lab("c-0", 0, StateBound), staleLab("c-1", 1, StateBound), lab("c-2", 2, StateBound)}},
			want: Plan{Counts: Counts{Bound: 3}},
		},
		"circuit open creates nothing but still deletes failed labs": {
			in: Input{Replicas: 3, MaxBooting: 5, MaxLabs: 100, CircuitOpen: true,
				Labs: []Lab{lab("f", 0, StateFailed)}},
			want: Plan{Desired: 3, Delete: del(labforgev1alpha1.ReasonFailed, "f"), Counts: Counts{Failed: 1}},
		},
		"circuit open still scales down": {
			in:   Input{Replicas: 1, MaxBooting: 5, MaxLabs: 100, CircuitOpen: true, Labs: labs("r", 2, StateReady)},
			want: Plan{Desired: 1, Delete: del(labforgev1alpha1.ReasonScaleDown, "r-1"), Counts: Counts{Ready: 2}},
		},
		"rolling update deletes stale booting labs at once, even while deletes are pending": {
			in: Input{Replicas: 2, MaxBooting: 5, MaxLabs: 100, TemplateGeneration: currentGen, PendingDeletes: 1,
				Labs: []Lab{staleLab("b-old", 0, StateBooting), lab("b-new", 1, StateBooting)}},
			want: Plan{Create: 1, Desired: 2, Delete: del(labforgev1alpha1.ReasonStale, "b-old"), Counts: Counts{Booting: 2, Stale: 1}},
		},
		"rolling update keeps stale ready labs while replacements boot within the burst cap": {
			in: Input{Replicas: 3, MaxBooting: 2, MaxLabs: 100, TemplateGeneration: currentGen,
				Labs: []Lab{staleLab("s-0", 0, StateReady), staleLab("s-1", 1, StateReady), staleLab("s-2", 2, StateReady)}},
			want: Plan{Create: 2, Desired: 3, Counts: Counts{Ready: 3, Stale: 3}},
		},
		"rolling update deletes stale ready labs newest first as fresh ones become ready": {
			in: Input{Replicas: 3, MaxBooting: 2, MaxLabs: 100, TemplateGeneration: currentGen, Labs: []Lab{
				staleLab("s-0", 0, StateReady), staleLab("s-1", 1, StateReady), staleLab("s-2", 2, StateReady),
				lab("f-0", 10, StateReady), lab("f-1", 11, StateReady),
			}},
			want: Plan{Create: 1, Desired: 3, Delete: del(labforgev1alpha1.ReasonStale, "s-2", "s-1"), Counts: Counts{Ready: 5, Stale: 3}},
		},
		"rolling update waits for pending deletes before deleting more stale ready labs": {
			in: Input{Replicas: 1, MaxBooting: 2, MaxLabs: 100, TemplateGeneration: currentGen, PendingDeletes: 1,
				Labs: []Lab{staleLab("s-0", 0, StateReady), lab("f-0", 10, StateReady)}},
			want: Plan{Desired: 1, Counts: Counts{Ready: 2, Stale: 1}},
		},
		"rolling update with no room under the hard cap makes room one burst at a time": {
			in: Input{Replicas: 3, MaxBooting: 2, MaxLabs: 3, TemplateGeneration: currentGen,
				Labs: []Lab{staleLab("s-0", 0, StateReady), staleLab("s-1", 1, StateReady), staleLab("s-2", 2, StateReady)}},
			want: Plan{Desired: 3, Delete: del(labforgev1alpha1.ReasonStale, "s-2", "s-1"), Counts: Counts{Ready: 3, Stale: 3}},
		},
		"rolling update with no room waits while a replacement boots": {
			in: Input{Replicas: 3, MaxBooting: 2, MaxLabs: 3, TemplateGeneration: currentGen, Labs: []Lab{
				staleLab("s-0", 0, StateReady), staleLab("s-1", 1, StateReady), lab("f-0", 5, StateBooting),
			}},
			want: Plan{Desired: 3, Counts: Counts{Ready: 2, Booting: 1, Stale: 2}},
		},
		"rolling update with no room waits for a lab being deleted": {
			in: Input{Replicas: 2, MaxBooting: 2, MaxLabs: 3, TemplateGeneration: currentGen, Labs: []Lab{
				staleLab("s-0", 0, StateReady), staleLab("s-1", 1, StateReady), lab("d", 5, StateDeleting),
			}},
			want: Plan{Desired: 2, Counts: Counts{Ready: 2, Stale: 2}},
		},
		"rolling update with no room and an open circuit keeps the stale labs": {
			in: Input{Replicas: 2, MaxBooting: 2, MaxLabs: 2, TemplateGeneration: currentGen, CircuitOpen: true,
				Labs: []Lab{staleLab("s-0", 0, StateReady), staleLab("s-1", 1, StateReady)}},
			want: Plan{Desired: 2, Counts: Counts{Ready: 2, Stale: 2}},
		},
		"rolling update scales down fresh surplus first, then stale ready labs above the target": {
			in: Input{Replicas: 1, MaxBooting: 10, MaxLabs: 100, TemplateGeneration: currentGen, Labs: []Lab{
				staleLab("s-0", 0, StateReady), lab("f-0", 1, StateReady), lab("f-1", 2, StateReady),
			}},
			want: Plan{Desired: 1, Delete: append(del(labforgev1alpha1.ReasonScaleDown, "f-1"), del(labforgev1alpha1.ReasonStale, "s-0")...),
				Counts: Counts{Ready: 3, Stale: 1}},
		},
		"empty strategy is RollingUpdate": {
			in: Input{Replicas: 1, MaxBooting: 2, MaxLabs: 100, Strategy: "", TemplateGeneration: currentGen,
				Labs: []Lab{staleLab("s-0", 0, StateReady), lab("f-0", 10, StateReady)}},
			want: Plan{Desired: 1, Delete: del(labforgev1alpha1.ReasonStale, "s-0"), Counts: Counts{Ready: 2, Stale: 1}},
		},
		"OnDelete keeps stale labs, counts them toward the target and reports them": {
			in: Input{Replicas: 3, MaxBooting: 2, MaxLabs: 100, Strategy: labforgev1alpha1.OnDelete, TemplateGeneration: currentGen,
				Labs: []Lab{staleLab("s-0", 0, StateReady), staleLab("s-1", 1, StateReady), staleLab("s-2", 2, StateBooting)}},
			want: Plan{Desired: 3, Counts: Counts{Ready: 2, Booting: 1, Stale: 3}},
		},
		"OnDelete scales down stale and fresh labs alike": {
			in: Input{Replicas: 1, MaxBooting: 2, MaxLabs: 100, Strategy: labforgev1alpha1.OnDelete, TemplateGeneration: currentGen,
				Labs: []Lab{staleLab("s-0", 0, StateReady), lab("f-0", 1, StateReady)}},
			want: Plan{Desired: 1, Delete: del(labforgev1alpha1.ReasonScaleDown, "f-0"), Counts: Counts{Ready: 2, Stale: 1}},
		},
		"a lab whose template generation is not known yet is not stale": {
			in: Input{Replicas: 1, MaxBooting: 2, MaxLabs: 100, TemplateGeneration: currentGen,
				Labs: []Lab{{Name: "new", Created: t0, State: StateBooting}}},
			want: Plan{Desired: 1, Counts: Counts{Booting: 1}},
		},
		"no lab is stale while the template generation is not known": {
			in: Input{Replicas: 1, MaxBooting: 2, MaxLabs: 100,
				Labs: []Lab{staleLab("s-0", 0, StateBooting)}},
			want: Plan{Desired: 1, Counts: Counts{Booting: 1}},
		},
		"a lab from a newer generation than the cached template is fresh": {
			in: Input{Replicas: 1, MaxBooting: 2, MaxLabs: 100, TemplateGeneration: 1,
				Labs: []Lab{lab("f-0", 0, StateReady)}},
			want: Plan{Desired: 1, Counts: Counts{Ready: 1}},
		},
		"a lab in an unknown state occupies the hard cap only": {
			in: Input{Replicas: 2, MaxBooting: 2, MaxLabs: 2,
				Labs: []Lab{lab("x", 0, "Mystery")}},
			want: Plan{Create: 1, Desired: 2},
		},
		"negative inputs are read as zero": {
			in: Input{Replicas: -1, MaxBooting: -1, MaxLabs: 10, WaitingClaims: -3, PendingCreates: -2, PendingDeletes: -1,
				Labs: labs("r", 2, StateReady)},
			want: Plan{Delete: del(labforgev1alpha1.ReasonScaleDown, "r-1"), Counts: Counts{Ready: 2}},
		},
		"maxBooting 0 boots nothing": {
			in:   Input{Replicas: 3, MaxBooting: 0, MaxLabs: 10},
			want: Plan{Desired: 3},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := Compute(tc.in)
			// What the rules ask before claims (Target, Rule) has its own table: TestComputeRules.
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty(), cmpopts.IgnoreFields(Plan{}, "Target", "Rule")); diff != "" {
				t.Errorf("Compute() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestComputeIgnoresLabOrder: the plan depends on the labs, not on the order the cache
// listed them in, so two passes over the same world never disagree.
func TestComputeIgnoresLabOrder(t *testing.T) {
	in := Input{Replicas: 2, MaxBooting: 3, MaxLabs: 100, TemplateGeneration: currentGen, Labs: []Lab{
		lab("a", 1, StateReady), lab("b", 1, StateReady), lab("c", 1, StateBooting), lab("d", 0, StateBooting),
		staleLab("e", 0, StateReady), staleLab("f", 0, StateBooting), lab("g", 2, StateFailed), lab("h", 3, StateBound),
	}}
	want := Compute(in)
	rng := rand.New(rand.NewPCG(7, 7))
	for range 50 {
		shuffled := slices.Clone(in.Labs)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		got := Compute(Input{Replicas: in.Replicas, MaxBooting: in.MaxBooting, MaxLabs: in.MaxLabs,
			TemplateGeneration: in.TemplateGeneration, Labs: shuffled})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("Compute() depends on the order of labs (-first +shuffled):\n%s", diff)
		}
	}
	if len(in.Labs) == 0 || in.Labs[0].Name != "a" {
		t.Fatalf("Compute() reordered its caller's slice")
	}
}

// simLab is one lab of the rolling-update simulation, as the world holds it.
type simLab struct {
	name             string
	created, readyAt int // steps
	gen              int64
	bound            bool
	visibleAt        int // the step from which the cache lists it
	deletedAt        int // -1 while not deleted
	deleteVisibleAt  int // the step from which the cache shows it Deleting
	goneAt           int // the step from which it no longer exists
}

// TestRollingUpdateKeepsWarmCapacity runs Compute pass after pass against a simulated
// world (a cache that lags by `lag` steps, labs that boot in `boot` steps, the real
// Expectations store), changes the template once the pool is warm, and checks that the
// update finishes without the Ready unbound labs ever dropping below the target, that
// bound labs are untouched, and that the converged pool writes nothing.
func TestRollingUpdateKeepsWarmCapacity(t *testing.T) {
	tests := map[string]struct {
		replicas, maxBooting, maxLabs, bound int32
		boot, lag                            int
		// wantMinReady is the lowest Ready unbound count allowed during the update: the
		// target, unless the hard cap forces the pool to make room.
		wantMinReady int32
	}{
		"ample room, bound labs, lagging cache": {replicas: 6, maxBooting: 2, maxLabs: 20, bound: 2, boot: 3, lag: 1, wantMinReady: 6},
		"burst of one":                          {replicas: 4, maxBooting: 1, maxLabs: 10, boot: 2, lag: 1, wantMinReady: 4},
		"burst larger than the pool, no lag":    {replicas: 3, maxBooting: 10, maxLabs: 10, boot: 1, lag: 0, wantMinReady: 3},
		"slow cache, slow boots":                {replicas: 5, maxBooting: 3, maxLabs: 50, boot: 5, lag: 3, wantMinReady: 5},
		// With maxLabs = replicas + bound there is no room to boot a replacement first, so
		// the pool trades at most one burst of warm capacity for progress.
		"hard cap leaves no room": {replicas: 4, maxBooting: 2, maxLabs: 6, bound: 2, boot: 2, lag: 1, wantMinReady: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			const pool = "p"
			exp := expectations.New(nil, time.Hour)
			world := map[string]*simLab{}
			gen := int64(1)
			next := 0
			for i := range tc.bound {
				n := fmt.Sprintf("bound-%d", i)
				world[n] = &simLab{name: n, gen: 1, bound: true, deletedAt: -1}
			}
			warm, updateAt := false, -1
			for step := 0; step < 400; step++ {
				// The cache's view of the world at this step.
				var view []Lab
				var listed []string
				for _, l := range world {
					if step < l.visibleAt || (l.deletedAt >= 0 && step >= l.goneAt) {
						continue
					}
					st := StateBooting
					switch {
					case l.deletedAt >= 0 && step >= l.deleteVisibleAt:
						st = StateDeleting
					case l.bound:
						st = StateBound
					case step >= l.readyAt:
						st = StateReady
					}
					view = append(view, Lab{Name: l.name, Created: t0.Add(time.Duration(l.created) * time.Minute), State: st, TemplateGeneration: l.gen})
					if st != StateDeleting {
						listed = append(listed, l.name)
					}
				}
				exp.Observed(pool, listed)
				pc, pd := exp.Pending(pool)
				plan := Compute(Input{
					Replicas: tc.replicas, MaxBooting: tc.maxBooting, MaxLabs: tc.maxLabs,
					Strategy: labforgev1alpha1.RollingUpdate, TemplateGeneration: gen,
					Labs: view, PendingCreates: pc, PendingDeletes: pd,
				})

				// Carry the plan out.
				var deleted []string
				for _, d := range plan.Delete {
					l := world[d.Name]
					if l.bound {
						t.Fatalf("step %d: deleted bound lab %s", step, d.Name)
					}
					if l.deletedAt >= 0 {
						continue // the cache lagged; a second delete is a no-op
					}
					l.deletedAt, l.deleteVisibleAt, l.goneAt = step, step+1+tc.lag, step+2+tc.lag
					deleted = append(deleted, d.Name)
				}
				exp.ExpectDeletions(pool, deleted...)
				for range plan.Create {
					n := fmt.Sprintf("lab-%03d", next)
					next++
					world[n] = &simLab{name: n, created: step, readyAt: step + tc.boot, gen: gen,
						visibleAt: step + 1 + tc.lag, deletedAt: -1}
					exp.ExpectCreations(pool, n)
				}

				// Measure the warm capacity claims could use right now.
				var ready, total int32
				for _, l := range world {
					if l.deletedAt >= 0 && step >= l.goneAt {
						continue
					}
					total++
					if !l.bound && l.deletedAt < 0 && step >= l.readyAt {
						ready++
					}
				}
				if total > tc.maxLabs {
					t.Fatalf("step %d: %d labs exist, above maxLabs %d", step, total, tc.maxLabs)
				}
				if !warm && ready >= tc.replicas {
					warm, updateAt = true, step
					gen = 2 // the template changes once the pool is warm
					continue
				}
				if warm && ready < tc.wantMinReady {
					t.Fatalf("step %d (update began at %d): %d Ready unbound labs, want at least %d", step, updateAt, ready, tc.wantMinReady)
				}
				if warm && len(plan.Delete) == 0 && plan.Create == 0 && pc == 0 && pd == 0 && plan.Counts.Stale == 0 &&
					plan.Counts.Ready == tc.replicas && plan.Counts.Booting == 0 {
					// Converged: check the world once more and stop.
					for _, l := range world {
						if l.deletedAt >= 0 {
							continue
						}
						if l.bound && l.gen != 1 {
							t.Errorf("bound lab %s changed generation", l.name)
						}
						if !l.bound && l.gen != gen {
							t.Errorf("unbound lab %s of generation %d survived the update", l.name, l.gen)
						}
					}
					if got := plan.Counts.Bound; got != tc.bound {
						t.Errorf("bound labs: got %d, want %d", got, tc.bound)
					}
					t.Logf("converged at step %d (update began at %d), %d labs created", step, updateAt, next)
					return
				}
			}
			t.Fatalf("the rolling update did not converge in 400 steps")
		})
	}
}

// TestComputeInvariants checks, over 1,000 seeded random inputs, the rules that must hold
// whatever the pool looks like.
func TestComputeInvariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	states := []LabState{StateBooting, StateReady, StateBound, StateFailed, StateDeleting}
	strategies := []labforgev1alpha1.PoolUpdateStrategyType{labforgev1alpha1.RollingUpdate, labforgev1alpha1.OnDelete, ""}
	for i := range 1000 {
		in := Input{
			Replicas:           rng.Int32N(21),
			MinLabs:            rng.Int32N(31) * rng.Int32N(2),
			MaxBooting:         rng.Int32N(9),
			MaxLabs:            rng.Int32N(41),
			Strategy:           strategies[rng.IntN(len(strategies))],
			TemplateGeneration: rng.Int64N(4),
			WaitingClaims:      rng.Int32N(11),
			PendingCreates:     rng.Int32N(6) * rng.Int32N(2),
			PendingDeletes:     rng.Int32N(6) * rng.Int32N(2),
			CircuitOpen:        rng.IntN(5) == 0,
		}
		for j := range rng.IntN(41) {
			in.Labs = append(in.Labs, Lab{
				Name:               fmt.Sprintf("lab-%02d", j),
				Created:            t0.Add(time.Duration(rng.IntN(10)) * time.Minute),
				State:              states[rng.IntN(len(states))],
				TemplateGeneration: rng.Int64N(4),
			})
		}
		rng.Shuffle(len(in.Labs), func(a, b int) { in.Labs[a], in.Labs[b] = in.Labs[b], in.Labs[a] })
		p := Compute(in)
		if err := checkInvariants(in, p); err != nil {
			t.Fatalf("input %d: %v\ninput: %+v\nplan: %+v", i, err, in, p)
		}
		again := Compute(in)
		if diff := cmp.Diff(p, again); diff != "" {
			t.Fatalf("input %d: Compute() is not deterministic (-first +second):\n%s", i, diff)
		}
	}
}

func checkInvariants(in Input, p Plan) error {
	rolling := in.Strategy != labforgev1alpha1.OnDelete
	stale := func(l Lab) bool {
		return l.TemplateGeneration != 0 && in.TemplateGeneration != 0 && l.TemplateGeneration < in.TemplateGeneration
	}
	byName := map[string]Lab{}
	for _, l := range in.Labs {
		byName[l.Name] = l
	}
	deleted := map[string]string{}
	countBased := 0
	for _, d := range p.Delete {
		l, ok := byName[d.Name]
		switch {
		case !ok:
			return fmt.Errorf("deletes unknown lab %s", d.Name)
		case deleted[d.Name] != "":
			return fmt.Errorf("deletes %s twice", d.Name)
		case l.State == StateBound:
			return fmt.Errorf("deletes bound lab %s", d.Name)
		case l.State == StateDeleting:
			return fmt.Errorf("deletes %s, already being deleted", d.Name)
		case (d.Reason == labforgev1alpha1.ReasonFailed) != (l.State == StateFailed):
			return fmt.Errorf("deletes %s (%s) for reason %s", d.Name, l.State, d.Reason)
		case d.Reason == labforgev1alpha1.ReasonStale && (!rolling || !stale(l)):
			return fmt.Errorf("deletes %s as stale (generation %d of %d, strategy %q)", d.Name, l.TemplateGeneration, in.TemplateGeneration, in.Strategy)
		case d.Reason == labforgev1alpha1.ReasonScaleDown && (in.PendingCreates > 0 || in.PendingDeletes > 0):
			return fmt.Errorf("scales down %s with expectations pending", d.Name)
		case d.Reason == labforgev1alpha1.ReasonStale && l.State == StateReady && in.PendingDeletes > 0:
			return fmt.Errorf("deletes stale Ready %s with deletes pending", d.Name)
		}
		deleted[d.Name] = d.Reason
		if d.Reason == labforgev1alpha1.ReasonScaleDown || (d.Reason == labforgev1alpha1.ReasonStale && l.State == StateReady) {
			countBased++
		}
	}
	if countBased > int(max(1, in.MaxBooting)) {
		return fmt.Errorf("%d count-based deletes in one pass, above maxBooting %d", countBased, in.MaxBooting)
	}

	var total, bootingKept, freshKept, readyBefore, readyAfter, scaleDown int32
	for _, l := range in.Labs {
		total++
		reason, gone := deleted[l.Name]
		if l.State == StateFailed && !gone {
			return fmt.Errorf("keeps failed lab %s", l.Name)
		}
		if reason == labforgev1alpha1.ReasonScaleDown {
			scaleDown++
		}
		if l.State == StateReady {
			readyBefore++
			if !gone {
				readyAfter++
			}
		}
		if gone || (l.State != StateBooting && l.State != StateReady) {
			continue
		}
		if l.State == StateBooting {
			if rolling && stale(l) {
				return fmt.Errorf("keeps stale booting lab %s under a rolling update", l.Name)
			}
			bootingKept++
		}
		if !rolling || !stale(l) {
			freshKept++
		}
	}
	var bound int32
	for _, l := range in.Labs {
		if l.State == StateBound {
			bound++
		}
	}
	if p.Desired < 0 || p.Desired > max(0, in.Replicas+in.WaitingClaims, in.MinLabs-bound) {
		return fmt.Errorf("desired %d outside [0, max(replicas+waiting, minLabs-bound)]", p.Desired)
	}
	if p.Desired > max(0, in.MaxLabs-bound) {
		return fmt.Errorf("desired %d above the hard cap's room %d", p.Desired, in.MaxLabs-bound)
	}
	if p.Desired < min(max(in.Replicas+in.WaitingClaims, in.MinLabs-bound), in.MaxLabs-bound) {
		return fmt.Errorf("desired %d below what the rules ask within the hard cap", p.Desired)
	}
	if scaleDown > 0 && freshKept < p.Desired {
		return fmt.Errorf("scaled down to %d fresh unbound labs, below desired %d", freshKept, p.Desired)
	}
	if readyAfter < min(p.Desired, readyBefore) {
		// Only the hard-cap escape of a rolling update may cost warm capacity, and only
		// when nothing else is under way.
		for _, d := range p.Delete {
			if d.Reason != labforgev1alpha1.ReasonStale || byName[d.Name].State != StateReady {
				return fmt.Errorf("Ready labs dropped from %d to %d (desired %d) with a %s delete of %s", readyBefore, readyAfter, p.Desired, d.Reason, d.Name)
			}
		}
		if bootingKept > 0 || in.PendingCreates > 0 || countBased > int(max(1, in.MaxBooting)) {
			return fmt.Errorf("made room for a rolling update with labs booting or pending")
		}
	}

	switch {
	case p.Create < 0:
		return fmt.Errorf("create %d is negative", p.Create)
	case p.Create == 0:
		return nil
	case in.CircuitOpen:
		return fmt.Errorf("creates %d with the circuit open", p.Create)
	case bootingKept+in.PendingCreates+p.Create > in.MaxBooting:
		return fmt.Errorf("booting %d + pending %d + create %d exceeds maxBooting %d", bootingKept, in.PendingCreates, p.Create, in.MaxBooting)
	case total+in.PendingCreates+p.Create > in.MaxLabs:
		return fmt.Errorf("labs %d + pending %d + create %d exceeds maxLabs %d", total, in.PendingCreates, p.Create, in.MaxLabs)
	case freshKept+in.PendingCreates+p.Create > p.Desired:
		return fmt.Errorf("fresh %d + pending %d + create %d overshoots desired %d", freshKept, in.PendingCreates, p.Create, p.Desired)
	}
	return nil
}
