package containerd

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	hostcontainers "github.com/wharfhq/wharf/host/containers"
	"github.com/wharfhq/wharf/internal/testimages"
)

// importBusyboxAs imports, as ref, the busybox image with USER user (a
// name or uid, with :group) and a layer of entries on top, and returns
// its name.
func importBusyboxAs(t *testing.T, c *client.Client, ref, user string, entries ...tar.Header) string {
	t.Helper()
	dir := t.TempDir()
	archive, err := testimages.Busybox(dir)
	require.NoError(t, err)
	img, err := tarball.ImageFromPath(archive, nil)
	require.NoError(t, err)
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, h := range entries {
		require.NoError(t, tw.WriteHeader(&h))
	}
	require.NoError(t, tw.Close())
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil })
	require.NoError(t, err)
	img, err = mutate.AppendLayers(img, l)
	require.NoError(t, err)
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	cf.Config.User = user
	img, err = mutate.ConfigFile(img, cf)
	require.NoError(t, err)
	tag, err := name.NewTag(ref)
	require.NoError(t, err)
	path := filepath.Join(dir, "as.tar")
	require.NoError(t, tarball.WriteToFile(path, tag, img))
	imgs, err := ImportArchive(context.Background(), c, path, "")
	require.NoError(t, err)
	return imgs[0].Name
}

// TestImageUserIsNotRoot: in a container of an image with a USER (app),
// through runc and through the agent, only root may do what only root may
// do. runc made the main process's execve holding the spec's capabilities,
// which the kernel drops at it for a user not root: with
// CAP_DAC_OVERRIDE, app ran an entrypoint only root may run (a script's
// interpreter then could not read it and exited 2). An exec as root still
// has root's capabilities (an exec's spec is the main process's), one as
// app has none.
func TestImageUserIsNotRoot(t *testing.T) {
	for _, withInit := range []bool{false, true} {
		t.Run(map[bool]string{false: "runc", true: "agent"}[withInit], func(t *testing.T) {
			c, _, runcRoot := testRuntime(t)
			image := importBusyboxApp(t, c)
			// Mounted at /rootonly: what only root may run.
			dir := t.TempDir()
			require.NoError(t, os.Chmod(dir, 0o755))
			busybox, err := os.ReadFile("/bin/busybox")
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "busybox"), busybox, 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "script"), []byte("#!/bin/sh\nsleep 3600\n"), 0o700))
			start := func(id string, entrypoint ...string) (*Container, error) {
				spec := ContainerSpec{ID: id, Image: image, Entrypoint: entrypoint, RuncRoot: runcRoot,
					Mounts:    []specs.Mount{{Destination: "/rootonly", Type: "bind", Source: dir, Options: []string{"rbind", "ro"}}},
					Resources: Resources{VCPU: 0.5, MemoryBytes: 64 << 20, Pids: 64}}
				if withInit {
					withAgent(t, &spec)
				}
				ctr, err := StartContainer(context.Background(), c, spec)
				if err == nil {
					t.Cleanup(func() { ctr.Destroy(context.Background()) })
				}
				return ctr, err
			}

			for i, entrypoint := range [][]string{{"/rootonly/busybox", "sleep", "3600"}, {"/rootonly/script"}} {
				_, err := start(fmt.Sprintf("rootonly-%d", i), entrypoint...)
				assert.ErrorContains(t, err, "permission denied", "app runs %s", entrypoint[0])
			}

			ctr, err := start("app", "sleep", "3600")
			require.NoError(t, err)
			// uid, effective and bounding capabilities: root's are the
			// container's, app's none.
			caps := `echo $(id -u) $(grep -e CapEff -e CapBnd /proc/self/status | cut -f2)`
			code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", caps}})
			assert.Equal(t, uint32(0), code, errOut)
			assert.Regexp(t, `^1000 0{16} [0-9a-f]{16}\n$`, out, "app")
			code, out, errOut = execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", caps}, User: "root"})
			assert.Equal(t, uint32(0), code, errOut)
			fields := strings.Fields(out)
			require.Len(t, fields, 3, out)
			assert.Equal(t, "0", fields[0])
			assert.Equal(t, fields[2], fields[1], "root's effective capabilities are its bounding set")
			assert.NotEqual(t, strings.Repeat("0", 16), fields[1], "root has capabilities")
			p, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{"/rootonly/busybox", "true"}})
			code = uint32(hostcontainers.ExecExitCode(err))
			if err == nil { // runc tells a failed execve as the exit, past runc 1.1
				code, err = p.Wait(context.Background())
				require.NoError(t, err)
			}
			assert.Equal(t, uint32(126), code, "app runs a binary only root may run: %v", err)
			code, out, errOut = execOut(t, ctr, ExecSpec{Args: []string{"/rootonly/busybox", "echo", "ran"}, User: "root"})
			assert.Equal(t, uint32(0), code, errOut)
			assert.Equal(t, "ran\n", out, "root runs it")
		})
	}
}

