package cloudinit

import (
	"bytes"
	"encoding/json"
	"fmt"

	goyaml "go.yaml.in/yaml/v2"
)

// marshalYAML renders v as sigs.k8s.io/yaml.Marshal does (the JSON field names, every
// map's keys sorted by go.yaml.in/yaml/v2), byte for byte, without its detour through the
// YAML parser: sigs.k8s.io/yaml turns the JSON into YAML by parsing it as YAML, and on a
// control plane's user-data, which carries the CNI manifest and the operator's RBAC as
// file contents, that parse was half of what a lab's cloud-init cost the operator (its
// CPU profile during a fill). encoding/json reads the same JSON into the same values:
// strings, booleans, nulls, maps and lists alike, and whole numbers as int64 (the YAML
// parser's reading of them). TestMarshalYAMLMatchesSigsYAML holds the two equal.
func marshalYAML(v any) ([]byte, error) {
	j, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encoding JSON: %w", err)
	}
	d := json.NewDecoder(bytes.NewReader(j))
	d.UseNumber()
	var obj any
	if err := d.Decode(&obj); err != nil {
		return nil, fmt.Errorf("decoding JSON: %w", err)
	}
	return goyaml.Marshal(numbers(obj))
}

// numbers turns the json.Numbers in v into the int64 or float64 the YAML parser would
// have read: whole numbers stay whole however large.
func numbers(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = numbers(e)
		}
	case []any:
		for i, e := range v {
			v[i] = numbers(e)
		}
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, _ := v.Float64()
		return f
	}
	return v
}
