package plugins

import (
	"crypto/rand"
	"errors"
)

// Errors a call into a guest can end with. All of them leave the instance
// unusable; the pool replaces it.
var (
	// ErrTrap is a guest that trapped, panicked or exited.
	ErrTrap = errors.New("guest trapped")
	// ErrDeadline is a guest that ran past its per-event deadline.
	ErrDeadline = errors.New("guest exceeded its time limit")
	// ErrCanceled is an event whose caller went away while the guest ran.
	ErrCanceled = errors.New("event canceled")
	// ErrInvalidModule is a file refused at load time.
	ErrInvalidModule = errors.New("invalid plugin module")
	// ErrPoolClosed is a Get on a pool that was closed.
	ErrPoolClosed = errors.New("plugin is shutting down")
)

// cryptoRand feeds the guest's random_get from the host's CSPRNG.
type cryptoRand struct{}

func (cryptoRand) Read(p []byte) (int, error) { return rand.Read(p) }