// entrypointAs starts a container (its id prefix, then user) of busybox
// with USER user, and returns it and what `id` said in its entrypoint.
func entrypointAs(t *testing.T, c *client.Client, runcRoot, prefix, user string, withInit bool) (*Container, string) {
	t.Helper()
	tag := strings.ReplaceAll(user, ":", "-g") // app: is app-g, a valid container id
	image := importBusyboxAs(t, c, "wharf.test/busybox-as:"+tag, user)
	ctr := startBusybox(t, c, image, runcRoot, prefix+tag, "id > /tmp/main-id; exec sleep 3600", withInit)
	var out string
	require.Eventually(t, func() bool {
		_, out, _ = execOut(t, ctr, ExecSpec{Args: []string{"cat", "/tmp/main-id"}})
		return out != ""
	}, 5*time.Second, 20*time.Millisecond)
	return ctr, out
}

// TestUserGetsImageGroups: a process run as a user, by name or uid, has
// the supplementary groups the image's /etc/group lists for that user name
// (app is in staff, 50), with its primary group from /etc/passwd, as in
// Docker: the entrypoint (the image's USER, app), an exec as the main
// process's user, as app, as 1000 and as root, through runc and through
// the agent alike, and the agent's file operations as app. An exec with a
// user got the primary group only: app could not read what its group may.
// A uid /etc/passwd does not list has group 0 (see
// TestUnlistedUIDHasGroupRoot).
func TestUserGetsImageGroups(t *testing.T) {
	for _, withInit := range []bool{false, true} {
		t.Run(map[bool]string{false: "runc", true: "agent"}[withInit], func(t *testing.T) {
			c, _, runcRoot := testRuntime(t)
			image := importBusyboxApp(t, c)
			ctr := startBusybox(t, c, image, runcRoot, "groups", "id -G > /tmp/main-groups; exec sleep 3600", withInit)
			require.Eventually(t, func() bool {
				_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"cat", "/tmp/main-groups"}})
				return out != ""
			}, 5*time.Second, 20*time.Millisecond)
			_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"cat", "/tmp/main-groups"}})
			assert.Equal(t, "1000 50\n", out, "the entrypoint's groups")
			for user, want := range map[string]string{"": "1000 50", "app": "1000 50", "1000": "1000 50", "root": "0", "4242": "0"} {
				code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"id", "-G"}, User: user})
				assert.Equal(t, uint32(0), code, errOut)
				assert.Equal(t, want+"\n", out, "the groups of an exec as %q", user)
			}
			if withInit {
				code, _, errOut := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", "mkdir -m 750 /staff && chgrp 50 /staff && touch /staff/f"}, User: "root"})
				require.Equal(t, uint32(0), code, errOut)
				_, err := ctr.Stat(context.Background(), "/staff/f", "app")
				assert.NoError(t, err, "app reads a directory of its group staff")
			}
		})
	}
}

// TestUnlistedUIDHasGroupRoot: a uid the image's /etc/passwd does not list
// runs with group 0 and no other, as in Docker (`docker run --user 4242`
// is uid=4242 gid=0), and with the group its USER names if it names one
// (4242:55, as `--user 4242:55`): the entrypoint, an exec as the main
// process's user and an exec as the uid agree, through runc and through
// the agent. An exec as the uid had the uid's own number as group (4242),
// where the entrypoint had 0.
func TestUnlistedUIDHasGroupRoot(t *testing.T) {
	for _, withInit := range []bool{false, true} {
		t.Run(map[bool]string{false: "runc", true: "agent"}[withInit], func(t *testing.T) {
			c, _, runcRoot := testRuntime(t)
			for user, want := range map[string]string{
				"4242":    "uid=4242 gid=0(root) groups=0(root)\n",
				"4242:55": "uid=4242 gid=55 groups=55\n",
			} {
				ctr, out := entrypointAs(t, c, runcRoot, "unlisted-", user, withInit)
				assert.Equal(t, want, out, "the entrypoint as USER %s", user)
				execUsers := []string{""}
				if user == "4242" {
					execUsers = append(execUsers, "4242")
				}
				for _, as := range execUsers {
					code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"id"}, User: as})
					assert.Equal(t, uint32(0), code, errOut)
					assert.Equal(t, want, out, "an exec as %q in a container whose USER is %s", as, user)
				}
			}
		})
	}
}

