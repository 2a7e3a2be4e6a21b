package manager

import (
	"os"
	"path/filepath"
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
