package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wharfhq/wharf/sdk"
)

// TestStatusOfAStoppedContainerIs409: the SDK's "the container is not
// running" matches sdk.ErrNotFound as well (the host's status), as a
// call that meets the container's exit gets it; the sandbox answers it
// 409 on every route, as its README says, not 404, nor the 500 of a
// script that could not be run or the 400 of a refused file call.
func TestStatusOfAStoppedContainerIs409(t *testing.T) {
	var notRunning error = notRunningError{}
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadRequest, statusOf(notRunning)} {
		w := httptest.NewRecorder()
		fail(w, "running the script", notRunning, status)
		assert.Equal(t, http.StatusConflict, w.Code, "given %d", status)
		assert.Equal(t, "running the script: the container is not running\n", w.Body.String())
	}
	assert.Equal(t, http.StatusNotFound, statusOf(fmt.Errorf("no background process: %w", sdk.ErrNotFound)))
	assert.Equal(t, http.StatusConflict, statusOf(fmt.Errorf("already running: %w", sdk.ErrBusy)))
}

// notRunningError is the SDK's error of a call that needs a running
// container: its words, matching sdk.ErrNotRunning and sdk.ErrNotFound.
type notRunningError struct{}

func (notRunningError) Error() string { return sdk.ErrNotRunning.Error() }

func (notRunningError) Is(target error) bool {
	return target == sdk.ErrNotRunning || target == sdk.ErrNotFound
}