// TestImageUserWithAGroupHasOnlyThatGroup: an image whose USER names a
// group (app:app, 1000:0, app:staff) runs its entrypoint, and execs as its
// user, with that group and no other, as Docker does, through runc and
// through the agent; containerd added the groups /etc/group lists the user
// in (app's staff), as for a USER without a group. An empty group (app:)
// is as none, as in Docker: containerd gave it group 0.
func TestImageUserWithAGroupHasOnlyThatGroup(t *testing.T) {
	for _, withInit := range []bool{false, true} {
		t.Run(map[bool]string{false: "runc", true: "agent"}[withInit], func(t *testing.T) {
			c, _, runcRoot := testRuntime(t)
			for user, want := range map[string]string{
				"app:app":   "uid=1000(app) gid=1000(app) groups=1000(app)\n",
				"1000:0":    "uid=1000(app) gid=0(root) groups=0(root)\n",
				"app":       "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n",
				"app:":      "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n",
				"app:staff": "uid=1000(app) gid=50(staff) groups=50(staff)\n",
			} {
				ctr, out := entrypointAs(t, c, runcRoot, "grouped-", user, withInit)
				assert.Equal(t, want, out, "the entrypoint as USER %s", user)
				code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"id"}})
				assert.Equal(t, uint32(0), code, errOut)
				assert.Equal(t, want, out, "an exec in a container whose USER is %s", user)
			}
		})
	}
}

// TestExecHasItsUsersHome: a process whose environment sets no HOME has
// its user's home directory from the image's /etc/passwd, or / for a uid
// it does not list, as runc's and Docker's execs: the entrypoint (the
// image's USER, app), an exec as the main process's user, as app, as 1000,
// as root and as 4242, through runc and through the agent; a HOME the exec
// sets wins. Through the agent an exec had no HOME, and the entrypoint
// root's (/root, runc's for the agent).
func TestExecHasItsUsersHome(t *testing.T) {
	for _, withInit := range []bool{false, true} {
		t.Run(map[bool]string{false: "runc", true: "agent"}[withInit], func(t *testing.T) {
			c, _, runcRoot := testRuntime(t)
			image := importBusyboxApp(t, c)
			ctr := startBusybox(t, c, image, runcRoot, "home", `echo "$HOME" > /tmp/main-home; exec sleep 3600`, withInit)
			var out string
			require.Eventually(t, func() bool {
				_, out, _ = execOut(t, ctr, ExecSpec{Args: []string{"cat", "/tmp/main-home"}})
				return out != ""
			}, 5*time.Second, 20*time.Millisecond)
			assert.Equal(t, "/home/app\n", out, "the entrypoint's HOME")
			for user, want := range map[string]string{"": "/home/app", "app": "/home/app", "1000": "/home/app", "root": "/root", "4242": "/"} {
				code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", `echo "$HOME"`}, User: user})
				assert.Equal(t, uint32(0), code, errOut)
				assert.Equal(t, want+"\n", out, "the HOME of an exec as %q", user)
			}
			code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", `echo "$HOME"`}, User: "root", Env: []string{"HOME=/elsewhere"}})
			assert.Equal(t, uint32(0), code, errOut)
			assert.Equal(t, "/elsewhere\n", out, "an exec's own HOME")
		})
	}
}

// TestBadImageUserIsNamed: a container of an image whose USER the image's
// /etc/passwd or /etc/group does not resolve is refused (ErrBadExec),
// naming the image and its USER and saying what is missing, through runc
// and through the agent. containerd said only "no users found" or "no
// groups found".
func TestBadImageUserIsNamed(t *testing.T) {
	c, _, runcRoot := testRuntime(t)
	for user, says := range map[string]string{
		"nosuch:1":   `unknown user: user "nosuch" does not exist in the image's /etc/passwd`,
		"app:nosuch": `group "nosuch" does not exist in the image's /etc/group`,
		// containerd refused them, naming neither the image nor ErrBadExec.
		"3000000000":     "3000000000: uids and gids must be in range 0-2147483647, as in Docker",
		"app:3000000000": "3000000000: uids and gids must be in range 0-2147483647, as in Docker",
	} {
		image := importBusyboxAs(t, c, "wharf.test/busybox-as:"+strings.ReplaceAll(user, ":", "-"), user)
		for _, withInit := range []bool{false, true} {
			spec := ContainerSpec{ID: "badimageuser", Image: image, Entrypoint: []string{"true"}, RuncRoot: runcRoot}
			if withInit {
				withAgent(t, &spec)
			}
			_, err := StartContainer(context.Background(), c, spec)
			assert.ErrorIs(t, err, ErrBadExec, "USER %s", user)
			assert.EqualError(t, err, fmt.Sprintf("creating container badimageuser: bad exec: image %s USER %q: %s", image, user, says))
		}
	}
}

// TestImageUserGroupThatIsANumberIsAGid: the group of an image's USER
// user:group that is a number is that gid, whatever /etc/group lists, as
// in Docker: a group named 4242 did not make USER app:4242 run with that
// group's gid.
func TestImageUserGroupThatIsANumberIsAGid(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(root, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc", "group"), []byte("4242:x:60:\nstaff:x:50:\n"), 0o644))
	open := func(path string) (*os.File, error) { return os.Open(filepath.Join(root, path)) }
	for group, want := range map[string]uint32{"4242": 4242, "60": 60, "staff": 50, "7": 7} {
		gid, err := lookGroup(open, group)
		require.NoError(t, err, group)
		assert.Equal(t, want, gid, "group %s", group)
	}
	_, err := lookGroup(open, "nosuch")
	assert.EqualError(t, err, `group "nosuch" does not exist in the image's /etc/group`)
}
