package crash_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// errCrashed is what every write gets once its manager crashed: the process is gone, and
// nothing it would still send reaches the API server.
var errCrashed = errors.New("the manager crashed: no write leaves it any more")

// write is one write an operator sent.
type write struct {
	// Seq is the write's place among the counted writes, from 1, in the order they were
	// sent; 0 when the write was not counted.
	Seq  int
	Verb string
	Kind string
	// Namespace and Name name the object written ("" namespace: cluster-scoped).
	Namespace, Name string
	// ResourceVersion is the object's resourceVersion after a successful write.
	ResourceVersion string
	Err             error
}

func (w write) String() string {
	s := w.Verb + " " + w.Kind + " " + w.Name
	if w.Namespace != "" {
		s = w.Verb + " " + w.Kind + " " + w.Namespace + "/" + w.Name
	}
	if w.Err != nil {
		s += " (" + w.Err.Error() + ")"
	}
	return s
}

// key identifies the object written.
func (w write) key() string { return w.Kind + "/" + w.Namespace + "/" + w.Name }

// matchFunc says whether a write counts, from the write and the object sent (nil for a
// typed apply configuration, which is no object).
type matchFunc func(w write, obj client.Object) bool

// recorder wraps an operator's client (manager.Options.WrapClient) with controller-runtime's
// interceptor: it records every write the operator sends (create, update, patch, delete,
// apply, and their subresource forms), counts those a match function accepts and, when
// armed to crash at write k, lets the k-th counted write through and then cancels the
// manager, refusing every write after it: nothing that follows write k happens in that
// process, as if it had been killed right then.
type recorder struct {
	cancel  context.CancelFunc
	crashCh chan struct{}

	mu      sync.Mutex
	match   matchFunc
	crashAt int
	crashed bool
	refused int
	// crashedAfter is the write the manager crashed after.
	crashedAfter write
	// epoch counts the calls of arm; seq numbers the writes counted since the last one.
	epoch, seq int
	// counted are the writes counted since arm; writes are all of them.
	counted []write
	writes  []write
	// reads are the objects read by key (kind/namespace/name): a reconcile starts with
	// one, so a manager that read an object has begun to act on it.
	reads map[string]bool
}

func newRecorder(cancel context.CancelFunc) *recorder {
	return &recorder{cancel: cancel, crashCh: make(chan struct{}), reads: map[string]bool{}}
}

// arm counts, from now on, the writes match accepts (from 1 again) and crashes the
// manager right after the crashAt-th of them; crashAt 0 never crashes. arm(nil, 0)
// counts nothing.
func (r *recorder) arm(match matchFunc, crashAt int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.match, r.crashAt, r.counted, r.seq = match, crashAt, nil, 0
	r.epoch++
}

// crashedNow is closed once the manager crashed.
func (r *recorder) crashedNow() <-chan struct{} { return r.crashCh }

func (r *recorder) hasCrashed() bool {
	select {
	case <-r.crashCh:
		return true
	default:
		return false
	}
}

// crashing says whether the write the manager crashes after has been sent (it may not
// have been answered yet; crashedNow closes once it has).
func (r *recorder) crashing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.crashed
}

// crashWrite is the write the manager crashed after.
func (r *recorder) crashWrite() write {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.crashedAfter
}

// countedWrites returns the writes counted since arm, in the order they were sent.
func (r *recorder) countedWrites() []write {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := append([]write(nil), r.counted...)
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out
}

// counts returns how many writes were counted since arm (sent, if not all answered yet),
// and how many were sent at all.
func (r *recorder) counts() (counted, all int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seq, len(r.writes)
}

// allWrites returns every write this operator sent, in the order they were answered.
func (r *recorder) allWrites() []write {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]write(nil), r.writes...)
}

// hasRead says whether the operator read the object of kind named key.
func (r *recorder) hasRead(kind string, key client.ObjectKey) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads[kind+"/"+key.Namespace+"/"+key.Name]
}

// mark returns a place in allWrites: writes answered from now on come after it.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.writes)
}

// refusedWrites is how many writes the crash stopped.
func (r *recorder) refusedWrites() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.refused
}

// do sends one write through the gate: refused after the crash, counted if it matches,
// and the crash itself right after the write it is armed for.
func (r *recorder) do(w write, obj client.Object, send func() error) error {
	r.mu.Lock()
	if r.crashed {
		r.refused++
		r.mu.Unlock()
		return errCrashed
	}
	crashNow := false
	epoch := r.epoch
	if r.match != nil && r.match(w, obj) {
		r.seq++
		w.Seq = r.seq
		if r.seq == r.crashAt {
			r.crashed, crashNow = true, true
		}
	}
	r.mu.Unlock()

	w.Err = send()
	if w.Err == nil && obj != nil {
		w.ResourceVersion = obj.GetResourceVersion()
	}
	r.mu.Lock()
	r.writes = append(r.writes, w)
	if w.Seq > 0 && epoch == r.epoch {
		r.counted = append(r.counted, w)
	}
	if crashNow {
		r.crashedAfter = w
	}
	r.mu.Unlock()
	if crashNow {
		r.cancel()
		close(r.crashCh)
	}
	return w.Err
}

