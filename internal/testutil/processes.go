package testutil

import (
	"os"
	"path/filepath"
	"strings"
)

// Processes lists the command lines (arguments joined by spaces) of the
// host's processes whose command line contains every one of words: what a
// test started that is still running, named by its data directory, say.
func Processes(words ...string) []string {
	var out []string
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
		if containsAll(cmd, words) {
			out = append(out, cmd)
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
