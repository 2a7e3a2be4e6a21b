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

// TestControllersDoNotImportEachOther keeps each controller's vocabulary (reasons,
// finalizers: api/v1alpha1) and indexes (internal/index) out of the other controllers: a
// controller package that imports another is a hidden ordering or a word with two homes.
func TestControllersDoNotImportEachOther(t *testing.T) {
	if testing.Short() {
		t.Skip("go list reads the controllers' imports")
	}
	const controllers = "github.com/labforge/labforge/internal/controller/"
	out, err := exec.Command("go", "list", "-test", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", controllers+"...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list %s...: %v\n%s", controllers, err, out)
	}
	var listed int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg := strings.Fields(strings.ReplaceAll(fields[0], "[", " "))[0]
		listed++
		for _, imp := range fields[1:] {
			if strings.HasPrefix(imp, controllers) && !strings.HasPrefix(pkg, imp) {
				t.Errorf("%s imports %s", pkg, imp)
			}
		}
	}
	if listed < 5 {
		t.Fatalf("go list named %d packages under %s: wrong module?", listed, controllers)
	}
}
