package labclaim

import (
	"context"
	"fmt"
	"sort"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/expectations"
	"github.com/labforge/labforge/internal/index"
)

// The claim line (decision 82). The claims of one pool, or of one template, that wait for
// a lab stand in one line, oldest first, and are served in its order: a pool's older
// claims take its longer-Ready labs, and a template's older claims take the room its caps
// leave first. The ledger is the one place that knows a line: which claims wait (inLine),
// in what order (before), what can serve them (a pool's free labs, a template's room),
// each one's place (position, reportedPosition) and whom a change wakes (wake). The bind
// asks it where a claim stands; the watches ask it whom to wake. In the spirit of
// agent-sandbox's warm-pool queue (extensions/controllers/queue): one owner per pool, but
// rebuilt from the cache on every question instead of kept in step with events, so that
// a restart or a lost event can never leave it wrong.

// line is one pool's or one template's claim line at one moment, as the cache shows it.
type line struct {
	// waiting holds the claims in line, oldest first.
	waiting []*labforgev1alpha1.LabClaim
	// free holds a pool's labs a claim can take, the longest Ready first; none for a
	// template, whose claims boot labs of their own.
	free []*labforgev1alpha1.LabEnvironment
	// room is how many claims at the head of the line can be served now: the pool's free
	// labs, or the labs the template's caps let its claims boot.
	room int
	// cold is what a template's caps count, maxBooting and maxLabs the caps.
	cold                coldCount
	maxBooting, maxLabs int32
}

// inLine says whether a claim waits for a lab of its pool, or of its template.
func inLine(c *labforgev1alpha1.LabClaim) bool {
	return (c.Spec.PoolRef != nil || c.Spec.TemplateRef != nil) && c.Status.Lab == "" && c.DeletionTimestamp.IsZero() &&
		!meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionStalled)
}

// before says whether claim a comes before claim b in their line: the older first, by
// namespace/name when they were created in the same second.
func before(a, b *labforgev1alpha1.LabClaim) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Namespace+"/"+a.Name < b.Namespace+"/"+b.Name
}

// waitingOf returns the claims of claims in line, oldest first, and a request for each
// other claim wake says to wake: what a pool's and a template's lines both start from.
func waitingOf(claims []labforgev1alpha1.LabClaim, wake func(*labforgev1alpha1.LabClaim) bool) ([]*labforgev1alpha1.LabClaim, []reconcile.Request) {
	var waiting []*labforgev1alpha1.LabClaim
	var reqs []reconcile.Request
	for i := range claims {
		c := &claims[i]
		switch {
		case inLine(c):
			waiting = append(waiting, c)
		case wake(c):
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(c)})
		}
	}
	sort.Slice(waiting, func(i, j int) bool { return before(waiting[i], waiting[j]) })
	return waiting, reqs
}

// poolLine is the line of pool: its waiting claims, and its labs in envs a claim can take,
// the longest Ready first (older claims take older labs).
func poolLine(pool string, waiting []*labforgev1alpha1.LabClaim, envs []labforgev1alpha1.LabEnvironment) line {
	free := freeLabs(envs, pool)
	sort.Slice(free, func(i, j int) bool {
		a, b := free[i].Status.ReadyTime.Time, free[j].Status.ReadyTime.Time
		if !a.Equal(b) {
			return a.Before(b)
		}
		return free[i].Name < free[j].Name
	})
	return line{waiting: waiting, free: free, room: len(free)}
}

// freeLabs returns the labs of envs that a claim of pool can take: the pool's, Ready,
// unbound and not being deleted.
func freeLabs(envs []labforgev1alpha1.LabEnvironment, pool string) []*labforgev1alpha1.LabEnvironment {
	var free []*labforgev1alpha1.LabEnvironment
	for i := range envs {
		env := &envs[i]
		if env.Spec.ClaimRef == nil && env.DeletionTimestamp.IsZero() && env.Spec.PoolRef != nil && env.Spec.PoolRef.Name == pool &&
			env.Status.ReadyTime != nil && meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionReady) {
			free = append(free, env)
		}
	}
	return free
}

// templateLine is the line of tmpl: its waiting claims, and the room its caps leave with
// the labs of envs and pending more the cache does not show yet counted as booting.
func templateLine(tmpl *labforgev1alpha1.LabTemplate, waiting []*labforgev1alpha1.LabClaim, envs []labforgev1alpha1.LabEnvironment, pending int32) line {
	l := line{waiting: waiting, cold: countColdLabs(envs, tmpl.Name)}
	l.cold.total += pending
	l.cold.booting += pending
	l.maxBooting, l.maxLabs = claimCaps(tmpl)
	l.room = int(l.cold.room(l.maxBooting, l.maxLabs))
	return l
}

