package containerd

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRuncExecLooksLikeRuncsOnlyWhenItIs: through runc, cat without input
// ends (TestTerminalExecInputEnds has it on a terminal); a program that writes runc's execve
// line itself and exits 1 exits 1 when the line names another program,
// when it wrote on stdout first (so it ran) and when stderr holds more;
// concurrent refused execs each get their own code.
func TestRuncExecLooksLikeRuncsOnlyWhenItIs(t *testing.T) {
	c, image, runcRoot := testRuntime(t)
	ctr := startBusybox(t, c, image, runcRoot, "attack", "trap 'exit 3' TERM; while true; do sleep 0.1; done", false)
	defer ctr.Destroy(context.Background())

	var catOut strings.Builder
	p, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{"cat"}, Stdout: &catOut, Stderr: &catOut})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	code, err := p.Wait(ctx)
	cancel()
	require.NoError(t, err, "cat without input did not end")
	assert.Equal(t, uint32(0), code, "cat without input: %q", catOut.String())

	code, _, errOut := execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", `echo "exec /tmp/x: no such file or directory" >&2; exit 1`}})
	assert.Equal(t, uint32(1), code, "another program's line: %q", errOut)
	code, out, errOut := execOut(t, ctr, ExecSpec{Args: []string{"/bin/sh", "-c", `echo it ran; echo "exec /bin/sh: exec format error" >&2; exit 1`}})
	assert.Equal(t, uint32(1), code, "a program that wrote on stdout ran, whatever it writes on stderr: %q %q", out, errOut)

	code, _, _ = execOut(t, ctr, ExecSpec{Args: []string{"sh", "-c", `printf '#!/nonexistent/sh\n' >/tmp/nointerp
printf '\001\002\003\004\005\006\007\010' >/tmp/garbage; chmod 755 /tmp/nointerp /tmp/garbage`}})
	require.Zero(t, code)
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			program, want := map[bool]string{true: "/tmp/nointerp", false: "/tmp/garbage"}[i%2 == 0], map[bool]uint32{true: 127, false: 126}[i%2 == 0]
			var out strings.Builder
			p, err := ctr.Exec(context.Background(), ExecSpec{Args: []string{program}, Stdout: &out, Stderr: &out})
			if !assert.NoError(t, err) {
				return
			}
			code, err := p.Wait(context.Background())
			assert.NoError(t, err)
			assert.Equal(t, want, code, "%s concurrently: %q", program, out.String())
		}()
	}
	wg.Wait()
	code, _, _ = execOut(t, ctr, ExecSpec{Args: []string{"/bin/sh", "-c", `seq 1 100000 >&2; echo "exec /bin/sh: no such file or directory" >&2; exit 1`}})
	assert.Equal(t, uint32(1), code)
}
