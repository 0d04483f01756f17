package containerd

import (
	"errors"
	"io/fs"
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