// position is claim's place in line counted from zero: how many claims before it still
// wait, not counting those served says were served already (the cache not showing it on
// their status yet).
func (l line) position(claim *labforgev1alpha1.LabClaim, served func(*labforgev1alpha1.LabClaim) bool) int {
	position := 0
	for _, c := range l.waiting {
		if c.UID != claim.UID && before(c, claim) && (served == nil || !served(c)) {
			position++
		}
	}
	return position
}

// labsFor returns the free labs a claim at position may take: those past the ones its
// elders will take, so that a younger claim never jumps the line.
func (l line) labsFor(position int) []*labforgev1alpha1.LabEnvironment {
	if position >= len(l.free) {
		return nil
	}
	return l.free[position:]
}

// wake returns the claims of the line (in line order) worth a pass now: the first
// room+ExactPositions (they can be served, or must see their exact place), and those
// further back whose status gives a place more than twice their actual one
// (reportedPosition). Waking every waiting claim at every change cost, per bind, a pass
// per waiting claim that each counted the whole line: the square of the line's length in
// cache reads, thousands of passes per bind behind a long line.
func (l line) wake() []*labforgev1alpha1.LabClaim {
	var out []*labforgev1alpha1.LabClaim
	for i, c := range l.waiting {
		actual := int32(i + 1)
		if i < l.room+ExactPositions || reportedPosition(c.Status.QueuePosition, actual) != c.Status.QueuePosition {
			out = append(out, c)
		}
	}
	return out
}

// ExactPositions is how far back in line a waiting claim's status.queuePosition is exact.
const ExactPositions = 10

// reportedPosition is the place in line a waiting claim's status gives, now that it is
// actual and said was. Further back than ExactPositions, what the status says stays until
// the claim has moved up to half of it: the status is then an upper bound within a factor
// of two. Every claim that leaves the line moves everyone behind it up one, and writing
// each of them each time would cost a write per waiting claim per bind, the square of the
// line's length, when the line is long because the host is already overloaded.
func reportedPosition(said, actual int32) int32 {
	if said > 0 && actual > ExactPositions && actual <= said && actual > said/2 {
		return said
	}
	return actual
}

// place returns the queuePosition a claim at position (from zero) reports, its status
// saying said, and how the claim's message words it.
func place(said int32, position int) (int32, string) {
	reported := reportedPosition(said, int32(position+1))
	if reported > ExactPositions {
		return reported, fmt.Sprintf("number %d in line or better", reported)
	}
	return reported, fmt.Sprintf("number %d in line", reported)
}

// ledger reads the claim lines from the cache, and holds what the cache does not show
// yet of the labs booted for template claims (cold): counting a template's labs against
// its caps and expecting the lab a claim creates is one step under mu, so that two claims
// a moment apart never both take the last room.
type ledger struct {
	cache client.Reader

	mu   sync.Mutex
	cold *expectations.Store
}

// newLedger returns a ledger reading cache, whose expected labs lapse by clk.
func newLedger(cache client.Reader, clk clock.PassiveClock) *ledger {
	return &ledger{cache: cache, cold: expectations.New(clk, 0)}
}

// poolLine reads pool's line from the cache. What it returns must never be written to
// (readOnly).
func (l *ledger) poolLine(ctx context.Context, pool string) (line, error) {
	var envs labforgev1alpha1.LabEnvironmentList
	if err := l.cache.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: pool}, readOnly); err != nil {
		return line{}, fmt.Errorf("listing the labs of LabPool %s: %w", pool, err)
	}
	var claims labforgev1alpha1.LabClaimList
	if err := l.cache.List(ctx, &claims, client.MatchingFields{index.ClaimByPool: pool}, readOnly); err != nil {
		return line{}, fmt.Errorf("listing the claims of LabPool %s: %w", pool, err)
	}
	waiting, _ := waitingOf(claims.Items, func(*labforgev1alpha1.LabClaim) bool { return false })
	return poolLine(pool, waiting, envs.Items), nil
}

