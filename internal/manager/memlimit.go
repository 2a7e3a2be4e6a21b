package manager

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// cgroupMemoryMax is where cgroup v2 shows a container's memory limit.
const cgroupMemoryMax = "/sys/fs/cgroup/memory.max"

// MemoryLimitShare is the share of the container's memory limit that Go's soft memory
// limit is set to; the rest is for what Go does not count (the binary's own pages, about
// 40 MiB).
const MemoryLimitShare = 0.8

// SoftMemoryLimit returns share of the memory limit written in path (cgroup v2's
// memory.max), or 0 when there is none: "max", a missing or unreadable file.
func SoftMemoryLimit(path string, share float64) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	limit, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil || limit <= 0 {
		return 0
	}
	return int64(float64(limit) * share)
}

// ApplySoftMemoryLimit gives the Go runtime a soft memory limit of MemoryLimitShare of
// the container's, unless GOMEMLIMIT sets one, and returns it (0: none set). The operator
// caches every lab's objects and Go lets its heap grow to twice what is live before
// collecting: without a limit, a host with a few thousand labs would have the operator
// OOM-killed by its container limit well before its live heap fills it. With one, it
// collects more often as it nears the limit instead.
func ApplySoftMemoryLimit() int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	limit := SoftMemoryLimit(cgroupMemoryMax, MemoryLimitShare)
	if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	return limit
}

// GCPercent is the operator's garbage-collection target (GOGC) unless GOGC sets one. Go
// collects when the heap has grown by this percentage of what was live after the last
// collection. The operator's live heap is mostly its cache, which lives as long as the
// labs do: at Go's default of 100 the process holds twice that cache; at 50, one and a
// half times, for more frequent collections: what that saves and costs, measured, is
// decision 37 (docs/decisions.md).
const GCPercent = 50

// ApplyGCPercent sets Go's garbage-collection target to GCPercent unless GOGC is set,
// and returns the target it set (0: none, GOGC rules).
func ApplyGCPercent() int {
	if os.Getenv("GOGC") != "" {
		return 0
	}
	debug.SetGCPercent(GCPercent)
	return GCPercent
}
