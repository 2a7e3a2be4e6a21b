package manager

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestSoftMemoryLimit(t *testing.T) {
	dir := t.TempDir()
	tests := map[string]struct {
		content *string
		want    int64
	}{
		"a limit of 512Mi":   {content: text("536870912\n"), want: 429496729},
		"no limit":           {content: text("max\n")},
		"no cgroup v2 file":  {},
		"garbage":            {content: text("lots\n")},
		"a zero limit":       {content: text("0\n")},
		"a negative number":  {content: text("-1\n")},
		"an overflowing one": {content: text("99999999999999999999\n")},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if tc.content != nil {
				if err := os.WriteFile(path, []byte(*tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			if got := SoftMemoryLimit(path, MemoryLimitShare); got != tc.want {
				t.Errorf("SoftMemoryLimit = %d, want %d", got, tc.want)
			}
		})
	}
}

func text(s string) *string { return &s }

func TestApplyGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	if got := ApplyGCPercent(); got != GCPercent {
		t.Errorf("ApplyGCPercent() = %d without GOGC, want %d", got, GCPercent)
	}
	if now := debug.SetGCPercent(100); now != GCPercent {
		t.Errorf("the runtime's target is %d, want %d", now, GCPercent)
	}
	t.Setenv("GOGC", "200")
	if got := ApplyGCPercent(); got != 0 {
		t.Errorf("ApplyGCPercent() = %d with GOGC set, want 0 (GOGC rules)", got)
	}
	if now := debug.SetGCPercent(100); now != 100 {
		t.Errorf("the runtime's target moved to %d with GOGC set", now)
	}
}
