package testutil

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Processes lists the command lines (arguments joined by spaces) of the
// host's processes whose command line contains every one of words: what a
// test started that is still running, named by its data directory, say.
func Processes(words ...string) []string {
	var out []string
	for _, p := range processesWith(words) {
		out = append(out, p.cmd)
	}
	return out
}

// ProcessIDs are the ids of the processes Processes lists.
func ProcessIDs(words ...string) []int {
	var out []int
	for _, p := range processesWith(words) {
		out = append(out, p.pid)
	}
	return out
}

// process is a running process: its id and command line.
type process struct {
	pid int
	cmd string
}

func processesWith(words []string) []process {
	var out []process
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err == nil && containsAll(cmd, words) {
			out = append(out, process{pid: pid, cmd: cmd})
		}
	}
	return out
}

func containsAll(s string, words []string) bool {
	for _, w := range words {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}
