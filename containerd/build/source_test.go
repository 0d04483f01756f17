package build

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/distribution/reference"
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

// TestSourceTakesALowercaseDockerfile: a directory holding a lowercase
// dockerfile and no Dockerfile is a build context, as for docker build;
// wharf said it had no Dockerfile. Dockerfile wins when both are there.
func TestSourceTakesALowercaseDockerfile(t *testing.T) {
	dir := t.TempDir()
	assert.NoError(t, os.WriteFile(filepath.Join(dir, "dockerfile"), []byte("FROM scratch\n"), 0o644))
	contextDir, df, err := Source(dir, "")
	assert.NoError(t, err)
	assert.Equal(t, dir, contextDir)
	assert.Equal(t, filepath.Join(dir, "dockerfile"), df)
	assert.NoError(t, os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\n"), 0o644))
	_, df, err = Source(dir, "")
	assert.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "Dockerfile"), df)
	empty := t.TempDir()
	assert.NoError(t, os.Mkdir(filepath.Join(empty, "Dockerfile"), 0o755))
	_, _, err = Source(empty, "")
	assert.EqualError(t, err, empty+" has no Dockerfile")
}

// TestTagIsAReference: the tag of a class's image is a name docker's
// reference grammar takes, whatever the plugin's and class's names; a
// class _Internal made "app-_internal", X_ "app-x_" and a plugin a..b
// "a..b-c", which no FROM could name. Names it took are kept.
func TestTagIsAReference(t *testing.T) {
	const hash = "0123456789abcdef"
	for _, c := range []struct{ plugin, class, tag string }{
		{"app", "Sandbox", "app-sandbox:0123456789ab"},
		{"my.app", "Web_Server", "my.app-web_server:0123456789ab"},
		{"app", "_Internal", "app-internal:0123456789ab"},
		{"app", "X_", "app-x:0123456789ab"},
		{"a..b", "C", "a-b-c:0123456789ab"},
		{"app", "A__B", "app-a__b:0123456789ab"},
		{"app", "A___B", "app-a-b:0123456789ab"},
		{"-app.", "Ünï", "app-n:0123456789ab"},
	} {
		tag := Tag(c.plugin, c.class, hash)
		assert.Equal(t, c.tag, tag, "%s %s", c.plugin, c.class)
		_, err := reference.ParseNormalizedNamed(tag)
		assert.NoError(t, err, tag)
	}
}
