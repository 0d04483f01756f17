// Package filekind names, for messages, the kind of a file that is not a
// regular one.
package filekind

import "io/fs"

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
