package abi

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestContainerExitRoundTrip(t *testing.T) {
	for _, c := range []struct {
		code int
		why  string
	}{{1, ""}, {137, "out of memory: killed: at the limit"}, {255, ""}} {
		msg := FormatContainerExit(c.code, c.why)
		code, why, ok := ParseContainerExit(msg)
		assert.True(t, ok, msg)
		assert.Equal(t, c.code, code, msg)
		assert.Equal(t, c.why, why, msg)
	}
	assert.Equal(t, "the container exited with code 3", FormatContainerExit(3, ""))
	err := ContainerExitError(3, "")
	assert.ErrorIs(t, err, StatusIO)
	assert.Equal(t, "IO: the container exited with code 3", err.Error())
	for _, reason := range []string{"", "shutting down", "the container exited with code x", "the container exited with code"} {
		_, _, ok := ParseContainerExit(reason)
		assert.False(t, ok, "a destroy reason: %q", reason)
	}
}
