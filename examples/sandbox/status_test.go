package main

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wharfhq/wharf/sdk"
)

// TestStatusOfAStoppedContainerIs409: the SDK's "the container is not
// running" matches sdk.ErrNotFound as well (the host's status), as a
// signal that meets the container's exit gets it; the sandbox answers it
// 409, as its README says, not 404.
func TestStatusOfAStoppedContainerIs409(t *testing.T) {
	notRunning := fmt.Errorf("%w: %w", sdk.ErrNotRunning, sdk.ErrNotFound)
	assert.Equal(t, http.StatusConflict, statusOf(notRunning))
	assert.Equal(t, http.StatusNotFound, statusOf(fmt.Errorf("no background process: %w", sdk.ErrNotFound)))
	assert.Equal(t, http.StatusConflict, statusOf(fmt.Errorf("already running: %w", sdk.ErrBusy)))
}
