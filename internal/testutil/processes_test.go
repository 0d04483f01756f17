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
	found := Processes(marker, "sleep 60")
	assert.Equal(t, []string{"sh -c sleep 60; : " + marker + " arg0"}, found)
	assert.Empty(t, Processes(marker, "no-such-word"), "every word must be there")
	cmd.Process.Kill()
	cmd.Wait()
	assert.Empty(t, Processes(marker), "gone once it exits")
}
