package labpool

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/index"
)

var poolLabs = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "labforge_pool_labs",
	Help: "Labs of a LabPool by state: ready and booting (unclaimed), bound, failed; and claims waiting.",
}, []string{"pool", "state"})

func init() { metrics.Registry.MustRegister(poolLabs) }

// recordGauges publishes the pool's counts; a deleted pool's series are dropped.
func recordGauges(pool string, c Counts, deleted bool) {
	if deleted {
		poolLabs.DeletePartialMatch(prometheus.Labels{"pool": pool})
		return
	}
	for state, n := range map[string]int32{"ready": c.Ready, "booting": c.Booting, "bound": c.Bound, "failed": c.Failed, "waiting": c.Unserved()} {
		poolLabs.WithLabelValues(pool, state).Set(float64(n))
	}
}

// scope is what one pass observed and planned.
type scope struct {
	pool     *labforgev1alpha1.LabPool
	template *labforgev1alpha1.LabTemplate
	// problemReason and problemMessage say why the pool cannot create labs.
	problemReason, problemMessage string
	envs                          []*labforgev1alpha1.LabEnvironment
	byName                        map[string]*labforgev1alpha1.LabEnvironment
	// evidence is the number of labs of the current template that failed since the last
	// one that became Ready; at FailureThreshold the circuit opens.
	evidence int
	// circuitOpen: evidence reached the failure threshold, refilling stopped.
	circuitOpen bool
	plan        Plan
	// now is when the pass evaluated the pool's rules, and sizing what they asked then.
	now    time.Time
	sizing Sizing
	// bootTime is the pool's boot time to record (observeBootTime), nil if never seen;
	// warmUp the lead it gives windows without their own (WarmUpFor).
	bootTime *metav1.Duration
	warmUp   time.Duration
	// inFlight counts the claims being served now (see countInFlight); deferCreates is
	// how long the plan's creates wait behind them (claimsFirst).
	inFlight     int
	deferCreates time.Duration
}

