package web

import (
	"context"
	"io"
)

// CancelingBody is a fetched response's body that cancels the fetch's
// context when it is closed.
type CancelingBody struct {
	io.ReadCloser
	Cancel context.CancelFunc
}

// Close closes the body, then cancels the fetch.
func (b CancelingBody) Close() error {
	err := b.ReadCloser.Close()
	b.Cancel()
	return err
}

// PipeSink feeds an outbound request body: a guest's write stream writes
// to W.
type PipeSink struct{ W *io.PipeWriter }

// Write writes p to the pipe; it returns once the request has read it.
func (s PipeSink) Write(p []byte) error {
	_, err := s.W.Write(p)
	return err
}

// Finish ends the body.
func (s PipeSink) Finish() error { return s.W.Close() }

// Abort ends the body with err, which the request's reader sees.
func (s PipeSink) Abort(err error) { s.W.CloseWithError(err) }
