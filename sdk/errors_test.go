package sdk

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

func TestHostErrorsMatchTheirSentinel(t *testing.T) {
	for status, sentinel := range map[abi.Status]error{
		abi.StatusTooLarge: ErrTooLarge, abi.StatusInvalid: ErrInvalidArgument, abi.StatusNotFound: ErrNotFound,
		abi.StatusTimeout: ErrTimeout, abi.StatusRefused: ErrPortRefused, abi.StatusDenied: fs.ErrPermission,
	} {
		err := error(wharf.NewError("storage_put", status, status.String()+": the host's words"))
		assert.ErrorIs(t, err, sentinel, status.String())
		assert.ErrorIs(t, err, status, "the status still matches")
		assert.Equal(t, "wharf: the host's words", err.Error(), "no ABI names in a message that has words")
		assert.Equal(t, "wharf: storage_put: "+strings.TrimPrefix(sentinel.Error(), "wharf: "), wharf.NewError("storage_put", status, status.String()).Error(),
			"without words, the import and what its status means")
		remote := calleeError(wharf.NewError(abi.ImportCallResult, status, status.String()+": the callee's words"), nil)
		assert.ErrorIs(t, remote, sentinel, "a called object's error, %s", status)
		assert.Equal(t, "the callee's words", remote.Error())
	}
	assert.NotErrorIs(t, &Error{Status: abi.StatusIO}, ErrTooLarge)
	assert.Equal(t, "wharf: INVALIDATED by x", wharf.NewError("op", abi.StatusInvalid, "INVALIDATED by x").Error(),
		"only a whole status name is dropped")
	assert.Equal(t, "wharf: event_done: IO", wharf.NewError("event_done", abi.StatusIO, "").Error(), "a status without a sentinel keeps its name")
}

func TestEnvNamesWithEqualsAreRefused(t *testing.T) {
	for _, name := range []string{"A=B", "=", ""} {
		_, err := envPairs(map[string]string{name: "v"})
		require.ErrorIs(t, err, ErrInvalidArgument, name)
		assert.Contains(t, err.Error(), "environment variable name")
	}
	pairs, err := envPairs(map[string]string{"B": "2=3", "A": "1"})
	require.NoError(t, err)
	assert.Equal(t, []string{"A=1", "B=2=3"}, pairs)
	_, err = (&Container{}).Exec([]string{"true"}, ExecOptions{Env: map[string]string{"X=Y": "1"}})
	assert.ErrorIs(t, err, ErrInvalidArgument, "checked before the host is asked")
}

func TestExitError(t *testing.T) {
	var exit *ExitError
	err := error(&ExitError{Code: 3, what: "the process"})
	require.True(t, errors.As(err, &exit))
	assert.Equal(t, 3, exit.ExitCode())
	assert.Equal(t, "the process exited with code 3", err.Error())
	assert.Equal(t, "the container exited with code 1", (&ExitError{Code: 1}).Error())
	assert.Equal(t, "shutting down", (&ExitError{Code: -1, Reason: "shutting down"}).Error())
	assert.Equal(t, "the container exited with code 137: out of memory", (&ExitError{Code: 137, Reason: "out of memory"}).Error(),
		"the code and why the host saw it end")
}

// TestSentinelsAddedToHostErrorsReadOnce: an SDK sentinel put in front of
// a host error is said once, whatever the host's words: not "wharf: the
// container is not running: wharf: the container is not running", nor
// "wharf: signal out of range: wharf: signal must be …"; and the error
// still matches the sentinel, the status and *Error.
func TestSentinelsAddedToHostErrorsReadOnce(t *testing.T) {
	notRunning := wharf.NewError("container_exec", abi.StatusNotFound, "NOTFOUND: "+abi.ContainerNotRunning)
	for _, c := range []struct {
		err  error
		want string
		is   []error
	}{
		{containerError(notRunning, ErrInvalidArgument), "wharf: the container is not running",
			[]error{ErrNotRunning, ErrNotFound, abi.StatusNotFound}},
		{containerError(wharf.NewError("container_signal", abi.StatusInvalid, "INVAL: signal must be from 1 to 64, got 65"), ErrSignalRange),
			"wharf: signal out of range: signal must be from 1 to 64, got 65", []error{ErrSignalRange, ErrInvalidArgument}},
		{backgroundError(wharf.NewError("background_op", abi.StatusInvalid, "INVAL: signal must be from 1 to 64, got 65")),
			"wharf: signal out of range: signal must be from 1 to 64, got 65", []error{ErrSignalRange, ErrInvalidArgument}},
		{backgroundError(wharf.NewError("background_op", abi.StatusNotFound, "NOTFOUND: "+abi.ContainerNotRunning)),
			"wharf: the container is not running", []error{ErrNotRunning, ErrNotFound}},
		{withSentinel(ErrExecFailed, wharf.NewError("background_op", abi.StatusIO, "IO: the process could not be started: executable file not found: x in $PATH")),
			"wharf: the process could not be started: executable file not found: x in $PATH", []error{ErrExecFailed, abi.StatusIO}},
		{containerError(wharf.NewError("container_exec", abi.StatusInvalid, "INVAL: relative cwd"), ErrInvalidArgument),
			"wharf: invalid argument: relative cwd", []error{ErrInvalidArgument}},
		{pathError("stat", "/x", notRunning), "stat /x: the container is not running", []error{ErrNotRunning}},
	} {
		assert.Equal(t, c.want, c.err.Error())
		for _, s := range c.is {
			assert.ErrorIs(t, c.err, s, c.want)
		}
		var e *Error
		assert.True(t, errors.As(c.err, &e), "still the host's *Error underneath: %s", c.want)
	}
}

