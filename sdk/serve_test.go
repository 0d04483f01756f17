package sdk

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// serveChildEnv makes the test binary call Serve, in the child process
// TestServeFailureSaysEachThingOnce starts.
const serveChildEnv = "WHARF_SDK_TEST_SERVE"

// TestServeFailureSaysEachThingOnce: a serve the host refuses without
// words (here the stubs of a native build) exits 2 saying "wharf: serve: "
// and what the status means, once each: not "wharf: serve: serve: …".
func TestServeFailureSaysEachThingOnce(t *testing.T) {
	if os.Getenv(serveChildEnv) == "1" {
		Serve() // exits
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeFailureSaysEachThingOnce$")
	cmd.Env = append(os.Environ(), serveChildEnv+"=1")
	_, err := cmd.Output()
	var exit *exec.ExitError
	require.True(t, errors.As(err, &exit), "Serve should exit with an error: %v", err)
	assert.Equal(t, 2, exit.ExitCode())
	assert.Equal(t, "wharf: serve: unsupported operation\n", string(exit.Stderr))
}
