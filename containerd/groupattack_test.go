package containerd

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUserGroupsOfAnOddGroupFile: /etc/group is the container's own, which
// any root process in it may rewrite, and an exec as a named user reads it.
// A line longer than bufio.Scanner's 64 KiB (a group of many members) made
// every exec as a name fail ("token too long"), a user listed in more
// groups than a process may have (NGROUPS_MAX, 65536) was looked up in
// time quadratic in their number (the host spun for seconds) before
// setgroups refused it; now the long line is read and the count is
// refused with a message that says so, at once.
func TestUserGroupsOfAnOddGroupFile(t *testing.T) {
	c, _, runcRoot := testRuntime(t)
	image := importBusyboxApp(t, c)
	ctr := startBusybox(t, c, image, runcRoot, "oddgroup", "exec sleep 3600", false)
	asRoot := func(script string) {
		t.Helper()
		code, _, errOut := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", script}, User: "root"})
		require.Equal(t, uint32(0), code, errOut)
	}

	asRoot(`cp /etc/group /tmp/group && awk 'BEGIN { printf "crowd:x:60:"; for (i = 0; i < 10000; i++) printf "member%d,", i; print "app" }' >> /etc/group`)
	code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"id", "-G"}, User: "app"})
	assert.Equal(t, uint32(0), code, errOut)
	assert.Equal(t, "1000 50 60\n", out, "app is in crowd, whose line is over 64 KiB")

	asRoot(`cp /tmp/group /etc/group && awk 'BEGIN { for (i = 0; i < 200000; i++) printf "g%d:x:%d:app\n", i, 100000 + i }' >> /etc/group`)
	started := time.Now()
	_, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{"id", "-G"}, User: "app"})
	took := time.Since(started)
	require.ErrorIs(t, err, ErrUnknownUser)
	assert.ErrorContains(t, err, fmt.Sprintf(`user "app" is in more than %d groups`, maxGroups))
	assert.Less(t, took, 2*time.Second, "refusing it took %v", took)
}
