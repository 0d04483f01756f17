package containerd

import (
	"context"
	"fmt"
	"strings"
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

// TestUserFilesLargerThanRead: an exec's user is looked up in the whole
// lines of the first 4 MiB of the container's /etc/passwd and /etc/group
// (maxPasswd), which its root may make as large as it likes. A uid
// listed past them ran with group 0 (root), as one the file does not
// list, where Docker gives it the group the file lists, and a name listed
// past them "did not exist": both are refused, saying why. The line the
// limit cut was read as whole: cut after "app:x:1000:1", app ran with
// group 1, and a group of member "appendix" cut after "app" made app a
// member. Groups listed past the limit are left out.
func TestUserFilesLargerThanRead(t *testing.T) {
	c, _, runcRoot := testRuntime(t)
	image := importBusyboxApp(t, c)
	ctr := startBusybox(t, c, image, runcRoot, "largeusers", "exec sleep 3600", true) // runc fails on a line over 64 KiB of its own
	asRoot := func(script string) {
		t.Helper()
		code, _, errOut := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", script}, User: "0"})
		require.Equal(t, uint32(0), code, errOut)
	}
	refused := func(user string) {
		t.Helper()
		var out strings.Builder
		p, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{"id"}, User: user, Stdout: &out})
		if err == nil {
			p.Wait(context.Background())
		}
		require.ErrorIs(t, err, ErrUnknownUser, "ran as %q: %s", user, out.String())
		assert.ErrorContains(t, err, fmt.Sprintf("user %q: the image's /etc/passwd is larger than the 4 MiB wharf reads of it, and does not list it there", user))
	}
	// cut writes, after a first line, a line of '#' that puts the limit
	// n bytes into the line that follows, then that line and the rest.
	cut := func(file, first string, n int, rest string) {
		t.Helper()
		asRoot(fmt.Sprintf(`{ printf '%s\n'; head -c %d /dev/zero | tr '\0' '#'; printf '\n%s\n'; } > %s`, first, maxPasswd-n-len(first)-2, rest, file))
	}
	const rootLine = "root:x:0:0:root:/root:/bin/sh"
	asRoot(`cp /etc/passwd /tmp/passwd && cp /etc/group /tmp/group`)

	asRoot(`{ echo '` + rootLine + `'; awk 'BEGIN { for (i = 0; i < 200000; i++) printf "u%d:x:%d:%d::/:/bin/sh\n", i, 200000 + i, 200000 + i }'; grep ^app: /tmp/passwd; } > /etc/passwd`)
	refused("1000")
	refused("app")
	cut("/etc/passwd", rootLine, len("app:x:1000:1"), "app:x:1000:1000:app:/home/app:/bin/sh")
	refused("app")

	asRoot(`cp /tmp/passwd /etc/passwd`)
	cut("/etc/group", "staff:x:50:app", len("cut:x:0:app"), "cut:x:0:appendix\nlate:x:77:app")
	_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"id", "-G"}, User: "app"})
	assert.Equal(t, "1000 50\n", out, "app's groups in what is read, and no other")

	asRoot(`cp /tmp/group /etc/group`)
	_, out, _ = execOut(t, ctr, ExecSpec{Args: []string{"id"}, User: "app"})
	assert.Equal(t, "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n", out, "the files restored")
}
