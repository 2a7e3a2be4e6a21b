package templatecheck

import (
	"errors"
	"fmt"
	"strings"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/apiserver/pkg/cel/environment"
	"k8s.io/apiserver/pkg/cel/library"

	labforgev1alpha1 "github.com/labforge/labforge/api/v1alpha1"
)

// The variables a check's expression reads.
const (
	// VarObject is the one object a check with resource.name reads (null while absent).
	VarObject = "object"
	// VarObjects is the list of objects a check without resource.name reads.
	VarObjects = "objects"
)

// Cost bounds of a check's expression (decision 75).
const (
	// MaxCheckObjects is the most objects one check reads: its watch stops reporting,
	// and the check cannot be evaluated, past it. The static cost estimate assumes a list
	// of this many.
	MaxCheckObjects = 500
	// MaxValueSize is the size (characters of a string, entries of a list or map) the
	// static estimate assumes for any value read from an object. An object may hold
	// larger ones: the runtime budget still bounds what an evaluation costs.
	MaxValueSize = 1024
	// StaticCostLimit refuses an expression whose estimated worst case costs more: the
	// limit Kubernetes puts on one CRD validation rule (apiextensions'
	// StaticEstimatedCostLimit).
	StaticCostLimit = 10_000_000
	// RuntimeCostLimit stops one evaluation of one check that costs more: Kubernetes'
	// per-call limit for CEL (k8s.io/apiserver/pkg/apis/cel's PerCallLimit, about 0.1 s).
	RuntimeCostLimit = 1_000_000
)

// celEnvs are Kubernetes' own CEL environments (k8s.io/apiserver/pkg/cel/environment, as
// ValidatingAdmissionPolicy compiles with: the strings, lists, regex, URL, quantity, IP,
// CIDR, format and semver libraries and their cost model), at the version labforge's
// API modules are, with the two variables a check reads.
var celEnvs = func() *environment.EnvSet {
	base := environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion())
	envs, err := base.Extend(environment.VersionedOptions{
		IntroducedVersion: version.MajorMinor(1, 0),
		EnvOptions: []cel.EnvOption{
			cel.Variable(VarObject, cel.DynType),
			cel.Variable(VarObjects, cel.ListType(cel.DynType)),
		},
	}, environment.StrictCostOpt)
	if err != nil {
		panic(fmt.Sprintf("templatecheck: building the checks' CEL environment: %v", err))
	}
	return envs
}()

// Program is a compiled check expression.
type Program struct {
	cel.Program
	// Single says the expression reads `object` (the check names one object), not
	// `objects`.
	Single bool
}

// CompileCheck compiles check's expression for a new template (Kubernetes' "new
// expressions" environment) and checks that it is a bool and that its estimated cost is
// within StaticCostLimit. The error is the compiler's own words.
func CompileCheck(check *labforgev1alpha1.SolutionCheck) (*Program, error) {
	return compile(check, celEnvs.NewExpressionsEnv(), true)
}

// CompileStoredCheck compiles the expression of a check already accepted, for evaluation:
// Kubernetes' "stored expressions" environment, which keeps accepting what an older
// labforge accepted. It does not estimate the cost again; the runtime budget bounds it.
func CompileStoredCheck(check *labforgev1alpha1.SolutionCheck) (*Program, error) {
	return compile(check, celEnvs.StoredExpressionsEnv(), false)
}

