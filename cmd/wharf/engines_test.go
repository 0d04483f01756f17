package main

import (
	"os"
	"testing"

	"github.com/wharfhq/wharf/internal/testutil"
	"github.com/wharfhq/wharf/plugins"
)

// TestMain runs every test once per engine.
func TestMain(m *testing.M) {
	// A serve run in this process (run) compiles apart by running this
	// binary, /proc/self/exe, as wharf compile-module.
	if len(os.Args) > 1 && os.Args[1] == compileCommand {
		main()
		return
	}
	os.Exit(testutil.RunEachEngine(m, plugins.Engines))
}