// TestNotRunningIsTheHostsMessageNotWordsInIt: a file or a process whose
// name has "the container is not running" or "signal must be from 1 to 64"
// in it is not taken for a stopped container or a bad signal.
func TestNotRunningIsTheHostsMessageNotWordsInIt(t *testing.T) {
	err := pathError("stat", "/tmp/the container is not running",
		wharf.NewError("file_op", abi.StatusNotFound, "NOTFOUND: lstat /tmp/the container is not running: no such file or directory"))
	assert.ErrorIs(t, err, fs.ErrNotExist)
	assert.NotErrorIs(t, err, ErrNotRunning)
	err = backgroundError(wharf.NewError("background_op", abi.StatusNotFound, `NOTFOUND: no background process "the container is not running"`))
	assert.ErrorIs(t, err, ErrNotFound)
	assert.NotErrorIs(t, err, ErrNotRunning)
	err = backgroundError(wharf.NewError("background_op", abi.StatusInvalid,
		`INVAL: a process id is 1 to 64 letters, digits, '.', '_' or '-' (not first), got "signal must be from 1 to 64"`))
	assert.ErrorIs(t, err, ErrInvalidArgument)
	assert.NotErrorIs(t, err, ErrSignalRange)
}

// TestRequestBodyErrorReadsOnce: a request body the host would not take
// fails the fetch with "wharf: sending request body: " and the host's
// words, not a second "wharf: " (here the stubs of a native build refuse
// stream_write without a message).
func TestRequestBodyErrorReadsOnce(t *testing.T) {
	req, err := http.NewRequest("POST", "http://example.invalid/", strings.NewReader("payload"))
	require.NoError(t, err)
	_, err = roundTrip(req, func(wharf.Event, []byte, uint32) (uint32, uint32, error) { return 1, 2, nil })
	require.Error(t, err)
	assert.Equal(t, "wharf: sending request body: stream_write: unsupported operation", err.Error())
	assert.ErrorIs(t, err, errors.ErrUnsupported)
}

// TestPathErrorSaysThePathOnce: the host's words lose the "lstat /x: "
// that repeats the path the *fs.PathError names, and keep another path.
func TestPathErrorSaysThePathOnce(t *testing.T) {
	err := pathError("stat", "/work/x", wharf.NewError("file_op", abi.StatusNotFound, "NOTFOUND: lstat /work/x: no such file or directory"))
	assert.EqualError(t, err, "stat /work/x: no such file or directory")
	assert.ErrorIs(t, err, fs.ErrNotExist)
	err = pathError("write", "/a/b/c", wharf.NewError("file_op", abi.StatusIO, "IO: mkdir /a/b: not a directory"))
	assert.EqualError(t, err, "write /a/b/c: mkdir /a/b: not a directory")
	err = pathError("read", "etc/x", wharf.NewError("file_op", abi.StatusInvalid, "the path must be absolute: etc/x"))
	assert.EqualError(t, err, "read etc/x: the path must be absolute")
	assert.ErrorIs(t, err, ErrInvalidArgument)
}

// TestRenameErrorSaysEachPathOnce: a rename's error is an *os.LinkError
// naming both paths, and the host's words lose the "rename /a /b: " that
// repeats them.
func TestRenameErrorSaysEachPathOnce(t *testing.T) {
	o := abi.FileOptions{Op: "rename", Path: "/a", To: "/b"}
	err := opError(o, wharf.NewError("file_op", abi.StatusNotFound, "NOTFOUND: rename /a /b: no such file or directory"))
	assert.EqualError(t, err, "rename /a /b: no such file or directory")
	var le *os.LinkError
	assert.ErrorAs(t, err, &le)
	assert.ErrorIs(t, err, fs.ErrNotExist)
	err = opError(o, wharf.NewError("file_op", abi.StatusDenied, "DENIED: rename /a /b: permission denied"))
	assert.EqualError(t, err, "rename /a /b: permission denied")
	assert.ErrorIs(t, err, fs.ErrPermission)
	err = opError(o, wharf.NewError("file_op", abi.StatusInvalid, "INVAL: unknown user: ghost"))
	assert.EqualError(t, err, "rename /a /b: unknown user: ghost", "other words are kept")
	assert.NoError(t, opError(o, nil))
}

