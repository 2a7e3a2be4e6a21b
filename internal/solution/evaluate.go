package solution

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
	"github.com/labforge/labforge/internal/labprobe"
	"github.com/labforge/labforge/internal/templatecheck"
)

// State is what became of one check.
type State int

const (
	// Waiting: the check's objects have not been read from the lab yet.
	Waiting State = iota
	// Unevaluable: the check could not be evaluated (the lab's API refused or did not
	// answer, too many objects, an error in the expression at run time).
	Unevaluable
	// Failed: the expression evaluated to false.
	Failed
	// Passed: the expression evaluated to true.
	Passed
)

// Result is one check's outcome, as the claim reports it.
type Result struct {
	// Name is the check's name.
	Name string
	// State is what became of it; only Passed passes.
	State State
	// Message is what the student reads: the description when it passes, the hint when
	// it fails, why it cannot be evaluated otherwise. Never a secret: the lab's objects
	// are never quoted, only the check's own words and sanitized errors.
	Message string
}

// Passed says whether the check passed.
func (r Result) Passed() bool { return r.State == Passed }

// maxMessageLength bounds a result's message (the API's status.checks[].message).
const maxMessageLength = 2048

// passedMessage and failedMessage are what a check says in its author's words.
func passedMessage(c *labforgev1alpha1.SolutionCheck) string {
	if c.Description != "" {
		return c.Description
	}
	return "The check passes"
}

func failedMessage(c *labforgev1alpha1.SolutionCheck) string {
	switch {
	case c.Hint != "":
		return c.Hint
	case c.Description != "":
		return "Not yet: " + c.Description
	}
	return "The check does not pass yet"
}

// cannotEvaluate is the message of a check that could not be evaluated.
func cannotEvaluate(err error) string {
	return truncate("Cannot evaluate: " + labprobe.SanitizeError(err).Error())
}

func truncate(s string) string {
	if len(s) <= maxMessageLength {
		return s
	}
	return s[:maxMessageLength-3] + "..."
}

// Evaluate runs a compiled check over the objects its watch holds. objs are the objects
// read from the lab (unsorted; nil or empty when none exist). A check naming one object
// reads it as `object` (null when absent); any other check reads the objects, sorted by
// namespace and name, as `objects`. The evaluation is bounded by the program's cost
// limit (templatecheck.RuntimeCostLimit) and by ctx.
func Evaluate(ctx context.Context, check *labforgev1alpha1.SolutionCheck, prg *templatecheck.Program, objs []*unstructured.Unstructured) Result {
	res := Result{Name: check.Name}
	if len(objs) > templatecheck.MaxCheckObjects {
		res.State, res.Message = Unevaluable, truncate(fmt.Sprintf("Cannot evaluate: the check selects %d objects, more than %d: select fewer by name or label", len(objs), templatecheck.MaxCheckObjects))
		return res
	}
	vars := map[string]any{}
	if prg.Single {
		var object any
		for _, o := range objs {
			if o.GetName() == check.Resource.Name {
				object = o.Object
			}
		}
		vars[templatecheck.VarObject] = object
	} else {
		sorted := append([]*unstructured.Unstructured(nil), objs...)
		sort.Slice(sorted, func(i, j int) bool {
			if sorted[i].GetNamespace() != sorted[j].GetNamespace() {
				return sorted[i].GetNamespace() < sorted[j].GetNamespace()
			}
			return sorted[i].GetName() < sorted[j].GetName()
		})
		list := make([]any, len(sorted))
		for i, o := range sorted {
			list[i] = o.Object
		}
		vars[templatecheck.VarObjects] = list
	}
	out, _, err := prg.ContextEval(ctx, vars)
	if err != nil {
		res.State, res.Message = Unevaluable, cannotEvaluate(fmt.Errorf("the expression failed: %w", err))
		return res
	}
	passed, ok := out.Value().(bool)
	if !ok {
		res.State, res.Message = Unevaluable, cannotEvaluate(errors.New("the expression did not evaluate to a bool"))
		return res
	}
	if passed {
		res.State, res.Message = Passed, truncate(passedMessage(check))
	} else {
		res.State, res.Message = Failed, truncate(failedMessage(check))
	}
	return res
}