// observe reads the pool's world and computes the plan.
func (r *Reconciler) observe(ctx context.Context, pool *labforgev1alpha1.LabPool) (*scope, error) {
	s := &scope{pool: pool, byName: map[string]*labforgev1alpha1.LabEnvironment{}}
	if err := r.observeTemplate(ctx, s); err != nil {
		return nil, err
	}
	if err := r.observeLabs(ctx, s); err != nil {
		return nil, err
	}
	var claims labforgev1alpha1.LabClaimList
	if err := r.Client.List(ctx, &claims, client.MatchingFields{index.ClaimByPool: pool.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return nil, fmt.Errorf("listing the claims of LabPool %s: %w", pool.Name, err)
	}
	admission := newAdmission(ctx, r.Client, pool)
	waiting := countWaiting(claims.Items, s.envs, admission.admits)
	if admission.err != nil {
		return nil, admission.err
	}
	s.inFlight = countInFlight(claims.Items, s.envs, waiting)
	r.plan(s, waiting)
	return s, nil
}

// observeTemplate reads the pool's template and says why labs cannot be built from it.
func (r *Reconciler) observeTemplate(ctx context.Context, s *scope) error {
	ref := s.pool.Spec.TemplateRef.Name
	tmpl := &labforgev1alpha1.LabTemplate{}
	switch err := r.Client.Get(ctx, client.ObjectKey{Name: ref}, tmpl); {
	case apierrors.IsNotFound(err):
		s.problemReason, s.problemMessage = labforgev1alpha1.ReasonTemplateNotFound, fmt.Sprintf("LabTemplate %s does not exist", ref)
	case err != nil:
		return fmt.Errorf("reading LabTemplate %s: %w", ref, err)
	default:
		s.template = tmpl
		if c := meta.FindStatusCondition(tmpl.Status.Conditions, labforgev1alpha1.ConditionReady); c != nil &&
			c.Status == metav1.ConditionFalse && c.ObservedGeneration == tmpl.Generation {
			s.problemReason, s.problemMessage = labforgev1alpha1.ReasonInvalidTemplate, fmt.Sprintf("LabTemplate %s cannot be built: %s", tmpl.Name, c.Message)
		}
	}
	return nil
}

// observeLabs lists the pool's labs and tells the expectations which are live.
func (r *Reconciler) observeLabs(ctx context.Context, s *scope) error {
	var envs labforgev1alpha1.LabEnvironmentList
	// Straight from the cache, without copying a thousand labs on every pass: the pool only
	// reads its labs, deletes them, and copies one before changing its owners.
	if err := r.Client.List(ctx, &envs, client.MatchingLabels{labforgev1alpha1.LabelPool: s.pool.Name}, client.UnsafeDisableDeepCopy); err != nil {
		return fmt.Errorf("listing the labs of LabPool %s: %w", s.pool.Name, err)
	}
	var live []string
	for i := range envs.Items {
		env := &envs.Items[i]
		// The label is a hint; the spec says whether the lab really is this pool's.
		if env.Spec.PoolRef == nil || env.Spec.PoolRef.Name != s.pool.Name {
			continue
		}
		s.envs = append(s.envs, env)
		s.byName[env.Name] = env
		if env.DeletionTimestamp.IsZero() {
			live = append(live, env.Name)
		}
	}
	r.Expectations.Observed(s.pool.Name, live)
	return nil
}

// plan evaluates the pool's sizing rules now and computes the pass's plan.
func (r *Reconciler) plan(s *scope, waiting int32) {
	pool := s.pool
	var generation int64
	if s.template != nil {
		generation = s.template.Generation
	}
	labs := make([]Lab, 0, len(s.envs))
	for _, env := range s.envs {
		labs = append(labs, Lab{Name: env.Name, Created: env.CreationTimestamp.Time, State: stateOf(env), TemplateGeneration: env.Status.TemplateGeneration})
	}
	evidence := failureEvidence(s.envs, generation)
	s.evidence = len(evidence)
	s.circuitOpen = s.evidence >= r.FailureThreshold
	s.now = r.Clock.Now()
	var recorded *metav1.Duration
	if pool.Status.Scaling != nil {
		recorded = pool.Status.Scaling.BootTime
	}
	s.bootTime = observeBootTime(s.envs, recorded)
	if s.bootTime != nil {
		s.warmUp = WarmUpFor(s.bootTime.Duration)
	}
	s.sizing = Rules(pool.Spec, s.now, s.warmUp)
	creates, deletes := r.Expectations.Pending(pool.Name)
	s.plan = Compute(Input{
		Replicas: s.sizing.Buffer, MinLabs: s.sizing.MinLabs, MaxBooting: pool.Spec.MaxBooting, MaxLabs: pool.Spec.MaxLabs,
		Strategy: pool.Spec.UpdateStrategy.Type, TemplateGeneration: generation,
		Labs: labs, WaitingClaims: waiting, PendingCreates: creates, PendingDeletes: deletes,
		CircuitOpen: s.circuitOpen || s.problemReason != "",
	})
	// Failed labs that are the circuit breaker's evidence stay, for the admin to inspect,
	// until a lab boots fine, the template changes, or the admin deletes them.
	kept := s.plan.Delete[:0]
	for _, d := range s.plan.Delete {
		if d.Reason == labforgev1alpha1.ReasonFailed && evidence[d.Name] {
			continue
		}
		kept = append(kept, d)
	}
	s.plan.Delete = kept
}

// untilNextChange is how long until the pool's sizing changes by the calendar: when the
// pass must run again though nothing else happens. Zero when no window will open or close.
func (s *scope) untilNextChange() time.Duration {
	if s.sizing.NextChange.IsZero() {
		return 0
	}
	// Never zero, which would mean no requeue: at the edge itself, run again at once.
	return max(time.Millisecond, s.sizing.NextChange.Sub(s.now))
}

// admission says whether a pool admits claims from a namespace, as the claim controller
// decides it (labclaim's admitted): an unset or invalid selector admits none, an empty one
// all, and a namespace that does not exist none. Namespaces are read from the cache, each
// once per pass and only for claims that would otherwise wait.
type admission struct {
	ctx    context.Context
	reader client.Reader
	// all admits every namespace; else selector (nil: none) decides.
	all      bool
	selector labels.Selector
	seen     map[string]bool
	// err is the first failed read of a namespace.
	err error
}

func newAdmission(ctx context.Context, reader client.Reader, pool *labforgev1alpha1.LabPool) *admission {
	a := &admission{ctx: ctx, reader: reader, seen: map[string]bool{}}
	if pool.Spec.ClaimNamespaceSelector == nil {
		return a
	}
	if selector, err := metav1.LabelSelectorAsSelector(pool.Spec.ClaimNamespaceSelector); err == nil {
		a.all, a.selector = selector.Empty(), selector
	}
	return a
}

func (a *admission) admits(namespace string) bool {
	if a.all || a.selector == nil {
		return a.all
	}
	if ok, known := a.seen[namespace]; known {
		return ok
	}
	ns := &corev1.Namespace{}
	err := a.reader.Get(a.ctx, client.ObjectKey{Name: namespace}, ns)
	if err != nil && !apierrors.IsNotFound(err) {
		if a.err == nil {
			a.err = fmt.Errorf("reading namespace %s: %w", namespace, err)
		}
		return false
	}
	a.seen[namespace] = err == nil && a.selector.Matches(labels.Set(ns.Labels))
	return a.seen[namespace]
}

// countWaiting counts the claims that wait for a lab: not bound, not refused, not ended,
// and from a namespace the pool admits (admits). A claim from any other namespace is
// refused by the claim controller (NamespaceNotAllowed) but may not say so yet, or no
// longer be told (its namespace lost the label after it came): it must never make the
// pool boot a lab.
// A claim that one of labs is bound to does not wait, whatever its status says: the claim
// controller writes a bind into the lab first and into the claim's status after (and may
// die in between), and counting the claim as waiting while its lab counts as bound would
// boot one lab too many.
func countWaiting(claims []labforgev1alpha1.LabClaim, labs []*labforgev1alpha1.LabEnvironment, admits func(namespace string) bool) int32 {
	bound := make(map[types.UID]bool, len(labs))
	for _, env := range labs {
		if ref := env.Spec.ClaimRef; ref != nil {
			bound[ref.UID] = true
		}
	}
	var n int32
	for _, c := range claims {
		if c.DeletionTimestamp.IsZero() && c.Status.Lab == "" && !bound[c.UID] &&
			!meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionStalled) &&
			!meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionExpired) && admits(c.Namespace) {
			n++
		}
	}
	return n
}

