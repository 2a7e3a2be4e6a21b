package manager

import (
	"os/exec"
	"strings"
	"testing"
)

// TestShippedManagerDoesNotLinkSimulator guards the design's promise that the simulated VM
// backend is a dev/test component: the operator's binary must not contain it.
func TestShippedManagerDoesNotLinkSimulator(t *testing.T) {
	if testing.Short() {
		t.Skip("go list builds the import graph of cmd/manager")
	}
	out, err := exec.Command("go", "list", "-deps", "github.com/labforge/labforge/cmd/manager").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps ./cmd/manager: %v\n%s", err, out)
	}
	const simulator = "github.com/labforge/labforge/internal/simulator"
	var deps int
	for _, pkg := range strings.Fields(string(out)) {
		deps++
		if pkg == simulator || strings.HasPrefix(pkg, simulator+"/") {
			t.Errorf("cmd/manager links %s: the shipped operator must not contain the simulated VM backend", pkg)
		}
	}
	// A listing that names nothing of labforge's would pass for the wrong reason.
	if !strings.Contains(string(out), "github.com/labforge/labforge/internal/manager") {
		t.Fatalf("go list -deps ./cmd/manager does not list internal/manager (%d packages): wrong module?", deps)
	}
}
