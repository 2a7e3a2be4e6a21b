// Package solution evaluates a claimed lab's solution checks (LabTemplate spec.checks)
// inside the lab, through the lab's own API with the operator's read-only credential.
//
// While a claim holds a Ready lab whose template has checks, the Evaluator keeps one
// watch per distinct resource selection its checks name (scoped to the check's namespace,
// name or label selector, at most MaxWatchesPerLab), and re-evaluates every check on
// every change. When a result changes it wakes the claim through a channel source: the
// claim controller, the only writer of a claim's status, reads the results with Observe
// in its next pass and writes status.checks and the Solved condition in its one status
// write. Nothing polls: a student's fix reaches the claim as fast as the lab's API tells
// the watch. Watches stop when the claim is released (Stop) and when the manager stops.
//
// The lab is untrusted: the student is cluster-admin there. What the lab says is bounded
// (objects per check, the expression's cost budget) and only the check's own words or a
// sanitized error ever reach the claim.
package solution

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/lab"
	"github.com/labforge/labforge/internal/labclient"
	"github.com/labforge/labforge/internal/labprobe"
)

const (
	// MaxWatchesPerLab bounds the watches one lab gets: checks reading the same selection
	// share one, and a template has at most MaxChecks checks.
	MaxWatchesPerLab = labforgev1alpha1.MaxChecks
	// DefaultWatchTimeout is how long one watch request into a lab lasts before it is
	// renewed. The lab's API authorizes a watch when it starts only, so this is how long a
	// revoked read access can go unnoticed; each renewal is one request to the lab.
	DefaultWatchTimeout = time.Minute
)

// ConfigFunc returns the operator's client configuration for the lab named env.
type ConfigFunc func(ctx context.Context, env string) (*rest.Config, error)

// LabConfig returns the production ConfigFunc: the operator's credential from the lab's
// lab.PKISecret (read through c, the manager's cache) and labclient's configuration,
// reaching the lab through opts.Dial (the simulator's dialer in tests and `labforge dev`,
// nil in production).
func LabConfig(c client.Reader, opts labclient.Options) ConfigFunc {
	return func(ctx context.Context, env string) (*rest.Config, error) {
		secret := &corev1.Secret{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: lab.Namespace(env), Name: lab.PKISecret}, secret); err != nil {
			return nil, fmt.Errorf("reading the operator's credential for lab %s: %w", env, err)
		}
		return labclient.Config(env, labprobe.CredentialsFromSecret(secret), opts)
	}
}

// Evaluator runs the checks of claimed labs. Add it to the manager (it is a Runnable)
// and give its Events to the claim controller as a channel source.
type Evaluator struct {
	// Config returns the configuration of a lab's API for the operator.
	Config ConfigFunc
	// WatchTimeout bounds each watch request; DefaultWatchTimeout if zero.
	WatchTimeout time.Duration
	// Log receives the evaluator's lines; the manager's logger if unset.
	Log logr.Logger

	events chan event.GenericEvent

	mu       sync.Mutex
	ctx      context.Context // set by Start; nil before
	sessions map[types.NamespacedName]*session
	// early are the claims observed before Start: woken once it runs, so that a claim
	// reconciled before the evaluator started does not wait for an unrelated event.
	early map[types.NamespacedName]struct{}
}

// NewEvaluator returns an Evaluator reading labs through config.
func NewEvaluator(config ConfigFunc) *Evaluator {
	return &Evaluator{
		Config:   config,
		events:   make(chan event.GenericEvent, 1024),
		sessions: map[types.NamespacedName]*session{},
	}
}

// Events delivers, for source.Channel, the claim whose results changed (a LabClaim with
// only its namespace and name set).
func (e *Evaluator) Events() <-chan event.GenericEvent { return e.events }

// Start runs until ctx ends, then stops every watch. It is the manager's Runnable.
func (e *Evaluator) Start(ctx context.Context) error {
	e.mu.Lock()
	e.ctx = ctx
	early := e.early
	e.early = nil
	e.mu.Unlock()
	for key := range early {
		e.notify(ctx, key)
	}
	<-ctx.Done()
	e.mu.Lock()
	defer e.mu.Unlock()
	for key, s := range e.sessions {
		s.stop()
		delete(e.sessions, key)
	}
	return nil
}

// NeedLeaderElection says the evaluator runs only in the leader, with the controllers it
// serves.
func (e *Evaluator) NeedLeaderElection() bool { return true }

// Observe returns the latest results of the checks of the claim key (of UID uid, holding
// lab env), in the checks' order, starting the lab's watches on its first call. Until a
// watch has read its objects its checks are Waiting. checks are the checks the lab was
// built with (its template snapshot): they are read on the first call only, so a lab
// keeps the checks its RBAC was rendered for.
func (e *Evaluator) Observe(key types.NamespacedName, uid types.UID, env string, checks []labforgev1alpha1.SolutionCheck) []Result {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.sessions[key]
	if s != nil && (s.uid != uid || s.env != env) {
		s.stop()
		s = nil
	}
	if s == nil {
		if e.ctx == nil {
			if e.early == nil {
				e.early = map[types.NamespacedName]struct{}{}
			}
			e.early[key] = struct{}{}
			return waiting(checks, "The operator is starting")
		}
		if e.ctx.Err() != nil {
			return waiting(checks, "The operator is stopping")
		}
		s = e.newSession(key, uid, env, checks)
		e.sessions[key] = s
	}
	return s.snapshot()
}

// Stop ends the watches of the claim key's lab: the claim was released, deleted or
// expired, or its lab is gone or not Ready. Stopping a claim without watches does nothing.
func (e *Evaluator) Stop(key types.NamespacedName) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.early, key)
	if s := e.sessions[key]; s != nil {
		s.stop()
		delete(e.sessions, key)
	}
}

// Watching says how many claims' labs the evaluator watches (for tests and metrics).
func (e *Evaluator) Watching() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sessions)
}

// notify wakes the claim key.
func (e *Evaluator) notify(ctx context.Context, key types.NamespacedName) {
	claim := &labforgev1alpha1.LabClaim{}
	claim.Namespace, claim.Name = key.Namespace, key.Name
	select {
	case e.events <- event.GenericEvent{Object: claim}:
	case <-ctx.Done():
	}
}

func (e *Evaluator) watchTimeout() time.Duration {
	if e.WatchTimeout > 0 {
		return e.WatchTimeout
	}
	return DefaultWatchTimeout
}

// waiting returns a Waiting result for each check, saying why.
func waiting(checks []labforgev1alpha1.SolutionCheck, why string) []Result {
	out := make([]Result, len(checks))
	for i := range checks {
		out[i] = Result{Name: checks[i].Name, State: Waiting, Message: why}
	}
	return out
}
