package recorder

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// ProcStatus reads the memory sizes of pid's /proc status (VmRSS, VmHWM: peak RSS,
// RssAnon, RssFile, ...), in bytes.
func ProcStatus(pid int) (map[string]float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var kb float64
		if _, err := fmt.Sscanf(strings.TrimSpace(v), "%f kB", &kb); err != nil {
			continue
		}
		out[k] = kb * 1024
	}
	return out, nil
}

// userHZ is the unit of the CPU times in /proc/<pid>/stat: USER_HZ, 100 on Linux whatever
// the kernel's own tick rate.
const userHZ = 100

// procCPUSeconds returns the CPU time, user and system, all its threads, that process pid
// has used so far (/proc/<pid>/stat, fields 14 and 15).
func procCPUSeconds(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces: count from after it.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 13", pid, len(fields))
	}
	var ticks float64
	for _, f := range fields[11:13] { // utime and stime: fields 14 and 15 of the line
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += float64(v)
	}
	return ticks / userHZ, nil
}

// ProcessCPU is a process's CPU time at one moment.
type ProcessCPU struct {
	pid     int
	seconds float64
}

// ReadCPU reads the CPU time of every process: the control plane's by component name, and
// the harness's own as "bench". A process that cannot be read (it just exited) is left out.
func ReadCPU(pids map[string]int) map[string]ProcessCPU {
	out := make(map[string]ProcessCPU, len(pids)+1)
	read := func(name string, pid int) {
		if s, err := procCPUSeconds(pid); err == nil {
			out[name] = ProcessCPU{pid, s}
		}
	}
	for name, pid := range pids {
		read(name, pid)
	}
	read("bench", os.Getpid())
	return out
}

// CPUSince returns the CPU time each process used between two readings. A process with a
// new pid (kube-apiserver restarted) counts from its start.
func CPUSince(before, after map[string]ProcessCPU) map[string]float64 {
	out := make(map[string]float64, len(after))
	for name, a := range after {
		b, ok := before[name]
		if !ok || b.pid != a.pid {
			b.seconds = 0
		}
		out[name] = a.seconds - b.seconds
	}
	return out
}
