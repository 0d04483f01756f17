package testimages

import (
	"testing"

	"github.com/wharfhq/wharf/internal/testregistry"
)

// BusyboxBase pushes the Busybox image to a new registry on loopback and
// returns its reference there: a base image for Dockerfile builds.
func BusyboxBase(t testing.TB) string {
	t.Helper()
	archive, err := Busybox(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return testregistry.Start(t, "", "").PushArchive(t, archive, "base/busybox:1")
}
