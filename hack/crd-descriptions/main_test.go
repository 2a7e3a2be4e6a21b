package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestUnwrap(t *testing.T) {
	tests := map[string]struct {
		in, want string
	}{
		"one line stays":             {in: "Spec is the request.", want: "Spec is the request."},
		"a paragraph becomes a line": {in: "Duration is how long.\nDefaults to the\ntemplate's default.", want: "Duration is how long. Defaults to the template's default."},
		"paragraphs stay apart":      {in: "First.\nstill first.\n\nSecond.", want: "First. still first.\n\nSecond."},
		"list items stay on their lines": {
			in:   "Reasons:\n- one\n- two\ncontinued\n1. first",
			want: "Reasons:\n- one\n- two continued\n1. first",
		},
		"indented lines stay": {in: "Example:\n  kubectl get x\n  kubectl get y", want: "Example:\n  kubectl get x\n  kubectl get y"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, Unwrap(tc.in)); d != "" {
				t.Errorf("Unwrap (-want +got):\n%s", d)
			}
		})
	}
}

func TestUnwrapDocument(t *testing.T) {
	in := "---\napiVersion: v1\nkind: X\nspec:\n  description: |-\n    A long\n    sentence.\n  other: |-\n    keeps\n    lines\n"
	got, err := unwrapDocument([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := "---\napiVersion: v1\nkind: X\nspec:\n  description: A long sentence.\n  other: |-\n    keeps\n    lines\n"
	if d := cmp.Diff(want, string(got)); d != "" {
		t.Errorf("unwrapDocument (-want +got):\n%s", d)
	}
	// Running it twice changes nothing: make manifests is idempotent.
	again, err := unwrapDocument(got)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(string(again), string(got)) {
		t.Errorf("second run changed the document:\n%s", again)
	}
}
