package containerd

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/apparmor"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// TestContainerSandbox checks what root in a container may not do: make a
// user namespace (unshare), mount, open a raw socket or use the kernel
// keyring; and that ordinary programs still work. A class that asks for
// NET_RAW gets raw sockets back.
func TestContainerSandbox(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	n := NewNetwork(DefaultSubnet, t.Name())
	start := func(id string, caps []string) (*Container, *Endpoint) {
		ep, err := n.Setup(id)
		require.NoError(t, err)
		t.Cleanup(func() { assert.NoError(t, ep.Teardown()) })
		ctr, err := StartContainer(context.Background(), c, ContainerSpec{
			ID: id, Image: image, RuncRoot: runcRoot, NetNSPath: ep.NetNSPath, Capabilities: caps,
			Entrypoint: []string{"sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www"},
		})
		require.NoError(t, err)
		t.Cleanup(func() { ctr.Destroy(context.Background()) })
		return ctr, ep
	}
	ctr, ep := start("sandbox", nil)

	refused := map[string][]string{
		"unshare": {"unshare", "-Urn", "true"},
		"mount":   {"mount", "-t", "tmpfs", "none", "/tmp"},
		"raw":     {"probe", "syscall", "raw"},
		"keyctl":  {"probe", "syscall", "keyctl"},
	}
	for name, args := range refused {
		code, out, errOut := execOut(t, ctr, ExecSpec{Args: args})
		assert.NotEqual(t, uint32(0), code, "%s must fail: %s%s", name, out, errOut)
		assert.Regexp(t, `(?i)operation not permitted|permission denied`, errOut, name)
	}
	_, out, _ := execOut(t, ctr, ExecSpec{Args: []string{"grep", "-E", "^(Seccomp|NoNewPrivs):", "/proc/self/status"}})
	assert.Equal(t, "NoNewPrivs:\t1\nSeccomp:\t2\n", out, "no-new-privileges and a seccomp filter")

	// Ordinary programs: a shell, busybox httpd (from the host and from
	// wget inside), files.
	code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", "echo ok > /tmp/f && cat /tmp/f && wget -qO- http://127.0.0.1:8080/index.html"}})
	assert.Equal(t, uint32(0), code, errOut)
	assert.Equal(t, "ok\nhello\n", out)
	url := fmt.Sprintf("http://%s:8080/index.html", ep.ContainerIP)
	require.Eventually(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == 200 && string(b) == "hello\n"
	}, 10*time.Second, 20*time.Millisecond)

	withRaw, _ := start("sandbox-raw", []string{"CAP_NET_RAW"})
	code, out, errOut = execOut(t, withRaw, ExecSpec{Args: []string{"probe", "syscall", "raw"}})
	assert.Equal(t, uint32(0), code, errOut)
	assert.Equal(t, "ok\n", out, "a class that asks for NET_RAW gets it")
	code, _, _ = execOut(t, withRaw, ExecSpec{Args: refused["unshare"]})
	assert.NotEqual(t, uint32(0), code, "and nothing else")
}

// TestSandboxSaysWhetherAppArmorApplies: the start log tells a host
// without AppArmor that containers run without a profile.
func TestSandboxSaysWhetherAppArmorApplies(t *testing.T) {
	var logs testutil.LogBuffer
	logSandbox(slog.New(slog.NewTextHandler(&logs, nil)))
	if apparmor.HostSupports() {
		assert.Contains(t, logs.String(), `level=INFO msg="containers get the AppArmor profile wharf-default"`)
		return
	}
	assert.Contains(t, logs.String(), `level=WARN msg="AppArmor is not available on this host: containers run without an AppArmor profile `+
		`(seccomp, the capability set and no-new-privileges still confine them)"`)
}
