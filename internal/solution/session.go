package solution

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/labclient"
	"github.com/labforge/labforge/internal/templatecheck"
)

// session is the watches and latest results of one claim's lab.
type session struct {
	e      *Evaluator
	key    types.NamespacedName
	uid    types.UID
	env    string
	checks []labforgev1alpha1.SolutionCheck
	// programs[i] is checks[i] compiled, nil when compileErrs[i] says why not.
	programs    []*templatecheck.Program
	compileErrs []error
	// watchOf[i] is the index in watches of the watch checks[i] reads; -1 past
	// MaxWatchesPerLab.
	watchOf []int
	watches []*labWatch

	cancel context.CancelFunc
	dirty  chan struct{}

	mu      sync.Mutex
	results []Result
	// configErr is why the lab's configuration could not be built; nil once it was.
	configErr error
}

// labWatch is one watch into the lab, shared by the checks that read the same selection.
type labWatch struct {
	gvr       schema.GroupVersionResource
	namespace string
	// name is a metadata.name field selector, selector a label selector; "" for none.
	name, selector string
	informer       cache.SharedIndexInformer

	mu  sync.Mutex
	err error
}

// selection is what makes two checks' watches the same.
func selection(r labforgev1alpha1.CheckResource) (schema.GroupVersionResource, string, string, string, error) {
	gvr := templatecheck.ResourceOf(r)
	sel := ""
	if r.LabelSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(r.LabelSelector)
		if err != nil {
			return gvr, "", "", "", err
		}
		sel = s.String()
	}
	return gvr, r.Namespace, r.Name, sel, nil
}

func (e *Evaluator) newSession(key types.NamespacedName, uid types.UID, env string, checks []labforgev1alpha1.SolutionCheck) *session {
	ctx, cancel := context.WithCancel(e.ctx)
	s := &session{
		e: e, key: key, uid: uid, env: env,
		checks:      append([]labforgev1alpha1.SolutionCheck(nil), checks...),
		programs:    make([]*templatecheck.Program, len(checks)),
		compileErrs: make([]error, len(checks)),
		watchOf:     make([]int, len(checks)),
		cancel:      cancel,
		dirty:       make(chan struct{}, 1),
		results:     waiting(checks, "Waiting for the operator to read the lab's objects"),
	}
	index := map[string]int{}
	for i := range s.checks {
		c := &s.checks[i]
		s.watchOf[i] = -1
		s.programs[i], s.compileErrs[i] = templatecheck.CompileStoredCheck(c)
		gvr, ns, name, sel, err := selection(c.Resource)
		if err != nil {
			s.compileErrs[i] = fmt.Errorf("resource.labelSelector: %w", err)
			continue
		}
		k := fmt.Sprintf("%s\x00%s\x00%s\x00%s", gvr, ns, name, sel)
		w, ok := index[k]
		if !ok {
			if len(s.watches) >= MaxWatchesPerLab {
				continue
			}
			w = len(s.watches)
			index[k] = w
			s.watches = append(s.watches, &labWatch{gvr: gvr, namespace: ns, name: name, selector: sel})
		}
		s.watchOf[i] = w
	}
	go s.run(ctx)
	return s
}

func (s *session) stop() { s.cancel() }

// snapshot returns a copy of the latest results.
func (s *session) snapshot() []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Result(nil), s.results...)
}

func (s *session) markDirty() {
	select {
	case s.dirty <- struct{}{}:
	default:
	}
}

// run connects to the lab, starts the watches and evaluates the checks on every change
// until the session stops.
func (s *session) run(ctx context.Context) {
	log := s.e.Log.WithValues("LabClaim", s.key, "lab", s.env)
	dyn := s.connect(ctx)
	if dyn == nil {
		return
	}
	for _, w := range s.watches {
		s.startWatch(ctx, dyn, w)
	}
	s.markDirty()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.dirty:
		}
		results := s.evaluate(ctx)
		s.mu.Lock()
		changed := !reflect.DeepEqual(results, s.results)
		s.results = results
		s.mu.Unlock()
		if changed {
			log.V(4).Info("Solution checks changed")
			s.e.notify(ctx, s.key)
		}
	}
}