// TestPathErrorKeepsTheHostsOwnWords: a message that is not "op path: …"
// keeps its words even when the path is one of them (a relative path
// "user" and the host's "unknown user: …").
func TestPathErrorKeepsTheHostsOwnWords(t *testing.T) {
	err := pathError("stat", "user", wharf.NewError("file_op", abi.StatusInvalid, `INVAL: unknown user: user "ghost" does not exist in the image's /etc/passwd`))
	assert.EqualError(t, err, `stat user: unknown user: user "ghost" does not exist in the image's /etc/passwd`)
	// Paths with spaces and ": " in them are said once too.
	err = pathError("stat", "/tmp/a: b c", wharf.NewError("file_op", abi.StatusNotFound, "NOTFOUND: lstat /tmp/a: b c: no such file or directory"))
	assert.EqualError(t, err, "stat /tmp/a: b c: no such file or directory")
	err = pathError("remove", "/w/x", wharf.NewError("file_op", abi.StatusIO, "IO: unlinkat /w/x: device or resource busy"))
	assert.EqualError(t, err, "remove /w/x: device or resource busy")
}

// TestWharfIsSaidOnceInFront: an SDK error put inside words that say what
// failed (an *fs.PathError's "read /x: ", a call's "call M: ", a request's
// `Get "URL": `) loses its "wharf: ", so that a message says it at most
// once, in front; the error still matches what it matched.
func TestWharfIsSaidOnceInFront(t *testing.T) {
	missing := wharf.NewError("file_open", abi.StatusNotFound, "NOTFOUND: open /work/nope.txt: no such file or directory")
	req, err := http.NewRequest("GET", "http://container/x", nil)
	require.NoError(t, err)
	_, roundTripErr := Transport{}.RoundTrip(req)
	callErr := (&Stub{ns: "SANDBOX", id: strings.Repeat("a", abi.ObjectIDLen)}).Call("Get", nil, nil)
	for _, c := range []struct {
		err  error
		want string
		is   []error
	}{
		{pathError("read", "/work/nope.txt", missing), "read /work/nope.txt: no such file or directory",
			[]error{fs.ErrNotExist, ErrNotFound, abi.StatusNotFound}},
		{opError(abi.FileOptions{Op: "rename", Path: "/a", To: "/b"}, missing), "rename /a /b: open /work/nope.txt: no such file or directory",
			[]error{fs.ErrNotExist, ErrNotFound}},
		{requestError(req, withSentinel(ErrPortRefused, wharf.NewError("container_fetch", abi.StatusRefused, "REFUSED: dial tcp 10.0.0.2:80: connection refused"))),
			`Get "http://container/x": nothing listens on the container port: dial tcp 10.0.0.2:80: connection refused`, []error{ErrPortRefused, abi.StatusRefused}},
		{roundTripErr, "fetch: unsupported operation", []error{errors.ErrUnsupported}},
		{callErr, "call Get: object_call: unsupported operation", []error{errors.ErrUnsupported}},
	} {
		assert.EqualError(t, c.err, c.want)
		for _, s := range c.is {
			assert.ErrorIs(t, c.err, s, c.want)
		}
		var e *Error
		assert.True(t, errors.As(c.err, &e), "still the host's *Error underneath: %s", c.want)
	}
	var pe *fs.PathError
	assert.ErrorAs(t, pathError("read", "/work/nope.txt", missing), &pe, "Files' errors are *fs.PathError, as its doc says")
	assert.Equal(t, "wharf: open /work/nope.txt: no such file or directory", missing.Error(), "alone, a host error says wharf in front")
}

// TestWithinPutsAnSDKErrorAfterYourWords: an SDK error after a plugin's own
// words loses its "wharf: " (with fmt.Errorf's %w or as text) and still
// matches its sentinel, status and *Error.
func TestWithinPutsAnSDKErrorAfterYourWords(t *testing.T) {
	busy := backgroundError(wharf.NewError("background_op", abi.StatusBusy, `BUSY: background process "dev" is already running`))
	err := fmt.Errorf("starting the process: %w", Within(busy))
	assert.EqualError(t, err, `starting the process: background process "dev" is already running`)
	assert.ErrorIs(t, err, ErrBusy)
	assert.ErrorIs(t, err, abi.StatusBusy)
	var e *Error
	assert.True(t, errors.As(err, &e))
	assert.Equal(t, "timed out: the object's event has ended: storage, alarm and container calls act for a running event; hand the work to a later one (an alarm, a channel an event reads)",
		"timed out: "+Within(ErrEventOver).Error(), "an SDK error that is not the host's too")
	assert.ErrorIs(t, Within(ErrEventOver), ErrTimeout)
	assert.Equal(t, "no wharf here: not from the SDK", "no wharf here: "+Within(errors.New("not from the SDK")).Error())
	assert.NoError(t, Within(nil))
}
