package testutil

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// SelfNumber is the number that the line "name:" of /proc/self/file gives
// this process (the line's first word: "VmRSS:  1024 kB" gives 1024):
// Threads of status, syscr of io.
func SelfNumber(t testing.TB, file, name string) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/" + file)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				t.Fatalf("/proc/self/%s: %s: %v", file, name, err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/%s", name, file)
	return 0
}
