package build

import (
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestSourceSaysWhatIsMissing: a build context, Dockerfile or -f file that
// does not exist is named as what it was meant to be; it was a bare
// "stat /x: no such file or directory".
func TestSourceSaysWhatIsMissing(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none")
	_, _, err := Source(missing, "")
	assert.EqualError(t, err, "the build context or Dockerfile: stat "+missing+": no such file or directory")
	assert.ErrorIs(t, err, fs.ErrNotExist)
	_, _, err = Source(t.TempDir(), missing)
	assert.EqualError(t, err, "the Dockerfile: stat "+missing+": no such file or directory")
}
