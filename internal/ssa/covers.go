package ssa

import (
	"encoding/json"
	"fmt"
	"reflect"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ignoredMeta are metadata fields a desired object may carry that an apply never sets.
var ignoredMeta = []string{"creationTimestamp", "resourceVersion", "uid", "generation", "managedFields"}

// covers reports whether current already holds every field of desired (its JSON encoding)
// with the same value, so that applying desired would change nothing we own.
func covers(desiredJSON []byte, current client.Object) (bool, error) {
	var desired map[string]any
	if err := json.Unmarshal(desiredJSON, &desired); err != nil {
		return false, err
	}
	delete(desired, "status")
	if meta, ok := desired["metadata"].(map[string]any); ok {
		for _, f := range ignoredMeta {
			delete(meta, f)
		}
	}
	body, err := json.Marshal(current)
	if err != nil {
		return false, fmt.Errorf("encoding the observed object: %w", err)
	}
	var observed map[string]any
	if err := json.Unmarshal(body, &observed); err != nil {
		return false, err
	}
	// The kind is known from the object's type, and a cached object often has none set.
	delete(desired, "apiVersion")
	delete(desired, "kind")
	return Covers(desired, observed), nil
}

// Covers reports whether observed holds every field of desired with the same value: maps
// may hold more keys than desired (defaults, other owners' fields), lists must have the
// same length with each element covered in order, and scalars must be equal. A null in
// desired asks for nothing.
func Covers(desired, observed any) bool {
	switch d := desired.(type) {
	case nil:
		return true
	case map[string]any:
		o, ok := observed.(map[string]any)
		if !ok {
			return len(d) == 0 && observed == nil
		}
		for k, dv := range d {
			ov, present := o[k]
			if !present {
				if dv == nil || isEmpty(dv) {
					continue
				}
				return false
			}
			if !Covers(dv, ov) {
				return false
			}
		}
		return true
	case []any:
		o, ok := observed.([]any)
		if !ok {
			return len(d) == 0 && observed == nil
		}
		if len(d) != len(o) {
			return false
		}
		for i := range d {
			if !Covers(d[i], o[i]) {
				return false
			}
		}
		return true
	default:
		return reflect.DeepEqual(desired, observed)
	}
}

// isEmpty reports whether v is an empty map or list: the API server drops those, so their
// absence is what sending them leads to.
func isEmpty(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	}
	return false
}