// countInFlight counts the claims the claim controller is serving from Ready labs right
// now: waiting claims a Ready lab is free for, and bound claims whose lab is Ready but
// which are not Ready themselves yet (their handover is being written). A claim waiting
// for a lab to boot is not in flight: it needs the refill.
func countInFlight(claims []labforgev1alpha1.LabClaim, labs []*labforgev1alpha1.LabEnvironment, waiting int32) int {
	free := 0
	readyBound := make(map[types.UID]bool, len(labs))
	for _, env := range labs {
		ready := env.DeletionTimestamp.IsZero() && meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionReady)
		switch {
		case !ready:
		case env.Spec.ClaimRef != nil:
			readyBound[env.Spec.ClaimRef.UID] = true
		default:
			free++
		}
	}
	n := min(int(waiting), free)
	for _, c := range claims {
		if readyBound[c.UID] && c.DeletionTimestamp.IsZero() &&
			!meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionReady) &&
			!meta.IsStatusConditionTrue(c.Status.Conditions, labforgev1alpha1.ConditionStalled) {
			n++
		}
	}
	return n
}

// stateOf classifies a lab for the pool's arithmetic.
func stateOf(env *labforgev1alpha1.LabEnvironment) LabState {
	switch {
	case !env.DeletionTimestamp.IsZero():
		return StateDeleting
	case env.Spec.ClaimRef != nil:
		return StateBound
	case meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionStalled):
		return StateFailed
	case meta.IsStatusConditionTrue(env.Status.Conditions, labforgev1alpha1.ConditionReady):
		return StateReady
	default:
		return StateBooting
	}
}

// failureEvidence returns the failed labs of the current template generation created
// after the newest lab of that generation that became Ready: failures in a row.
func failureEvidence(envs []*labforgev1alpha1.LabEnvironment, generation int64) map[string]bool {
	var lastSuccess time.Time
	for _, env := range envs {
		if env.Status.TemplateGeneration == generation && env.Status.ReadyTime != nil && env.CreationTimestamp.After(lastSuccess) {
			lastSuccess = env.CreationTimestamp.Time
		}
	}
	out := map[string]bool{}
	for _, env := range envs {
		if stateOf(env) == StateFailed && env.Status.TemplateGeneration == generation && env.CreationTimestamp.After(lastSuccess) {
			out[env.Name] = true
		}
	}
	return out
}

