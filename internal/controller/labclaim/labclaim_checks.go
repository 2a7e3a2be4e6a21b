package labclaim

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/render"
	"github.com/labforge/labforge/internal/solution"
)

// A claimed lab's solution checks (decision 75): the evaluator (internal/solution) watches
// the lab and wakes the claim when a result changes; the claim's pass reads the results
// and writes status.checks and Solved in its one status write. A claim whose template
// has no checks never reaches past checksOf.

var claimSolvedSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "labforge_claim_solved_seconds",
	Help:    "Time from a LabClaim's first Ready (the lab handed over) to every solution check passing, by template and pool.",
	Buckets: []float64{10, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 5400, 7200, 14400, 28800},
}, []string{"template", "pool"})

func init() {
	metrics.Registry.MustRegister(claimSolvedSeconds)
}

// solutionScope is what a pass learnt of the claim's checks.
type solutionScope struct {
	// checks are the checks of the lab's template snapshot.
	checks []labforgev1alpha1.SolutionCheck
	// results are the evaluator's, nil while the lab is not handed over and Ready.
	results []solution.Result
}

// observeChecks fills s.solution for a claim whose lab has checks, starting the lab's
// watches once the lab is handed over and Ready, and stops them otherwise.
func (r *Reconciler) observeChecks(ctx context.Context, s *scope) error {
	if r.Checks == nil {
		return nil
	}
	key := client.ObjectKeyFromObject(s.claim)
	if s.env == nil || s.expired || s.refusedReason != "" {
		r.Checks.Stop(key)
		return nil
	}
	checks, err := r.checksOf(ctx, s.env)
	if err != nil || len(checks) == 0 {
		r.Checks.Stop(key)
		return err
	}
	s.solution = &solutionScope{checks: checks}
	if !s.labReady || s.handover == nil || s.pendingReason != "" {
		r.Checks.Stop(key)
		return nil
	}
	s.solution.results = r.Checks.Observe(key, s.claim.UID, s.env.Name, checks)
	return nil
}

// checksOf returns the checks env was built with: its template snapshot's, the ones its
// bootstrap granted the operator read access for. It decodes the snapshot only when it
// names checks, so that claims of templates without checks cost one cache read.
func (r *Reconciler) checksOf(ctx context.Context, env *labforgev1alpha1.LabEnvironment) ([]labforgev1alpha1.SolutionCheck, error) {
	cm := &corev1.ConfigMap{}
	key := client.ObjectKey{Namespace: lab.Namespace(env.Name), Name: render.TemplateSnapshot}
	if err := r.Client.Get(ctx, key, cm, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading the template snapshot of lab %s: %w", env.Name, err)
	}
	if !strings.Contains(cm.Data[render.TemplateSnapshotKey], `"checks"`) {
		return nil, nil
	}
	spec, err := r.snapshotOf(ctx, env)
	if err != nil || spec == nil {
		return nil, err
	}
	return spec.Checks, nil
}

// stopChecks ends the watches of a claim that is gone or going.
func (r *Reconciler) stopChecks(key client.ObjectKey) {
	if r.Checks != nil {
		r.Checks.Stop(key)
	}
}

// setSolved writes status.checks and the Solved condition from s.solution; a claim
// without checks (or whose checks this pass did not learn) keeps what its status says.
func setSolved(s *scope, _ bool) {
	sol := s.solution
	if sol == nil {
		return
	}
	st := &s.claim.Status
	set := func(status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: labforgev1alpha1.ConditionSolved, Status: status,
			ObservedGeneration: s.claim.Generation, Reason: reason, Message: msg})
	}
	if sol.results == nil {
		set(metav1.ConditionUnknown, labforgev1alpha1.ReasonWaitingForChecks,
			fmt.Sprintf("The lab's %d checks are evaluated once it is ready and handed over", len(sol.checks)))
		return
	}
	now := metav1.NewTime(s.now)
	checks := make([]labforgev1alpha1.CheckStatus, len(sol.results))
	var failed, unevaluable, waiting []string
	for i, res := range sol.results {
		c := labforgev1alpha1.CheckStatus{Name: res.Name, Passed: res.Passed(), Message: res.Message, LastTransitionTime: &now}
		for j := range st.Checks {
			if prev := st.Checks[j]; prev.Name == res.Name && prev.Passed == c.Passed && prev.LastTransitionTime != nil {
				c.LastTransitionTime = prev.LastTransitionTime
			}
		}
		checks[i] = c
		line := res.Name + ": " + res.Message
		switch res.State {
		case solution.Failed:
			failed = append(failed, line)
		case solution.Unevaluable:
			unevaluable = append(unevaluable, line)
		case solution.Waiting:
			waiting = append(waiting, line)
		}
	}
	st.Checks = checks
	switch {
	case len(failed) > 0:
		set(metav1.ConditionFalse, labforgev1alpha1.ReasonChecksFailed,
			fmt.Sprintf("%d of %d checks fail: %s", len(failed), len(checks), strings.Join(append(failed, unevaluable...), "; ")))
	case len(unevaluable) > 0:
		set(metav1.ConditionUnknown, labforgev1alpha1.ReasonChecksNotEvaluated,
			fmt.Sprintf("%d of %d checks cannot be evaluated: %s", len(unevaluable), len(checks), strings.Join(unevaluable, "; ")))
	case len(waiting) > 0:
		set(metav1.ConditionUnknown, labforgev1alpha1.ReasonWaitingForChecks,
			fmt.Sprintf("%d of %d checks are not evaluated yet: %s", len(waiting), len(checks), strings.Join(waiting, "; ")))
	default:
		set(metav1.ConditionTrue, labforgev1alpha1.ReasonAllChecksPassed, fmt.Sprintf("All %d checks pass", len(checks)))
		if st.SolvedTime == nil {
			st.SolvedTime = &now
		}
	}
}

// recordSolved records the event and the time to solve of a claim that just turned
// Solved for the first time.
func (r *Reconciler) recordSolved(ctx context.Context, before *labforgev1alpha1.LabClaim, s *scope) {
	after := s.claim
	if before.Status.SolvedTime != nil || after.Status.SolvedTime == nil || s.env == nil {
		return
	}
	start := after.CreationTimestamp.Time
	if t := after.Status.ReadyTime; t != nil {
		start = t.Time
	}
	took := after.Status.SolvedTime.Sub(start).Truncate(time.Second)
	pool := ""
	if p := s.env.Spec.PoolRef; p != nil {
		pool = p.Name
	}
	claimSolvedSeconds.WithLabelValues(s.env.Spec.TemplateRef.Name, pool).Observe(took.Seconds())
	r.Recorder.Eventf(after, nil, corev1.EventTypeNormal, labforgev1alpha1.ReasonSolved, "Solve",
		"All %d checks pass, %s after the lab was handed over", len(after.Status.Checks), took)
	ctrl.LoggerFrom(ctx).Info("LabClaim solved", "lab", s.env.Name, "after", took)
}
