package build

import (
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOfferMatchesTheFrontendsNames: stored images are offered under the
// keys the Dockerfile frontend looks up for a FROM: the short form of the
// name (FROM busybox is docker.io/library/busybox:latest; another tag is
// another image), the name with the digest, never a stage's name; of two
// spellings of one name the short one (as --tag stores it) wins.
func TestOfferMatchesTheFrontendsNames(t *testing.T) {
	img := func(name, hex string) images.Image {
		return images.Image{Name: name, Target: ocispec.Descriptor{Digest: digest.Digest("sha256:" + hex)}}
	}
	busybox, tagged, mine, mineSpelt, stage := "aaaa", "bbbb", "cccc", "dddd", "eeee"
	local := offer([]images.Image{
		img("docker.io/library/busybox:latest", busybox),
		img("docker.io/library/busybox:1.36", tagged),
		img("myapp:1", mine),
		img("docker.io/library/myapp:1", mineSpelt),
		img("registry.example:5000/team/builder:latest", stage),
		img("docker.io/library/builder:latest", stage),
		img("not a reference", busybox),
	}, map[string]bool{"builder": true})
	at := func(hex string) string { return "oci-layout://wharf@sha256:" + hex }
	assert.Equal(t, map[string]string{
		"context:busybox":                                            at(busybox),
		"context:busybox@sha256:" + busybox:                          at(busybox),
		"context:busybox:1.36":                                       at(tagged),
		"context:busybox@sha256:" + tagged:                           at(tagged),
		"context:myapp:1":                                            at(mine),
		"context:myapp@sha256:" + mine:                               at(mine),
		"context:myapp@sha256:" + mineSpelt:                          at(mineSpelt),
		"context:registry.example:5000/team/builder":                 at(stage),
		"context:registry.example:5000/team/builder@sha256:" + stage: at(stage),
		"context:builder@sha256:" + stage:                            at(stage),
	}, local.attrs)

	missing, ok := local.notPulled("127.0.0.1:5/a:2: failed to resolve source metadata for 127.0.0.1:5/a:2: dial tcp: connection refused")
	require.True(t, ok)
	assert.Equal(t, "image 127.0.0.1:5/a:2 is not in wharf's image store and could not be pulled: dial tcp: connection refused (`wharf images import` or `wharf images pull` of the same data directory puts it there)", missing)
	_, ok = local.notPulled("failed to resolve source metadata for docker.io/library/busybox@sha256:" + busybox + ": no match for platform in manifest")
	assert.False(t, ok, "an image offered from the store failed otherwise")
}