func compile(check *labforgev1alpha1.SolutionCheck, env *cel.Env, estimate bool) (*Program, error) {
	if len(check.Expression) > labforgev1alpha1.MaxCheckExpressionLength {
		return nil, fmt.Errorf("the expression is %d bytes, more than %d", len(check.Expression), labforgev1alpha1.MaxCheckExpressionLength)
	}
	ast, issues := env.Compile(check.Expression)
	if issues.Err() != nil {
		return nil, fmt.Errorf("the expression does not compile: %s", strings.TrimSpace(issues.Err().Error()))
	}
	if !ast.OutputType().IsExactType(cel.BoolType) && !ast.OutputType().IsExactType(cel.DynType) {
		return nil, fmt.Errorf("the expression must evaluate to a bool, not %s", ast.OutputType())
	}
	single := check.Resource.Name != ""
	if refs := referencedVariables(ast); single && refs[VarObjects] {
		return nil, errors.New("the expression reads objects, but the check names one object (resource.name): read object")
	} else if !single && refs[VarObject] {
		return nil, errors.New("the expression reads object, but the check selects a list (no resource.name): read objects")
	}
	if estimate {
		cost, err := env.EstimateCost(ast, &library.CostEstimator{SizeEstimator: sizeEstimator{}})
		if err != nil {
			return nil, fmt.Errorf("estimating the expression's cost: %w", err)
		}
		if cost.Max > StaticCostLimit {
			return nil, fmt.Errorf("the expression's estimated cost %d exceeds the limit %d (a list of %d objects, values of %d characters): iterate less, e.g. select fewer objects by name or label",
				cost.Max, uint64(StaticCostLimit), MaxCheckObjects, MaxValueSize)
		}
	}
	prg, err := env.Program(ast, cel.CostLimit(RuntimeCostLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, fmt.Errorf("building the expression's program: %w", err)
	}
	return &Program{Program: prg, Single: single}, nil
}

// referencedVariables returns the top-level variables the checked expression reads.
func referencedVariables(a *cel.Ast) map[string]bool {
	refs := map[string]bool{}
	for _, r := range a.NativeRep().ReferenceMap() {
		if r.Value == nil && r.Name != "" && len(r.OverloadIDs) == 0 {
			refs[r.Name] = true
		}
	}
	return refs
}

// sizeEstimator bounds what the static estimate cannot know: `objects` holds at most
// MaxCheckObjects objects, and every other value read from them at most MaxValueSize
// characters or entries.
type sizeEstimator struct{}

func (sizeEstimator) EstimateSize(element checker.AstNode) *checker.SizeEstimate {
	if p := element.Path(); len(p) == 1 && p[0] == VarObjects {
		return &checker.SizeEstimate{Min: 0, Max: MaxCheckObjects}
	}
	return &checker.SizeEstimate{Min: 0, Max: MaxValueSize}
}

func (sizeEstimator) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// ResourceOf returns the resource a check reads: resource.resource, or the lowercase
// plural of resource.kind as Kubernetes derives it for regular kinds
// (meta.UnsafeGuessKindToResource). The lab's RBAC grant and the operator's watch both
// use it, so the two always agree.
func ResourceOf(r labforgev1alpha1.CheckResource) schema.GroupVersionResource {
	if r.Resource != "" {
		return schema.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Resource}
	}
	gvr, _ := meta.UnsafeGuessKindToResource(schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind})
	return gvr
}

// checkChecks returns what is wrong with a template's checks, one sentence each.
func checkChecks(checks []labforgev1alpha1.SolutionCheck) []string {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if len(checks) > labforgev1alpha1.MaxChecks {
		bad("checks lists %d checks, more than %d", len(checks), labforgev1alpha1.MaxChecks)
	}
	seen := map[string]bool{}
	for i := range checks {
		c := &checks[i]
		if msgs := validation.IsDNS1123Label(c.Name); len(msgs) > 0 {
			bad("checks[%d].name %q: %s", i, c.Name, strings.Join(msgs, "; "))
		}
		if seen[c.Name] {
			bad("checks[%d].name %q is not unique", i, c.Name)
		}
		seen[c.Name] = true
		r := c.Resource
		if (r.Kind == "") == (r.Resource == "") {
			bad("check %s: exactly one of resource.kind and resource.resource must be set", c.Name)
		}
		if r.Version == "" {
			bad("check %s: resource.version is empty", c.Name)
		}
		if r.Name != "" && r.LabelSelector != nil {
			bad("check %s: resource.name and resource.labelSelector are exclusive", c.Name)
		}
		if r.LabelSelector != nil {
			if _, err := metav1.LabelSelectorAsSelector(r.LabelSelector); err != nil {
				bad("check %s: resource.labelSelector: %v", c.Name, err)
			}
		}
		if _, err := CompileCheck(c); err != nil {
			bad("check %s: %v", c.Name, err)
		}
	}
	return problems
}
