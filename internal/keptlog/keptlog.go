// Package keptlog keeps a container's output in a log file of bounded
// size, so a container printing forever cannot fill the host's disk. The
// newest output is in the file at path; when it reaches half the bound it
// becomes path.1 (replacing the one before, whose output is dropped) and a
// new file starts. Open reads both in order and follows the rotation.
//
// The keeper runs as containerd's shim logger (a binary:// log URI naming
// wharf-init with Flag and MaxFlag), so it outlives wharf like the shim.
package keptlog

import (
	"bytes"
	"errors"
	"io"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// The flags wharf-init takes to run as the keeper (see Args).
const (
	Flag    = "-log"
	MaxFlag = "-log-max-bytes"
)

// Args are the log URI's query for a keeper of path bounded by maxBytes:
// the shim passes each key and value as two arguments.
func Args(path string, maxBytes int64) map[string]string {
	return map[string]string{Flag: path, MaxFlag: strconv.FormatInt(maxBytes, 10)}
}

// Previous is the file holding the output before the newest.
func Previous(path string) string { return path + ".1" }

// Writer appends to the log at path, rotating it so the two files together
// stay within maxBytes. It is safe for concurrent use.
type Writer struct {
	path string
	half int64
	mu   sync.Mutex
	f    *os.File
	size int64
}

// Create opens (appending to) the log at path bounded by maxBytes (at least
// 2 bytes).
func Create(path string, maxBytes int64) (*Writer, error) {
	w := &Writer{path: path, half: max(maxBytes/2, 1)}
	return w, w.open()
}

func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Write appends p, rotating the file before it passes half the bound. A
// file ends at the end of a line unless a line is longer than the room
// left in an empty file, so the files (and what a reader skips) hold
// whole lines.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	written := 0
	for len(p) > 0 {
		chunk := p[:min(int64(len(p)), w.half-w.size)]
		if len(chunk) < len(p) { // p does not fit: up to the last line end that does
			if end := bytes.LastIndexByte(chunk, '\n'); end >= 0 {
				chunk = chunk[:end+1]
			} else if w.size > 0 {
				chunk = nil
			}
		}
		if len(chunk) == 0 {
			if err := w.rotate(); err != nil {
				return written, err
			}
			continue
		}
		n, err := w.f.Write(chunk)
		written, w.size, p = written+n, w.size+int64(n), p[n:]
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func (w *Writer) rotate() error {
	if err := os.Rename(w.path, Previous(w.path)); err != nil {
		return err
	}
	w.f.Close()
	return w.open()
}

// Close closes the current file.
func (w *Writer) Close() error { return w.f.Close() }

// Reader reads a kept log from its oldest kept byte; at the end it returns
// io.EOF, and a later Read returns what was written since, across
// rotations (output rotated away twice between two Reads is skipped).
type Reader struct {
	path string
	prev *os.File // path.1 as it was at Open, until read
	cur  *os.File
}

// Open opens the log at path (which must exist) for reading.
func Open(path string) (*Reader, error) {
	prev, err := os.Open(Previous(path))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	cur, err := os.Open(path)
	if err != nil {
		if prev != nil {
			prev.Close()
		}
		return nil, err
	}
	return &Reader{path: path, prev: prev, cur: cur}, nil
}

// Read reads the older file, then the newest, moving to a new newest file
// when the one it reads has been rotated.
func (r *Reader) Read(p []byte) (int, error) {
	if r.prev != nil {
		n, err := r.prev.Read(p)
		if err != io.EOF {
			return n, err
		}
		r.prev.Close()
		r.prev = nil
	}
	n, err := r.cur.Read(p)
	if err != io.EOF || !r.rotated() {
		return n, err
	}
	// Everything was written to the rotated file before it was renamed:
	// finish it, then go on with the new one.
	if n, err = r.cur.Read(p); err != io.EOF {
		return n, err
	}
	next, err := os.Open(r.path)
	if err != nil {
		return 0, io.EOF // rotating right now: the next Read finds it
	}
	r.cur.Close()
	r.cur = next
	return r.cur.Read(p)
}

// rotated reports whether the file being read is no longer the newest.
func (r *Reader) rotated() bool {
	var held, named syscall.Stat_t
	if syscall.Fstat(int(r.cur.Fd()), &held) != nil || syscall.Stat(r.path, &named) != nil {
		return false
	}
	return held.Ino != named.Ino || held.Dev != named.Dev
}

// Close closes the files.
func (r *Reader) Close() error {
	if r.prev != nil {
		r.prev.Close()
	}
	return r.cur.Close()
}

// Keep copies the container's output streams to w until they all end. If
// w fails, the rest is read and dropped, so the container never blocks on
// its output. A stop request (the shim's SIGTERM, sent once the container's
// processes are gone) leaves the streams stopGrace to deliver what their
// pipes still hold.
func Keep(w io.Writer, stop <-chan os.Signal, streams ...io.Reader) error {
	errs := make(chan error, len(streams))
	for _, s := range streams {
		go func() {
			_, err := io.Copy(w, s)
			if err != nil {
				io.Copy(io.Discard, s)
			}
			errs <- err
		}()
	}
	var all []error
	var deadline <-chan time.Time
	for pending := len(streams); pending > 0; {
		select {
		case err := <-errs:
			all, pending = append(all, err), pending-1
		case <-stop:
			stop, deadline = nil, time.After(stopGrace)
		case <-deadline:
			return errors.Join(append(all, errors.New("the output streams did not end after the stop request"))...)
		}
	}
	return errors.Join(all...)
}

// stopGrace is how long Keep waits for the streams after a stop request
// (the shim kills the keeper after 10 s).
const stopGrace = time.Second
