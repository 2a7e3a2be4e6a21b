// Package scripts_test checks the repository's shell scripts: every one parses, passes
// shellcheck with no check disabled and runs under `set -euo pipefail`; and
// hack/isolation-check.sh reads the cluster, plans, probes and judges correctly, with this
// test binary standing in for kubectl and ssh.
package scripts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "kubectl":
		os.Exit(fakeKubectl(os.Args[1:]))
	case "ssh":
		os.Exit(fakeSSH(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// repoRoot is the repository's top directory.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// shellScripts returns every shell script of the repository: hack/*.sh and CI's entry point.
func shellScripts(t *testing.T) []string {
	t.Helper()
	scripts, err := filepath.Glob(filepath.Join(repoRoot(), "hack", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	scripts = append(scripts, filepath.Join(repoRoot(), ".ci", "run"))
	if len(scripts) < 4 {
		t.Fatalf("found only %d shell scripts (%v): is the repository layout different?", len(scripts), scripts)
	}
	return scripts
}

var (
	strictMode       = regexp.MustCompile(`(?m)^set -euo pipefail$`)
	disabledCheck    = regexp.MustCompile(`(?i)#\s*shellcheck\s+disable`)
	bashShebangFirst = regexp.MustCompile(`\A#!/usr/bin/env bash\n`)
)

func TestShellScriptsParseAndPassShellcheck(t *testing.T) {
	shellcheck, err := exec.LookPath("shellcheck")
	if err != nil {
		t.Fatalf("shellcheck is not installed: run hack/install-deps.sh (Debian package shellcheck); "+
			"every hack/*.sh must pass it: %v", err)
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatalf("bash is not installed: %v", err)
	}
	for _, script := range shellScripts(t) {
		name, _ := filepath.Rel(repoRoot(), script)
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(script)
			if err != nil {
				t.Fatal(err)
			}
			if !bashShebangFirst.Match(src) {
				t.Errorf("%s must start with #!/usr/bin/env bash", name)
			}
			if !strictMode.Match(src) {
				t.Errorf("%s must run under `set -euo pipefail` (a line of its own)", name)
			}
			if loc := disabledCheck.FindIndex(src); loc != nil {
				t.Errorf("%s disables a shellcheck check (%q): fix the code instead", name, src[loc[0]:loc[1]])
			}
			if out, err := exec.Command(bash, "-n", script).CombinedOutput(); err != nil {
				t.Errorf("bash -n %s: %v\n%s", name, err, out)
			}
			// --norc: no .shellcheckrc may switch a check off; the default severity (style)
			// reports everything.
			if out, err := exec.Command(shellcheck, "--norc", "--shell=bash", script).CombinedOutput(); err != nil {
				t.Errorf("shellcheck %s: %v\n%s", name, err, strings.TrimSpace(string(out)))
			}
		})
	}
}
