package containerd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	hostcontainers "github.com/wharfhq/wharf/host/containers"
)

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

// TestUserGetsImageGroups: a process run as a user, by name or uid, has
// the supplementary groups the image's /etc/group lists for that user name
// (app is in staff, 50), with its primary group from /etc/passwd, as in
// Docker: the entrypoint (the image's USER, app), an exec as the main
// process's user, as app, as 1000 and as root, through runc and through
// the agent alike, and the agent's file operations as app. An exec with a
// user got the primary group only (and a uid its own number as group):
// app could not read what its group may.
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
			for user, want := range map[string]string{"": "1000 50", "app": "1000 50", "1000": "1000 50", "root": "0", "4242": "4242"} {
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
