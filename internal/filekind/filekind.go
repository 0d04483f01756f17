// Package filekind names, for messages, the kind of a file that is not a
// regular one.
package filekind

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Of names the kind of file of mode m, which is not a regular file: "a
// directory", "a named pipe", "a socket", "a device", or "not a regular
// file" for another.
func Of(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "not a regular file"
}

// ReadSmall reads the regular file at path, of at most limit bytes; what
// names what it should be, for errors ("a PEM file"). Another kind of file
// is refused before it is read (a named pipe would block the read for
// ever, a device such as /dev/zero would fill the memory), as is a larger
// file.
func ReadSmall(path, what string, limit int64) ([]byte, error) {
	// Not blocking on a named pipe's open, which waits for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is %s, not %s", path, Of(st.Mode()), what)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger (%d bytes) than %s would be (at most %d)", path, st.Size(), what, limit)
	}
	return data, nil
}
