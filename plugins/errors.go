package plugins

import (
	"crypto/rand"
	"errors"
	"fmt"
)

// Errors an instance can end with.
var (
	// ErrTrap is a guest that trapped, panicked or exited.
	ErrTrap = errors.New("guest trapped")
	// ErrDeadline is a guest that ran past its per-event deadline.
	ErrDeadline = errors.New("guest exceeded its time limit")
	// ErrCanceled is an event whose caller went away while the guest ran.
	ErrCanceled = errors.New("event canceled")
	// ErrInvalidModule is a file refused at load time.
	ErrInvalidModule = errors.New("invalid plugin module")
	// ErrPoolClosed is an event for a plugin that is shutting down.
	ErrPoolClosed = errors.New("plugin is shutting down")
	// ErrCPUSlice is an instance stopped because it computed longer than
	// its CPU slice without calling the host.
	ErrCPUSlice = errors.New("guest computed without yielding for longer than its CPU slice")
	// ErrMainReturned is a guest whose main returned: it must end in
	// sdk.Serve, which serves events forever.
	// Go's runtime exits with code 0 as main returns, so os.Exit(0) (in a
	// handler, say) looks the same to the host and is named too.
	ErrMainReturned = errors.New("the plugin's main returned, or it called os.Exit(0) (main must end by calling sdk.Serve(), which serves until the host stops it)")
	// ErrStopped is an instance the host stopped (shutdown, replacement).
	ErrStopped = errors.New("instance stopped")
)

// RefusedModuleError is a module the engine refused to compile, as
// Precompile reports it; it matches ErrInvalidModule. A process that
// compiled it apart (Config.CompileApart) hands the refusal back as one, so
// that Load does not compile the module again only to be refused again.
type RefusedModuleError struct{ Reason error }

func (e *RefusedModuleError) Error() string {
	return ErrInvalidModule.Error() + ": " + e.Reason.Error()
}

// Is makes it match ErrInvalidModule.
func (e *RefusedModuleError) Is(target error) bool { return target == ErrInvalidModule }

// Unwrap is the engine's reason.
func (e *RefusedModuleError) Unwrap() error { return e.Reason }

// exitError is a guest that exited with a code (a Go guest's panic or
// fatal error exits with 2): no trap, but it ends the instance all the
// same, so it matches ErrTrap.
type exitError struct{ code int }

func (e exitError) Error() string        { return fmt.Sprintf("the guest exited with code %d", e.code) }
func (e exitError) Is(target error) bool { return target == ErrTrap }

// cryptoRand feeds the guest's random_get from the host's CSPRNG.
type cryptoRand struct{}

func (cryptoRand) Read(p []byte) (int, error) { return rand.Read(p) }