// describe names the write of obj.
func describe(c client.Client, verb string, obj client.Object) write {
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if gvk, err := c.GroupVersionKindFor(obj); err == nil {
		kind = gvk.Kind
	}
	return write{Verb: verb, Kind: kind, Namespace: obj.GetNamespace(), Name: obj.GetName()}
}

// unstructuredApply is what labforge's SSA applier sends: an unstructured object wrapped
// as an apply configuration (client.ApplyConfigurationFromUnstructured), which the
// client fills with the server's answer.
type unstructuredApply interface {
	GetKind() string
	GetNamespace() string
	GetName() string
}

// typedApply is a generated apply configuration.
type typedApply interface {
	GetKind() *string
	GetNamespace() *string
	GetName() *string
}

// describeApply names the write of an apply configuration; obj is non-nil when the
// configuration is also an object (the unstructured kind, which the client fills with the
// server's answer).
func describeApply(verb string, ac runtime.ApplyConfiguration) (write, client.Object) {
	switch a := ac.(type) {
	case unstructuredApply:
		w := write{Verb: verb, Kind: a.GetKind(), Namespace: a.GetNamespace(), Name: a.GetName()}
		obj, _ := ac.(client.Object)
		return w, obj
	case typedApply:
		deref := func(s *string) string {
			if s == nil {
				return ""
			}
			return *s
		}
		return write{Verb: verb, Kind: deref(a.GetKind()), Namespace: deref(a.GetNamespace()), Name: deref(a.GetName())}, nil
	}
	return write{Verb: verb, Kind: fmt.Sprintf("%T", ac)}, nil
}

// watchless adapts the manager's client (which does not watch: the cache does) to the
// interface the interceptor wraps.
type watchless struct{ client.Client }

func (watchless) Watch(context.Context, client.ObjectList, ...client.ListOption) (watch.Interface, error) {
	return nil, errors.New("the manager's client does not watch")
}

// wrap is the manager.Options.WrapClient of the operator the recorder watches.
func (r *recorder) wrap(c client.Client) client.Client {
	return interceptor.NewClient(watchless{c}, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if gvk, err := c.GroupVersionKindFor(obj); err == nil {
				r.mu.Lock()
				r.reads[gvk.Kind+"/"+key.Namespace+"/"+key.Name] = true
				r.mu.Unlock()
			}
			return c.Get(ctx, key, obj, opts...)
		},
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			return r.do(describe(c, "create", obj), obj, func() error { return c.Create(ctx, obj, opts...) })
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			return r.do(describe(c, "update", obj), obj, func() error { return c.Update(ctx, obj, opts...) })
		},
		Patch: func(ctx context.Context, c client.WithWatch, obj client.Object, patch client.Patch, opts ...client.PatchOption) error {
			return r.do(describe(c, "patch", obj), obj, func() error { return c.Patch(ctx, obj, patch, opts...) })
		},
		Delete: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteOption) error {
			return r.do(describe(c, "delete", obj), obj, func() error { return c.Delete(ctx, obj, opts...) })
		},
		DeleteAllOf: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.DeleteAllOfOption) error {
			return r.do(describe(c, "deletecollection", obj), obj, func() error { return c.DeleteAllOf(ctx, obj, opts...) })
		},
		Apply: func(ctx context.Context, c client.WithWatch, ac runtime.ApplyConfiguration, opts ...client.ApplyOption) error {
			w, obj := describeApply("apply", ac)
			return r.do(w, obj, func() error { return c.Apply(ctx, ac, opts...) })
		},
		SubResourceCreate: func(ctx context.Context, c client.Client, sub string, obj, subObj client.Object, opts ...client.SubResourceCreateOption) error {
			return r.do(describe(c, "create "+sub, obj), obj, func() error { return c.SubResource(sub).Create(ctx, obj, subObj, opts...) })
		},
		SubResourceUpdate: func(ctx context.Context, c client.Client, sub string, obj client.Object, opts ...client.SubResourceUpdateOption) error {
			return r.do(describe(c, "update "+sub, obj), obj, func() error { return c.SubResource(sub).Update(ctx, obj, opts...) })
		},
		SubResourcePatch: func(ctx context.Context, c client.Client, sub string, obj client.Object, patch client.Patch, opts ...client.SubResourcePatchOption) error {
			return r.do(describe(c, "patch "+sub, obj), obj, func() error { return c.SubResource(sub).Patch(ctx, obj, patch, opts...) })
		},
		SubResourceApply: func(ctx context.Context, c client.Client, sub string, ac runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
			w, obj := describeApply("apply "+sub, ac)
			return r.do(w, obj, func() error { return c.SubResource(sub).Apply(ctx, ac, opts...) })
		},
	})
}

// summarize counts writes by verb and kind, for reports: "apply Secret: 3, ...".
func summarize(ws []write) string {
	counts := map[string]int{}
	for _, w := range ws {
		counts[w.Verb+" "+w.Kind]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s: %d", k, counts[k]))
	}
	return strings.Join(parts, ", ")
}