// connect builds the lab's dynamic client, retrying (the lab's PKI Secret may not be in
// the cache yet) and reporting the failure on every check until it succeeds.
func (s *session) connect(ctx context.Context) dynamic.Interface {
	backoff := time.Second
	for {
		cfg, err := s.e.Config(ctx, s.env)
		var dyn dynamic.Interface
		if err == nil {
			// The watches set their own timeout; client-go's whole-request timeout would
			// cut them off (lists get a context deadline instead, see startWatch).
			cfg = rest.CopyConfig(cfg)
			cfg.Timeout = 0
			dyn, err = dynamic.NewForConfig(cfg)
		}
		if err == nil {
			return dyn
		}
		s.mu.Lock()
		s.configErr = err
		failed := make([]Result, len(s.checks))
		for i := range s.checks {
			failed[i] = Result{Name: s.checks[i].Name, State: Unevaluable, Message: cannotEvaluate(err)}
		}
		changed := !reflect.DeepEqual(failed, s.results)
		s.results = failed
		s.mu.Unlock()
		if changed {
			s.e.notify(ctx, s.key)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// startWatch starts w's informer: a list and watch of exactly the check's selection (listWatch),
// recording whether the lab's API answered so that a refused or unreachable lab shows
// on the checks reading it.
func (s *session) startWatch(ctx context.Context, dyn dynamic.Interface, w *labWatch) {
	w.informer = cache.NewSharedIndexInformerWithOptions(s.listWatch(dyn, w), &unstructured.Unstructured{}, cache.SharedIndexInformerOptions{})
	// Less memory per cached object: the checks never need who wrote which field.
	_ = w.informer.SetTransform(func(o any) (any, error) {
		if u, ok := o.(*unstructured.Unstructured); ok {
			u.SetManagedFields(nil)
		}
		return o, nil
	})
	_, _ = w.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.markDirty() },
		UpdateFunc: func(any, any) { s.markDirty() },
		DeleteFunc: func(any) { s.markDirty() },
	})
	// The lab's answers are the student's: failures are expected, and shown on the claim
	// rather than logged as the operator's errors.
	_ = w.informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		// The reflector wraps the API's answer in its own words ("failed to list
		// *unstructured.Unstructured: ..."): the API's answer is what the student can act on.
		var status apierrors.APIStatus
		if errors.As(err, &status) {
			if e, ok := status.(error); ok {
				err = e
			}
		}
		s.record(w, err)
		s.e.Log.V(4).Info("Watch into a lab failed", "lab", s.env, "resource", w.gvr.String(), "error", err.Error())
	})
	go w.informer.RunWithContext(ctx)
	go func() {
		if cache.WaitForCacheSync(ctx.Done(), w.informer.HasSynced) {
			s.markDirty()
		}
	}()
}

// listWatch lists and watches exactly w's selection through dyn, each request bounded
// in time, and records whether the lab's API answered it.
func (s *session) listWatch(dyn dynamic.Interface, w *labWatch) *cache.ListWatch {
	ri := dyn.Resource(w.gvr).Namespace(w.namespace)
	timeout := int64(s.e.watchTimeout() / time.Second)
	tweak := func(o *metav1.ListOptions) {
		if w.name != "" {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", w.name).String()
		}
		o.LabelSelector = w.selector
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			ctx, cancel := context.WithTimeout(ctx, labclient.DefaultTimeout)
			defer cancel()
			list, err := ri.List(ctx, o)
			s.record(w, err)
			return list, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			o.TimeoutSeconds = &timeout
			wi, err := ri.Watch(ctx, o)
			s.record(w, err)
			return wi, err
		},
	}
}

// record notes whether the lab's API answered w's last request, and re-evaluates when
// that changed. An expired resource version only makes the informer list again.
func (s *session) record(w *labWatch, err error) {
	if err != nil && (apierrors.IsResourceExpired(err) || apierrors.IsGone(err)) {
		return
	}
	w.mu.Lock()
	changed := (w.err == nil) != (err == nil) || (err != nil && w.err.Error() != err.Error())
	w.err = err
	w.mu.Unlock()
	if changed {
		s.markDirty()
	}
}

// evaluate computes every check's result from what the watches hold now.
func (s *session) evaluate(ctx context.Context) []Result {
	out := make([]Result, len(s.checks))
	for i := range s.checks {
		c := &s.checks[i]
		out[i] = Result{Name: c.Name}
		if err := s.compileErrs[i]; err != nil {
			out[i].State, out[i].Message = Unevaluable, cannotEvaluate(err)
			continue
		}
		if s.watchOf[i] < 0 {
			out[i].State, out[i].Message = Unevaluable, truncate(fmt.Sprintf("Cannot evaluate: the template's checks read more than %d different selections", MaxWatchesPerLab))
			continue
		}
		w := s.watches[s.watchOf[i]]
		w.mu.Lock()
		err := w.err
		w.mu.Unlock()
		switch {
		case err != nil:
			out[i].State, out[i].Message = Unevaluable, cannotEvaluate(fmt.Errorf("reading %s from the lab: %w", resourceName(w.gvr), err))
		case !w.informer.HasSynced():
			out[i].State, out[i].Message = Waiting, "Waiting for the operator to read the lab's "+resourceName(w.gvr)
		default:
			items := w.informer.GetStore().List()
			objs := make([]*unstructured.Unstructured, 0, len(items))
			for _, it := range items {
				if u, ok := it.(*unstructured.Unstructured); ok {
					objs = append(objs, u)
				}
			}
			out[i] = Evaluate(ctx, c, s.programs[i], objs)
		}
	}
	return out
}

// resourceName is gvr as kubectl names it: deployments.apps, pods.
func resourceName(gvr schema.GroupVersionResource) string {
	if gvr.Group == "" {
		return gvr.Resource
	}
	return gvr.Resource + "." + gvr.Group
}
