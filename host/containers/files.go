package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"

	"github.com/wharfhq/wharf/abi"
)

// parseFileOptions decodes the options of file_open and file_op, which
// all need a path.
func parseFileOptions(raw []byte) (abi.FileOptions, error) {
	o, err := abi.DecodeFileOptions(raw)
	if err != nil {
		return o, fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	if o.Path == "" {
		return o, fmt.Errorf("%w: a file operation needs a path", abi.StatusInvalid)
	}
	return o, nil
}

// fileStatus maps a files error to its status.
func fileStatus(err error) error {
	switch {
	case errors.Is(err, ErrExitedMeanwhile):
		return errNotRunning
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w: %w", abi.StatusNotFound, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%w: %w", abi.StatusDenied, err)
	case errors.Is(err, ErrTooManyWatches), errors.Is(err, ErrLimit): // a listing too large for one answer
		return fmt.Errorf("%w: %w", abi.StatusTooLarge, err)
	case errors.Is(err, ErrUnknownUser), errors.Is(err, ErrBadExec), errors.Is(err, ErrNoAgent),
		errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR), errors.Is(err, fs.ErrExist),
		errors.Is(err, fs.ErrInvalid):
		return fmt.Errorf("%w: %w", abi.StatusInvalid, err)
	}
	return fmt.Errorf("%w: %w", abi.StatusIO, err)
}

// OpenFile opens a file of the container as file_open asks (raw are its
// options): a readable stream of a file (mode "read"), a writable one
// into a file it creates or truncates ("write"), or a readable stream of
// changes as JSON lines ("watch"). One of r and w is set.
func OpenFile(ctx context.Context, c Container, raw []byte) (r io.ReadCloser, w *os.File, err error) {
	o, err := parseFileOptions(raw)
	if err != nil {
		return nil, nil, err
	}
	switch o.Mode {
	case "read", "":
		f, err := c.OpenFile(ctx, o.Path, o.User, false, 0)
		if err != nil {
			return nil, nil, fileStatus(err)
		}
		return f, nil, nil
	case "write":
		f, err := c.OpenFile(ctx, o.Path, o.User, true, o.Perm)
		if err != nil {
			return nil, nil, fileStatus(err)
		}
		return nil, f, nil
	case "watch":
		r, err := c.Watch(ctx, o.Path, o.User)
		if err != nil {
			return nil, nil, fileStatus(err)
		}
		return r, nil, nil
	}
	return nil, nil, fmt.Errorf("%w: mode must be \"read\", \"write\" or \"watch\", got %q", abi.StatusInvalid, abi.Excerpt(o.Mode))
}

// FileOp runs the file operation file_op asks (raw are its options): stat
// and list answer JSON (a FileInfo, an array of them); mkdir, remove and
// rename nothing.
func FileOp(ctx context.Context, c Container, raw []byte) ([]byte, error) {
	o, err := parseFileOptions(raw)
	if err != nil {
		return nil, err
	}
	var result any
	switch o.Op {
	case "stat":
		result, err = c.Stat(ctx, o.Path, o.User)
	case "list":
		result, err = c.ListDir(ctx, o.Path, o.User)
	case "mkdir":
		err = c.MkdirAll(ctx, o.Path, o.User)
	case "remove":
		err = c.Remove(ctx, o.Path, o.User, o.Recursive)
	case "rename":
		if o.To == "" {
			return nil, fmt.Errorf("%w: rename needs to", abi.StatusInvalid)
		}
		err = c.Rename(ctx, o.Path, o.To, o.User)
	default:
		return nil, fmt.Errorf("%w: op must be stat, list, mkdir, remove or rename, got %q", abi.StatusInvalid, abi.Excerpt(o.Op))
	}
	if err != nil {
		return nil, fileStatus(err)
	}
	var out []byte
	if result != nil {
		out, _ = json.Marshal(result)
	}
	return out, nil
}