// setStatus computes the pool's status from the scope.
func setStatus(s *scope, succeeded bool) {
	st := &s.pool.Status
	c := s.plan.Counts
	st.Replicas, st.ReadyReplicas, st.BootingReplicas = c.Ready+c.Booting, c.Ready, c.Booting
	st.BoundReplicas, st.FailedReplicas, st.WaitingClaims = c.Bound, c.Failed, c.Unserved()
	st.Selector = labforgev1alpha1.LabelPool + "=" + s.pool.Name
	st.Scaling = scalingStatus(s)
	gen := s.pool.Generation
	set := func(t string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: status, ObservedGeneration: gen, Reason: reason, Message: msg})
	}
	stalled := func(reason, msg string) {
		set(labforgev1alpha1.ConditionReady, metav1.ConditionFalse, reason, msg)
		set(labforgev1alpha1.ConditionStalled, metav1.ConditionTrue, reason, msg)
	}
	// The warm target is what the rules ask now: spec.replicas for a pool without a
	// floor or a schedule.
	target := s.plan.Target
	switch {
	case s.problemReason != "":
		stalled(s.problemReason, s.problemMessage)
	case s.circuitOpen:
		stalled(labforgev1alpha1.ReasonRepeatedBootFailures, fmt.Sprintf("%s of LabTemplate %s (generation %d) failed to boot in a row; refilling stopped. "+
			"Fix the template, or delete the failed labs to try again", count(int32(s.evidence), "lab"), s.pool.Spec.TemplateRef.Name, s.template.Generation))
	case s.sizing.Err != nil:
		stalled(labforgev1alpha1.ReasonInvalidSchedule, "spec.schedule: "+strings.ReplaceAll(s.sizing.Err.Error(), "\n", "; ")+
			"; the pool is sized without the windows it cannot read")
	case c.Ready >= target:
		set(labforgev1alpha1.ConditionReady, metav1.ConditionTrue, labforgev1alpha1.ReasonWarm, fmt.Sprintf("%d of %d warm labs are ready", c.Ready, target))
		meta.RemoveStatusCondition(&st.Conditions, labforgev1alpha1.ConditionStalled)
	default:
		set(labforgev1alpha1.ConditionReady, metav1.ConditionUnknown, labforgev1alpha1.ReasonFilling, fmt.Sprintf("%d of %d warm labs are ready, %d booting, %s waiting",
			c.Ready, target, c.Booting, count(c.Unserved(), "claim")))
		meta.RemoveStatusCondition(&st.Conditions, labforgev1alpha1.ConditionStalled)
	}
	if succeeded {
		st.ObservedGeneration = gen
	}
}

// scalingStatus says which rule sizes the pool now: an open window names itself (unless
// the hard cap holds the pool below it), otherwise the buffer, the floor or the cap.
func scalingStatus(s *scope) *labforgev1alpha1.PoolScalingStatus {
	room := max(0, s.pool.Spec.MaxLabs-s.plan.Counts.Bound)
	out := &labforgev1alpha1.PoolScalingStatus{Rule: s.plan.Rule, Window: s.sizing.Window, WarmingUp: s.sizing.WarmingUp,
		Desired: min(s.plan.Target, room)}
	if out.Window != "" && out.Rule != labforgev1alpha1.ScalingMaxLabs {
		out.Rule = labforgev1alpha1.ScalingSchedule
	}
	if s.bootTime != nil {
		out.BootTime = s.bootTime.DeepCopy()
		out.WarmUp = &metav1.Duration{Duration: s.warmUp}
	}
	if !s.sizing.NextChange.IsZero() {
		t := metav1.NewTime(s.sizing.NextChange)
		out.NextChange = &t
	}
	return out
}

// recordTransitions emits an event when refilling stops or resumes.
func (r *Reconciler) recordTransitions(before, after *labforgev1alpha1.LabPool) {
	was := meta.FindStatusCondition(before.Status.Conditions, labforgev1alpha1.ConditionStalled)
	now := meta.FindStatusCondition(after.Status.Conditions, labforgev1alpha1.ConditionStalled)
	switch {
	case now != nil && (was == nil || was.Reason != now.Reason):
		r.Recorder.Eventf(after, nil, corev1.EventTypeWarning, now.Reason, "Refill", "%s", now.Message)
	case now == nil && was != nil:
		r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, "RefillResumed", "Refill", "Refilling resumed")
	}
}

// count says n of a noun in English: "1 lab", "2 labs", "0 claims waiting".
func count(n int32, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
