package manager

import (
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
)

// TestWithoutBodies: client-go's body lines never reach the operator's log, whatever the
// verbosity; every other line does, with the names and values it was given.
func TestWithoutBodies(t *testing.T) {
	var lines []string
	base := funcr.New(func(prefix, args string) { lines = append(lines, prefix+" "+args) }, funcr.Options{Verbosity: 10})
	l := WithoutBodies(base).WithName("labenvironment").WithValues("lab", "a")
	l.V(8).Info("Request Body", "body", "00000140  63 69 65 31 6a 61 2e 71  |cie1ja.q|")
	l.V(8).Info("Response Body", "body", "{}")
	l.V(4).Info("Reconciling")
	l.Error(nil, "Failed")
	want := []string{
		`labenvironment "level"=4 "msg"="Reconciling" "lab"="a"`,
		`labenvironment "msg"="Failed" "error"=null "lab"="a"`,
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
	if WithoutBodies(logr.Discard()).GetSink() != nil {
		t.Error("a discarding logger gained a sink")
	}
}
