package sdk

import (
	"errors"

	"github.com/wharfhq/wharf/abi"
	"github.com/wharfhq/wharf/sdk/internal/wharf"
)

// Error is a failed host call: the operation, its abi.Status and the host's
// message. errors.Is(err, abi.StatusBadHandle) and the like match the status.
type Error = wharf.Error

// ErrWouldBlock is returned by TryRead and TryWrite when the stream is not
// ready; Select on the stream to wait for it.
var ErrWouldBlock = errors.New("wharf: operation would block")

// wouldBlock maps the host's AGAIN to ErrWouldBlock.
func wouldBlock(err error) error {
	if errors.Is(err, abi.StatusAgain) {
		return ErrWouldBlock
	}
	return err
}
