// Package procstat reads what /proc/<pid>/stat tells of a process, for
// wharf on the host and for the agent in a container (each in its own
// /proc).
package procstat

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Stat is what /proc/<pid>/stat tells of a process.
type Stat struct {
	// State is 'R', 'S', 'T' for stopped (SIGSTOP), 'Z' for a zombie...;
	// 0 if the process is gone.
	State byte
	// PPid is its parent.
	PPid int
	// Start is its start, in clock ticks since boot.
	Start uint64
}

// Read reads /proc/<pid>/stat; the zero Stat if it cannot.
func Read(pid int) Stat {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}
	}
	// The fields follow the command name, in parentheses that may hold any
	// character: state (3rd), ppid (4th), ..., starttime (22nd).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Stat{}
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 || len(fields[0]) != 1 {
		return Stat{}
	}
	ppid, _ := strconv.Atoi(fields[1])
	start, _ := strconv.ParseUint(fields[19], 10, 64)
	return Stat{State: fields[0][0], PPid: ppid, Start: start}
}

// Stopped reports whether process pid is stopped (SIGSTOP).
func Stopped(pid int) bool { return Read(pid).State == 'T' }
