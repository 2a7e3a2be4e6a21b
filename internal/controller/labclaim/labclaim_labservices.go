package labclaim

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/event"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// LabConfigFunc returns the operator's client configuration for lab env's own API, from
// the lab's PKI Secret (labclient.Config with the lab's credentials and the operator's
// dialer).
type LabConfigFunc func(env string, pki *corev1.Secret) (*rest.Config, error)

// labServices watches, through each claimed lab's own API, the Services of the labs whose
// template lets students expose them (network.maxExposedServices above 0): one informer
// per lab, started by the lab's claim's first pass after the handover and stopped when the
// claim lets the lab go. A change of a Service that may be exposed wakes the claim (events,
// a source.Channel of the claim controller); the claim's pass reads the informer's store,
// never the lab's API.
//
// A lab is the student's: its API may be slow, refuse the operator (the student can delete
// its role), or hold many Services. The informer retries with client-go's backoff and the
// lab client's rate limit (labclient), and nothing is written on the host until it has
// listed the lab once.
type labServices struct {
	newConfig LabConfigFunc
	events    chan event.GenericEvent

	mu      sync.Mutex
	watches map[string]*labWatch
}

// labWatch is the watch of one lab's Services.
type labWatch struct {
	claim  types.NamespacedName
	ctx    context.Context
	cancel context.CancelFunc
	client kubernetes.Interface
	store  toolscache.Store
	synced toolscache.InformerSynced
	// changes counts the changes seen of Services that may be exposed: a refusal (the
	// quota) is retried only once the lab changed (see exposureMemo).
	changes atomic.Int64
}

func newLabServices(newConfig LabConfigFunc) *labServices {
	return &labServices{newConfig: newConfig, events: make(chan event.GenericEvent, 1024), watches: map[string]*labWatch{}}
}

// ensure returns the watch of lab env for the given claim, starting it if needed. A watch
// started for another claim of the lab (the lab cannot change hands, but a claim of the
// same name can be made again) is replaced.
func (l *labServices) ensure(ctx context.Context, env string, claim types.NamespacedName, pki *corev1.Secret) (*labWatch, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.watches[env]; ok {
		if w.claim == claim {
			return w, nil
		}
		w.cancel()
		delete(l.watches, env)
	}
	cfg, err := l.newConfig(env, pki)
	if err != nil {
		return nil, fmt.Errorf("configuring a client for the API of lab %s: %w", env, err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("creating a client for the API of lab %s: %w", env, err)
	}
	w := &labWatch{claim: claim, client: cs}
	store, informer := l.newInformer(w)
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.ctx, w.cancel, w.store, w.synced = wctx, cancel, store, informer.HasSynced
	go informer.RunWithContext(wctx)
	go func() {
		// Once listed, the claim looks again, even when the lab has nothing to expose: a
		// host Service may be left from Services deleted while the operator was away.
		if toolscache.WaitForCacheSync(wctx.Done(), informer.HasSynced) {
			w.changed(l, true)
		}
	}()
	l.watches[env] = w
	ctrl.LoggerFrom(ctx).V(1).Info("Started watching the lab's Services", "lab", env)
	return w, nil
}

// newInformer returns the informer of w's lab's Services, through w's client: a change of
// a Service that may be exposed wakes w's claim (labWatch.changed).
func (l *labServices) newInformer(w *labWatch) (toolscache.Store, toolscache.Controller) {
	cs := w.client
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return cs.CoreV1().Services(metav1.NamespaceAll).List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return cs.CoreV1().Services(metav1.NamespaceAll).Watch(ctx, opts)
		},
	}
	return toolscache.NewInformerWithOptions(toolscache.InformerOptions{
		ListerWatcher: lw,
		ObjectType:    &corev1.Service{},
		Handler: toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(o any) { w.changed(l, exposable(o)) },
			UpdateFunc: func(old, cur any) {
				w.changed(l, (exposable(old) || exposable(cur)) && !sameExposure(old, cur))
			},
			DeleteFunc: func(o any) {
				if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
					o = d.Obj
				}
				w.changed(l, exposable(o))
			},
		},
		// The Services are kept whole but for their managed fields: the status update of a
		// LoadBalancer Service sends the object back, and a Service's status endpoint
		// takes its metadata too.
		Transform: func(o any) (any, error) {
			if m, ok := o.(metav1.Object); ok {
				m.SetManagedFields(nil)
			}
			return o, nil
		},
	})
}

// stop ends the watch of lab env, if any.
func (l *labServices) stop(env string) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if w, ok := l.watches[env]; ok {
		w.cancel()
		delete(l.watches, env)
	}
}

// stopAll ends every watch: the manager stops.
func (l *labServices) stopAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for env, w := range l.watches {
		w.cancel()
		delete(l.watches, env)
	}
}

// stopClaim ends the watches started for claim: the claim is gone.
func (l *labServices) stopClaim(claim types.NamespacedName) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for env, w := range l.watches {
		if w.claim == claim {
			w.cancel()
			delete(l.watches, env)
		}
	}
}

// changed wakes the watch's claim when relevant.
func (w *labWatch) changed(l *labServices, relevant bool) {
	if !relevant {
		return
	}
	w.changes.Add(1)
	claim := &labforgev1alpha1.LabClaim{ObjectMeta: metav1.ObjectMeta{Namespace: w.claim.Namespace, Name: w.claim.Name}}
	select {
	case l.events <- event.GenericEvent{Object: claim}:
	case <-w.ctx.Done():
	}
}

// services returns the lab's Services that may be exposed, oldest first (ties by
// namespace and name): when there are more than the template allows, the first come are
// exposed, and a new Service never takes the place of one exposed before it.
func (w *labWatch) services() []*corev1.Service {
	var out []*corev1.Service
	for _, o := range w.store.List() {
		if svc, ok := o.(*corev1.Service); ok && exposable(svc) {
			out = append(out, svc)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	return out
}

// exposable says whether o is a Service of a type the operator exposes.
func exposable(o any) bool {
	svc, ok := o.(*corev1.Service)
	return ok && (svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer)
}

// sameExposure says whether an update changed nothing the operator exposes or writes:
// the type, the ports and the load balancer status.
func sameExposure(old, cur any) bool {
	a, okA := old.(*corev1.Service)
	b, okB := cur.(*corev1.Service)
	return okA && okB && a.Spec.Type == b.Spec.Type &&
		equality.Semantic.DeepEqual(a.Spec.Ports, b.Spec.Ports) &&
		equality.Semantic.DeepEqual(a.Status.LoadBalancer, b.Status.LoadBalancer)
}
