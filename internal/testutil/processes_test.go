package testutil

import (
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProcessesFindsACommandLineByItsWords(t *testing.T) {
	marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	cmd := exec.Command("sh", "-c", "sleep 60; : "+marker, "arg0")
	require.NoError(t, cmd.Start())
	// Start returns once execve has closed the descriptors, which is
	// before the kernel sets up the new command line (read empty until
	// then).
	var found []string
	assert.Eventually(t, func() bool { found = Processes(marker, "sleep 60"); return found != nil }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, []string{"sh -c sleep 60; : " + marker + " arg0"}, found)
	assert.Empty(t, Processes(marker, "no-such-word"), "every word must be there")
	cmd.Process.Kill()
	cmd.Wait()
	assert.Empty(t, Processes(marker), "gone once it exits")
}
