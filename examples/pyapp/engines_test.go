package main

import (
	"os"
	"testing"

	"github.com/wharfhq/wharf/internal/testutil"
	"github.com/wharfhq/wharf/plugins"
)

// TestMain runs every test once per engine.
func TestMain(m *testing.M) { os.Exit(testutil.RunEachEngine(m, plugins.Engines)) }
