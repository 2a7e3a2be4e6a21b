// Package ssa writes objects with server-side apply, sending the full desired state under
// one field manager, and never sends an object that already says what we would send: an
// idle resync of a thousand labs, and a restart of the operator, must cost no API write.
//
// Two checks keep requests away: a memory of what was applied to which resourceVersion
// (Cluster API's SSA cache: the cheap path while the process lives), and, for an object
// this process has not applied (after a restart) or that changed since, a comparison of the
// desired object with the observed one (Covers): every field we would send already holds
// the value we would send. An edit by anyone else to one of those fields fails the
// comparison, so drift is still repaired. Objects that confine something (a lab's guards)
// are compared exactly instead, and replaced when they hold more (ApplyExact).
package ssa

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// maxCacheEntries bounds the memory of the cache; past it, the cache starts over (the
// only cost is one extra apply per object).
const maxCacheEntries = 200_000

// Applier applies objects as one field manager.
type Applier struct {
	Client     client.Client
	FieldOwner string

	mu      sync.Mutex
	entries int
	// applied maps a namespace (a Namespace object counts as its own) to object keys and
	// "resourceVersion after our apply/hash of what we sent".
	applied map[string]map[string]string
}

// NewApplier returns an Applier writing as fieldOwner.
func NewApplier(c client.Client, fieldOwner string) *Applier {
	return &Applier{Client: c, FieldOwner: fieldOwner, applied: map[string]map[string]string{}}
}

// Apply makes the object match desired. current is the object as last observed (from the
// cache), or nil when it does not exist. Nothing is sent when we applied exactly desired
// to exactly that version before. It reports whether a request was sent; if one was,
// desired holds the object as the API server returned it.
func (a *Applier) Apply(ctx context.Context, desired client.Object, current client.Object) (bool, error) {
	gvk := desired.GetObjectKind().GroupVersionKind()
	if gvk.Kind == "" {
		return false, fmt.Errorf("applying %s/%s: the object has no kind set", desired.GetNamespace(), desired.GetName())
	}
	body, err := json.Marshal(desired)
	if err != nil {
		return false, fmt.Errorf("encoding %s %s: %w", gvk.Kind, desired.GetName(), err)
	}
	ns, key, hash := a.cacheKey(gvk, desired, body)

	if current != nil {
		seenKey := current.GetResourceVersion() + "/" + hash
		if a.seen(ns, key, seenKey) {
			return false, nil
		}
		covered, err := covers(body, current)
		if err != nil {
			return false, fmt.Errorf("comparing %s %s/%s: %w", gvk.Kind, desired.GetNamespace(), desired.GetName(), err)
		}
		if covered {
			a.remember(ns, key, seenKey)
			return false, nil
		}
	}

	u := &unstructured.Unstructured{}
	if err := utiljson.Unmarshal(body, &u.Object); err != nil {
		return false, fmt.Errorf("decoding %s %s: %w", gvk.Kind, desired.GetName(), err)
	}
	// Status belongs to whoever reports it, and creationTimestamp to the API server.
	delete(u.Object, "status")
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	if err := a.Client.Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(a.FieldOwner), client.ForceOwnership); err != nil {
		return true, fmt.Errorf("applying %s %s/%s: %w", gvk.Kind, desired.GetNamespace(), desired.GetName(), err)
	}
	a.remember(ns, key, u.GetResourceVersion()+"/"+hash)
	// Hand the server's view back (allocated NodePorts, cluster IPs, resourceVersion).
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, desired); err != nil {
		return true, fmt.Errorf("decoding the applied %s %s: %w", gvk.Kind, desired.GetName(), err)
	}
	return true, nil
}

// cacheKey returns where the applier remembers desired (its namespace, a Namespace
// counting as its own, and its kind and name) and the hash of its encoding.
func (a *Applier) cacheKey(gvk schema.GroupVersionKind, desired client.Object, body []byte) (ns, key, hash string) {
	sum := sha256.Sum256(body)
	ns = desired.GetNamespace()
	if ns == "" && gvk.Kind == "Namespace" {
		ns = desired.GetName()
	}
	return ns, gvk.String() + "/" + desired.GetName(), hex.EncodeToString(sum[:])
}

// ForgetNamespace drops what the applier remembers of a namespace's objects, once the
// namespace is gone.
func (a *Applier) ForgetNamespace(namespace string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.entries -= len(a.applied[namespace])
	delete(a.applied, namespace)
}

func (a *Applier) seen(ns, key, value string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.applied[ns][key] == value
}

func (a *Applier) remember(ns, key, value string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.entries >= maxCacheEntries {
		a.applied = map[string]map[string]string{}
		a.entries = 0
	}
	m := a.applied[ns]
	if m == nil {
		m = map[string]string{}
		a.applied[ns] = m
	}
	if _, ok := m[key]; !ok {
		a.entries++
	}
	m[key] = value
}

// ApplyCurrent reads the object desired names from reader (the cache) into holder, an
// empty object of the same type, and applies desired over it.
func (a *Applier) ApplyCurrent(ctx context.Context, reader client.Reader, desired, holder client.Object) error {
	err := reader.Get(ctx, client.ObjectKeyFromObject(desired), holder)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading %s %s/%s: %w", desired.GetObjectKind().GroupVersionKind().Kind, desired.GetNamespace(), desired.GetName(), err)
	}
	// A missing object must reach Apply as a nil interface, not a typed nil.
	var current client.Object
	if err == nil {
		current = holder
	}
	_, err = a.Apply(ctx, desired, current)
	return err
}
