package build

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestExcludeInside: a data directory inside the build context is excluded
// from it (relative paths too); one outside needs nothing.
func TestExcludeInside(t *testing.T) {
	assert.Equal(t, []string{".wharf"}, ExcludeInside("/p/app", "/p/app/.wharf"))
	assert.Equal(t, []string{"state/data"}, ExcludeInside("/p/app/", "/p/app/state/data/"))
	wd, err := filepath.Abs(".")
	assert.NoError(t, err)
	assert.Equal(t, []string{".wharf"}, ExcludeInside(".", filepath.Join(wd, ".wharf")))
	assert.Nil(t, ExcludeInside("/p/app", "/p/other/.wharf"))
	assert.Nil(t, ExcludeInside("/p/app", "/p"))
}

// TestExcludeInsideThroughALink: a context named through a symlink holds
// a data directory named with the link resolved, and the reverse.
func TestExcludeInsideThroughALink(t *testing.T) {
	real := t.TempDir()
	link := filepath.Join(t.TempDir(), "app")
	assert.NoError(t, os.Symlink(real, link))
	assert.NoError(t, os.Mkdir(filepath.Join(real, ".wharf"), 0o700))
	assert.Equal(t, []string{".wharf"}, ExcludeInside(link, filepath.Join(real, ".wharf")))
	assert.Equal(t, []string{".wharf"}, ExcludeInside(real, filepath.Join(link, ".wharf")))
	assert.Equal(t, []string{`state\[1\]`, `\!x`}, []string{literalPattern("state[1]"), literalPattern("!x")})
}
