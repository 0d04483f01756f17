package testutil

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// Engine is the Wasm engine this run of a package's tests uses: StartServe
// passes it as wharf serve --engine, and host test helpers put it in the
// manifest. RunEachEngine sets it; empty means the default.
var Engine string

// RunEachEngine runs the package's tests once per engine (every test that
// runs a guest must behave the same on all of them) and returns the first
// failing exit code; it marks the process and cleans up after it as Run
// does. Call it from TestMain with plugins.Engines. The environment
// variable WHARF_TEST_ENGINES (e.g. "wasmtime") narrows the list for a
// quicker local run; CI leaves it unset.
func RunEachEngine(m *testing.M, engines []string) int {
	if only := os.Getenv("WHARF_TEST_ENGINES"); only != "" {
		engines = strings.Split(only, ",")
	}
	return runEphemeral(func() int {
		code := 0
		for _, e := range engines {
			Engine = e
			fmt.Printf("--- engine %s\n", e) // kept by scripts/bench.sh's filter
			if c := m.Run(); c != 0 && code == 0 {
				code = c
			}
		}
		return code
	})
}

// engineArgs adds --engine Engine to wharf serve's arguments unless they
// name an engine already.
func engineArgs(args []string) []string {
	if Engine == "" || slices.Contains(args, "--engine") {
		return args
	}
	return append(args, "--engine", Engine)
}
