package plugins

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBuildIdentityFollowsTheBuildNotTheFile: the same binary copied
// elsewhere with a new modification time (as go build leaves an unchanged
// one) is the same build; another Go program is another; a file that is no
// Go program has none.
func TestBuildIdentityFollowsTheBuildNotTheFile(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	own, err := buildIdentity(exe)
	require.NoError(t, err)

	data, err := os.ReadFile(exe)
	require.NoError(t, err)
	copied := filepath.Join(t.TempDir(), "copy")
	require.NoError(t, os.WriteFile(copied, data, 0o755))
	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(copied, later, later))
	same, err := buildIdentity(copied)
	require.NoError(t, err)
	assert.Equal(t, own, same)

	goTool, err := exec.LookPath("go")
	require.NoError(t, err)
	other, err := buildIdentity(goTool)
	require.NoError(t, err)
	assert.NotEqual(t, own, other)

	notGo := filepath.Join(t.TempDir(), "script")
	require.NoError(t, os.WriteFile(notGo, []byte("#!/bin/sh\n"), 0o755))
	_, err = buildIdentity(notGo)
	assert.Error(t, err)
}