// reserveColdLab decides whether claim may boot its lab now, within the caps of its
// template tmpl, and if so expects the lab before the caller creates it. It returns the
// template's line and the claim's position in it.
//
// The caps are counted from the cache, which lags behind this process's own creates: two
// claims a moment apart would both see room for one. So the count and the expectation are
// taken under one lock, and a lab created but not yet in the cache counts as booting until
// the cache lists it or its expectation lapses. A claim only takes room left after the
// older claims waiting on the same template; those whose lab the cache shows, or that
// this process bound already (boundHere), do not wait, whatever their cached status says.
func (l *ledger) reserveColdLab(ctx context.Context, claim *labforgev1alpha1.LabClaim, tmpl *labforgev1alpha1.LabTemplate,
	boundHere func(types.UID) bool) (line, int, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var envs labforgev1alpha1.LabEnvironmentList
	if err := l.cache.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelTemplate: tmpl.Name}, readOnly); err != nil {
		return line{}, 0, false, fmt.Errorf("listing the labs of LabTemplate %s: %w", tmpl.Name, err)
	}
	var claims labforgev1alpha1.LabClaimList
	if err := l.cache.List(ctx, &claims, client.MatchingFields{index.ClaimByTemplate: tmpl.Name}, readOnly); err != nil {
		return line{}, 0, false, fmt.Errorf("listing the claims of LabTemplate %s: %w", tmpl.Name, err)
	}
	tl, position, ok := l.admitLocked(claim, tmpl, claims.Items, envs.Items, boundHere)
	return tl, position, ok, nil
}

// admitLocked is reserveColdLab on what the cache shows: claims and envs, the template's
// claims and labs. l.mu must be held.
func (l *ledger) admitLocked(claim *labforgev1alpha1.LabClaim, tmpl *labforgev1alpha1.LabTemplate,
	claims []labforgev1alpha1.LabClaim, envs []labforgev1alpha1.LabEnvironment, boundHere func(types.UID) bool) (line, int, bool) {
	// A lab the cache shows, even already being deleted, is counted there: its expected
	// creation is met (only creations are expected here).
	shown := countColdLabs(envs, tmpl.Name).names
	seen := make([]string, 0, len(shown))
	for name := range shown {
		seen = append(seen, name)
	}
	l.cold.Observed(tmpl.Name, seen)
	pending, _ := l.cold.Pending(tmpl.Name)
	waiting, _ := waitingOf(claims, func(*labforgev1alpha1.LabClaim) bool { return false })
	tl := templateLine(tmpl, waiting, envs, pending)
	position := tl.position(claim, func(c *labforgev1alpha1.LabClaim) bool {
		return shown[coldLabName(c)] || (boundHere != nil && boundHere(c.UID))
	})
	if position >= tl.room {
		return tl, position, false
	}
	l.cold.ExpectCreations(tmpl.Name, coldLabName(claim))
	return tl, position, true
}

// coldLabFailed drops the expected lab of template named, whose create the API server
// refused: it holds no room.
func (l *ledger) coldLabFailed(template, name string) {
	l.cold.CreationFailed(template, name)
}

// wakePool returns the claims of pool's line worth a pass (wake) and, when refused is
// set, the claims the pool refused. It runs for every event of every lab of a pool, so it
// only reads the cache (no copies, see readOnly) and lists the labs only when a claim
// waits.
func (l *ledger) wakePool(ctx context.Context, pool string, refused bool) []reconcile.Request {
	var claims labforgev1alpha1.LabClaimList
	if err := l.cache.List(ctx, &claims, client.MatchingFields{index.ClaimByPool: pool}, readOnly); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list the LabClaims of LabPool", "pool", pool)
		return nil
	}
	waiting, reqs := waitingOf(claims.Items, func(c *labforgev1alpha1.LabClaim) bool { return refused && c.Status.Lab == "" })
	if len(waiting) == 0 {
		return reqs
	}
	var envs labforgev1alpha1.LabEnvironmentList
	if err := l.cache.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: pool}, readOnly); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list the labs of LabPool", "pool", pool)
		return nil
	}
	return appendRequests(reqs, poolLine(pool, waiting, envs.Items).wake())
}

