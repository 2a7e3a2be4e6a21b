// Command crd-descriptions rewrites the descriptions of the CRDs controller-gen wrote so
// that each paragraph is one line. controller-gen keeps the line breaks of the Go comments
// it reads the descriptions from; kubectl explain then wraps each of those lines again at
// its own width, breaking sentences mid-phrase ("Defaults to the" / "template's ...").
// Blank lines (paragraphs) and lines that start a list item or are indented are kept.
//
// Usage:
//
//	go run ./hack/crd-descriptions config/crd/bases/*.yaml
package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

func main() {
	for _, path := range os.Args[1:] {
		if err := rewrite(path); err != nil {
			fmt.Fprintf(os.Stderr, "crd-descriptions: %s: %v\n", path, err)
			os.Exit(1)
		}
	}
}

func rewrite(path string) error {
	in, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := unwrapDocument(in)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o644)
}

// unwrapDocument returns the YAML document in with every description unwrapped, in the
// layout controller-gen writes (a leading "---", two-space indents).
func unwrapDocument(in []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(in, &doc); err != nil {
		return nil, err
	}
	walk(&doc)
	var buf bytes.Buffer
	buf.WriteString("---\n")
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// walk unwraps the value of every "description" key below n.
func walk(n *yaml.Node) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "description" && v.Kind == yaml.ScalarNode {
				v.Value = Unwrap(v.Value)
				v.Style = 0
				if strings.Contains(v.Value, "\n") {
					v.Style = yaml.LiteralStyle
				}
				continue
			}
			walk(v)
		}
		return
	}
	for _, c := range n.Content {
		walk(c)
	}
}

// listItem matches a line that starts a list item ("- x", "* x", "1. x").
var listItem = regexp.MustCompile(`^([-*]|[0-9]+\.)\s`)

// Unwrap joins the lines of each paragraph of s with spaces.
func Unwrap(s string) string {
	lines := strings.Split(s, "\n")
	var out []string
	for _, l := range lines {
		last := len(out) - 1
		joinable := last >= 0 && out[last] != "" && l != "" &&
			!listItem.MatchString(l) && !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") &&
			!strings.HasPrefix(out[last], " ") && !strings.HasPrefix(out[last], "\t")
		if joinable {
			out[last] += " " + l
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}
