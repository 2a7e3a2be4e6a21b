package ssa

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// What ApplyExact compares and replaces. A guard (a quota, a limit range, a network
// policy) confines by what it says and by what it leaves out: a pod selector narrowed by a
// matchLabels, a peer given a namespaceSelector, a port given an endPort all add a field
// and widen what the guard allows. Covers, which lets observed objects hold more than we
// send, would call those correct, and server-side apply cannot take away a field another
// manager owns (it only drops fields its own manager stops sending). So a guard is
// compared exactly and, when it differs, replaced by an update of the whole object
// (decision 60).

// ApplyExact makes the object exactly desired: every top-level field of desired other
// than metadata and status (a guard's spec) must equal the observed one, extra fields
// included, and metadata must carry desired's labels and exactly its owner references
// (labels and annotations others add confine nothing and are left alone). current is the
// object as last observed (the cache), or nil. A missing object is created with
// server-side apply; an object that differs is replaced by an Update of the whole object
// under the observed resourceVersion, so that a write made meanwhile is never overwritten
// unseen: on a conflict, the object is read again from apiReader (the API server, not the
// cache, which may lag our own write) and compared and replaced once more. An object that
// already is desired costs no request, as with Apply. It reports whether a request was
// sent.
func (a *Applier) ApplyExact(ctx context.Context, apiReader client.Reader, desired, current client.Object) (bool, error) {
	gvk := desired.GetObjectKind().GroupVersionKind()
	if gvk.Kind == "" {
		return false, fmt.Errorf("applying %s/%s: the object has no kind set", desired.GetNamespace(), desired.GetName())
	}
	body, err := json.Marshal(desired)
	if err != nil {
		return false, fmt.Errorf("encoding %s %s: %w", gvk.Kind, desired.GetName(), err)
	}
	ns, key, hash := a.cacheKey(gvk, desired, body)
	created := false
	if current == nil {
		// Apply hands the server's view back in desired: an object the cache did not
		// show (its labels were taken away) may hold more than we sent.
		if _, err := a.Apply(ctx, desired, nil); err != nil {
			return true, err
		}
		current, created = desired, true
	} else if a.seen(ns, key, current.GetResourceVersion()+"/"+hash) {
		return false, nil
	}
	same, err := exact(body, current)
	if err != nil {
		return false, fmt.Errorf("comparing %s %s/%s: %w", gvk.Kind, desired.GetNamespace(), desired.GetName(), err)
	}
	if same {
		a.remember(ns, key, current.GetResourceVersion()+"/"+hash)
		return created, nil
	}
	replaced, err := a.replace(ctx, gvk, body, current)
	if apierrors.IsConflict(err) && apiReader != nil {
		fresh := &unstructured.Unstructured{}
		fresh.SetGroupVersionKind(gvk)
		if err := apiReader.Get(ctx, client.ObjectKeyFromObject(desired), fresh); err != nil {
			return true, fmt.Errorf("reading %s %s/%s again: %w", gvk.Kind, desired.GetNamespace(), desired.GetName(), err)
		}
		if same, err := exact(body, fresh); err != nil || same {
			if same {
				a.remember(ns, key, fresh.GetResourceVersion()+"/"+hash)
			}
			return true, err
		}
		replaced, err = a.replace(ctx, gvk, body, fresh)
	}
	if err != nil {
		return true, fmt.Errorf("replacing %s %s/%s: %w", gvk.Kind, desired.GetNamespace(), desired.GetName(), err)
	}
	a.remember(ns, key, replaced.GetResourceVersion()+"/"+hash)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(replaced.Object, desired); err != nil {
		return true, fmt.Errorf("decoding the replaced %s %s: %w", gvk.Kind, desired.GetName(), err)
	}
	return true, nil
}

// ExactCurrent reads the object desired names from reader (the cache) into holder, an
// empty object of the same type, and makes it exactly desired (ApplyExact).
func (a *Applier) ExactCurrent(ctx context.Context, reader, apiReader client.Reader, desired, holder client.Object) error {
	err := reader.Get(ctx, client.ObjectKeyFromObject(desired), holder)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading %s %s/%s: %w", desired.GetObjectKind().GroupVersionKind().Kind, desired.GetNamespace(), desired.GetName(), err)
	}
	var current client.Object
	if err == nil {
		current = holder
	}
	_, err = a.ApplyExact(ctx, apiReader, desired, current)
	return err
}

// replace updates the observed object to desired (its JSON encoding): desired's
// top-level fields, its labels added to the observed ones, its owner references, and
// the observed resourceVersion as precondition.
func (a *Applier) replace(ctx context.Context, gvk schema.GroupVersionKind, desiredJSON []byte, observed client.Object) (*unstructured.Unstructured, error) {
	desired, current, err := decodeBoth(desiredJSON, observed)
	if err != nil {
		return nil, err
	}
	for k := range current {
		if _, keep := desired[k]; !keep && !objectFrame[k] {
			delete(current, k)
		}
	}
	for k, v := range desired {
		if !objectFrame[k] {
			current[k] = v
		}
	}
	delete(current, "status")
	u := &unstructured.Unstructured{Object: current}
	u.SetGroupVersionKind(gvk)
	u.SetManagedFields(nil)
	want := &unstructured.Unstructured{Object: desired}
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, want.GetLabels())
	u.SetLabels(labels)
	u.SetOwnerReferences(want.GetOwnerReferences())
	if err := a.Client.Update(ctx, u, client.FieldOwner(a.FieldOwner)); err != nil {
		return nil, err
	}
	return u, nil
}

// objectFrame are the top-level fields of an object that are not what it says: compared
// and written apart (metadata), or not ours (status).
var objectFrame = map[string]bool{"apiVersion": true, "kind": true, "metadata": true, "status": true}

// exact reports whether observed is desired (its JSON encoding): every top-level field
// but the frame equal, nothing more and nothing less; desired's labels present with their
// values; and exactly desired's owner references.
func exact(desiredJSON []byte, observed client.Object) (bool, error) {
	desired, current, err := decodeBoth(desiredJSON, observed)
	if err != nil {
		return false, err
	}
	for k := range current {
		if _, ok := desired[k]; !ok && !objectFrame[k] {
			return false, nil
		}
	}
	for k, v := range desired {
		if !objectFrame[k] && !reflect.DeepEqual(v, current[k]) {
			return false, nil
		}
	}
	dm, _ := desired["metadata"].(map[string]any)
	cm, _ := current["metadata"].(map[string]any)
	if !Covers(dm["labels"], cm["labels"]) {
		return false, nil
	}
	return reflect.DeepEqual(dm["ownerReferences"], cm["ownerReferences"]), nil
}

// decodeBoth decodes desired's JSON and observed's, so that both sides compare in one
// form: quantities canonical, empty maps and lists left out as the API server leaves
// them out.
func decodeBoth(desiredJSON []byte, observed client.Object) (desired, current map[string]any, err error) {
	if err := json.Unmarshal(desiredJSON, &desired); err != nil {
		return nil, nil, err
	}
	body, err := json.Marshal(observed)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding the observed object: %w", err)
	}
	if err := json.Unmarshal(body, &current); err != nil {
		return nil, nil, err
	}
	return desired, current, nil
}