// wakeTemplate returns the claims of template's line worth a pass (wake, with the room
// the caps leave as the cache shows it) and, when refused is set, the claims of the
// template without a lab that are not in line (refused). Like wakePool, it only reads the
// cache, and lists the labs only when a claim waits.
func (l *ledger) wakeTemplate(ctx context.Context, template string, refused bool) []reconcile.Request {
	var claims labforgev1alpha1.LabClaimList
	if err := l.cache.List(ctx, &claims, client.MatchingFields{index.ClaimByTemplate: template}, readOnly); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list the LabClaims of LabTemplate", "template", template)
		return nil
	}
	waiting, reqs := waitingOf(claims.Items, func(c *labforgev1alpha1.LabClaim) bool {
		return refused && c.Status.Lab == "" && c.DeletionTimestamp.IsZero()
	})
	if len(waiting) == 0 {
		return reqs
	}
	tmpl := &labforgev1alpha1.LabTemplate{}
	if err := l.cache.Get(ctx, client.ObjectKey{Name: template}, tmpl, readOnly); err != nil {
		// No template, no caps to count: every claim of the line gets its pass (and waits
		// with TemplateNotFound, or is served once the template is there).
		return appendRequests(reqs, line{waiting: waiting, room: len(waiting)}.wake())
	}
	var envs labforgev1alpha1.LabEnvironmentList
	if err := l.cache.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelTemplate: template}, readOnly); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list the labs of LabTemplate", "template", template)
		return nil
	}
	return appendRequests(reqs, templateLine(tmpl, waiting, envs.Items, 0).wake())
}

func appendRequests(reqs []reconcile.Request, claims []*labforgev1alpha1.LabClaim) []reconcile.Request {
	for _, c := range claims {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(c)})
	}
	return reqs
}

// lines returns the reconciler's ledger, made on first use (SetupWithManager makes it; a
// Reconciler built by a unit test gets one here).
func (r *Reconciler) lines() *ledger {
	r.prepare()
	return r.ledger
}

// claimsOfLab wakes the claim a lab is bound to and, for a lab of a pool (which may just
// have become Ready, or have been taken, moving everyone up the line), the claims waiting
// on that pool.
func (r *Reconciler) claimsOfLab(ctx context.Context, o client.Object) []reconcile.Request {
	env := o.(*labforgev1alpha1.LabEnvironment)
	var reqs []reconcile.Request
	if ref := env.Spec.ClaimRef; ref != nil {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKey{Namespace: ref.Namespace, Name: ref.Name}})
	}
	if env.Spec.PoolRef != nil {
		reqs = append(reqs, r.lines().wakePool(ctx, env.Spec.PoolRef.Name, false)...)
	} else if env.Spec.ClaimRef != nil {
		// A lab booted for a template's claim became Ready or went: room under the
		// template's caps for the claims waiting on it.
		reqs = append(reqs, r.lines().wakeTemplate(ctx, env.Spec.TemplateRef.Name, false)...)
	}
	return reqs
}

// claimsBehind wakes the claims waiting on the pool or template of a claim that left the
// line. Their place in line counts the claims before them that still wait, as the cache
// shows them: a claim whose bind reached the LabEnvironment cache before its own status
// did would otherwise be counted as waiting by the last pass of those behind it, and hold
// them back for good.
func (r *Reconciler) claimsBehind(ctx context.Context, o client.Object) []reconcile.Request {
	c := o.(*labforgev1alpha1.LabClaim)
	if ref := c.Spec.PoolRef; ref != nil {
		return r.lines().wakePool(ctx, ref.Name, false)
	}
	if ref := c.Spec.TemplateRef; ref != nil {
		return r.lines().wakeTemplate(ctx, ref.Name, false)
	}
	return nil
}

// waitingClaimsOfPool wakes, on a change of the pool, the claims of its line worth a pass
// and the claims it refused: a change of its claimNamespaceSelector may admit them.
func (r *Reconciler) waitingClaimsOfPool(ctx context.Context, o client.Object) []reconcile.Request {
	return r.lines().wakePool(ctx, o.GetName(), true)
}

// claimsOfTemplate wakes, on a change of a template, the claims waiting on it (its caps
// may have been raised) and those it refused (its namespaceSelector may admit them now).
func (r *Reconciler) claimsOfTemplate(ctx context.Context, o client.Object) []reconcile.Request {
	return r.lines().wakeTemplate(ctx, o.GetName(), true)
}

// leftTheLine lets through the events of a claim of a pool or template that stops waiting.
func leftTheLine() predicate.Predicate {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc: func(e event.DeleteEvent) bool {
			c, ok := e.Object.(*labforgev1alpha1.LabClaim)
			return ok && (c.Spec.PoolRef != nil || c.Spec.TemplateRef != nil)
		},
		UpdateFunc: func(e event.UpdateEvent) bool {
			old, okOld := e.ObjectOld.(*labforgev1alpha1.LabClaim)
			c, okNew := e.ObjectNew.(*labforgev1alpha1.LabClaim)
			return okOld && okNew && inLine(old) && !inLine(c)
		},
	}
}
