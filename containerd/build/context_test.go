package build

import (
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
