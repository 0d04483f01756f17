package containerd

import (
	"context"
	"fmt"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestRefusedEntrypointIsBadExec: an entrypoint the image does not have,
// or that may not be run, is ErrBadExec naming it, through runc as
// through the agent (the service answers INVALID, not an I/O failure),
// and matches fs.ErrNotExist or fs.ErrPermission, as an exec's refusal
// does. runc's refusal came back in its own words only, as a failure to
// create the task, and the agent's matched neither kind.
func TestRefusedEntrypointIsBadExec(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	for _, withInit := range []bool{false, true} {
		for i, bad := range []struct {
			entrypoint []string
			kind       error
		}{
			{[]string{"/no/such", "x"}, fs.ErrNotExist},
			{[]string{"no-such-program"}, fs.ErrNotExist},
			{[]string{"/etc/passwd"}, fs.ErrPermission},
		} {
			spec := ContainerSpec{ID: fmt.Sprintf("refused-%v-%d", withInit, i), Image: image, Entrypoint: bad.entrypoint, RuncRoot: runcRoot,
				Resources: Resources{VCPU: 0.5, MemoryBytes: 64 << 20, Pids: 64}}
			if withInit {
				withAgent(t, &spec)
			}
			ctr, err := StartContainer(context.Background(), c, spec)
			if err == nil {
				ctr.Destroy(context.Background())
			}
			assert.ErrorIs(t, err, ErrBadExec, "entrypoint %v, init %v", bad.entrypoint, withInit)
			assert.ErrorContains(t, err, fmt.Sprintf("bad exec: entrypoint %v: ", bad.entrypoint))
			assert.ErrorIs(t, err, bad.kind, "entrypoint %v, init %v", bad.entrypoint, withInit)
		}
	}
}
