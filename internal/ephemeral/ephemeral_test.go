package ephemeral

import (
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEndedOnlyForAMarkOfAProcessThatEnded(t *testing.T) {
	ended := exec.Command("true")
	require.NoError(t, ended.Run())
	deadPid := strconv.Itoa(ended.Process.Pid)
	self := strconv.Itoa(os.Getpid())

	assert.True(t, Ended([]string{"PATH=/bin", Env + "=" + deadPid}))
	assert.False(t, Ended([]string{"PATH=/bin", Env + "=" + self}), "its process runs")
	assert.False(t, Ended([]string{"PATH=/bin"}), "not marked")
	assert.False(t, Ended([]string{Env + "=", Env + "x=" + deadPid}), "no pid")
	assert.False(t, Ended([]string{Env + "=-1"}))
}

func TestMarkIsInherited(t *testing.T) {
	t.Setenv(Env, "")
	Mark()
	assert.True(t, Marked())
	out, err := exec.Command("sh", "-c", "echo $"+Env).Output()
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(os.Getpid())+"\n", string(out))
}
