package containerd

import (
	"errors"
	"io/fs"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestRuncStartErrorNamesOnlyTheProgram: runc's words for a program that
// is missing or may not be run match fs.ErrNotExist or fs.ErrPermission
// (wharf exec exits 127 or 126); the same words about something else (a
// working directory runc cannot enter, a shim's socket that is gone) do
// not: they made wharf exec exit 127 for a failure that is not the
// program's.
func TestRuncStartErrorNamesOnlyTheProgram(t *testing.T) {
	for msg, want := range map[string]error{
		`OCI runtime exec failed: exec failed: unable to start container process: exec: "/nope": stat /nope: no such file or directory: unknown`:                        fs.ErrNotExist,
		`OCI runtime exec failed: exec failed: unable to start container process: exec: "nope": executable file not found in $PATH: unknown`:                            fs.ErrNotExist,
		`OCI runtime exec failed: exec failed: unable to start container process: exec: "/t/d": permission denied: unknown`:                                             fs.ErrPermission,
		`OCI runtime exec failed: exec failed: unable to start container process: eaccess /dev/shm/script: permission denied: unknown`:                                  fs.ErrPermission,
		`OCI runtime exec failed: exec failed: unable to start container process: chdir to cwd ("/gone") set in config.json failed: no such file or directory: unknown`: nil,
		`OCI runtime exec failed: exec failed: unable to start container process: chdir to cwd ("/locked") set in config.json failed: permission denied: unknown`:       nil,
		`connection error: desc = "transport: Error while dialing: dial unix /run/shim.sock: connect: no such file or directory"`:                                       nil,
	} {
		err := runcStartError(errors.New(msg))
		if want != nil {
			assert.ErrorIs(t, err, want, msg)
			continue
		}
		assert.NotErrorIs(t, err, fs.ErrNotExist, msg)
		assert.NotErrorIs(t, err, fs.ErrPermission, msg)
	}
}

// TestExecveFailureIsRuncsOnly: the line runc's init writes on stderr when
// the kernel refuses a program it found, with runc's exit code, is why the
// program did not start (wharf exec exits 127 or 126); the same line from
// a program that ran (another exit code, more output, another program's
// path) is not.
func TestExecveFailureIsRuncsOnly(t *testing.T) {
	for _, c := range []struct {
		program string
		code    uint32
		out     string
		want    error
	}{
		{"/tmp/nointerp", 1, "exec /tmp/nointerp: no such file or directory\n", fs.ErrNotExist}, // runc 1.1
		{"/tmp/garbage", 255, "exec /tmp/garbage: exec format error\n", fs.ErrPermission},       // runc 1.2
		{"/tmp/garbage", 1, "exec /tmp/garbage: exec format error\r\n", fs.ErrPermission},       // on a terminal
		{"script", 1, "exec /usr/bin/script: permission denied\n", fs.ErrPermission},            // found in $PATH
		{"/tmp/garbage", 0, "exec /tmp/garbage: exec format error\n", nil},
		{"/tmp/garbage", 1, "exec /tmp/garbage: exec format error\nand more\n", nil},
		{"/tmp/garbage", 1, "exec /tmp/garbage: exec format error", nil},
		{"/tmp/other", 1, "exec /tmp/garbage: exec format error\n", nil},
		{"script", 1, "exec /usr/bin/notscript: exec format error\n", nil},
		{"/tmp/x", 1, "exec /tmp/x: input/output error\n", nil},
		{"/tmp/x", 1, "", nil},
	} {
		err := execveFailure(c.program, c.code, c.out)
		if c.want == nil {
			assert.NoError(t, err, "%s %d %q", c.program, c.code, c.out)
			continue
		}
		assert.ErrorIs(t, err, c.want, "%s %d %q", c.program, c.code, c.out)
		assert.Equal(t, strings.TrimSpace(c.out), err.Error())
	}
}

// TestHeadWriterTellsAllOrNot: the head of a stream longer than any line
// of runc's is not taken for all of it.
func TestHeadWriterTellsAllOrNot(t *testing.T) {
	var all strings.Builder
	h := &headWriter{w: &all, keep: maxExecveMessage}
	line := "exec /tmp/x: exec format error\n"
	h.Write([]byte(line))
	out, whole := h.written()
	assert.True(t, whole)
	assert.Equal(t, line, out)
	h.Write([]byte(strings.Repeat("x", maxExecveMessage)))
	out, whole = h.written()
	assert.False(t, whole)
	assert.Len(t, out, maxExecveMessage)
	assert.Equal(t, line+strings.Repeat("x", maxExecveMessage), all.String(), "everything is passed on")
}
