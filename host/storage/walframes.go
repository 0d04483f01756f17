package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// SQLite's WAL format (https://sqlite.org/fileformat.html#the_write_ahead_log):
// a 32-byte header, whose bytes 8–11 are the page size and 16–23 the salts
// of the WAL's current generation, then frames of a 24-byte header (the
// page number, the database's size in pages after a commit frame or 0, the
// salts) and the page. Each checkpoint that empties the WAL begins a new
// generation, with new salts, written over the old frames from the start.
const (
	walHeaderBytes      = 32
	walFrameHeaderBytes = 24
)

// walFrame is one page a commit wrote, read back from the log.
type walFrame struct {
	pgno, dbSize uint32
	page         []byte
}

// walPosition is where a database's next commit begins in its WAL: frame
// next (from 0) of the generation with these salts.
type walPosition struct {
	salts [8]byte
	next  int64
}

// readCommits appends to buf the frames of the commits made in the WAL
// since pos, as they are in the WAL, and moves pos past them: every frame
// of the current generation from pos to its last commit frame. When the
// generation has changed since, the frames are the whole of the new one.
func readCommits(wal *os.File, pos *walPosition, buf []byte) (pageSize int, frames []byte, err error) {
	var hdr [walHeaderBytes]byte
	if _, err := wal.ReadAt(hdr[:], 0); err != nil {
		return 0, buf, fmt.Errorf("reading %s: %w", wal.Name(), err)
	}
	pageSize = int(binary.BigEndian.Uint32(hdr[8:12]))
	if pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return 0, buf, fmt.Errorf("reading %s: page size %d", wal.Name(), pageSize)
	}
	if !bytes.Equal(hdr[16:24], pos.salts[:]) {
		copy(pos.salts[:], hdr[16:24])
		pos.next = 0
	}
	frameBytes := walFrameHeaderBytes + pageSize
	const chunkFrames = 4
	start, committed := len(buf), len(buf) // committed: the end of the last commit frame
	for at := pos.next; ; at += chunkFrames {
		read := len(buf)
		buf = slices.Grow(buf, chunkFrames*frameBytes)[:read+chunkFrames*frameBytes]
		n, err := wal.ReadAt(buf[read:], walHeaderBytes+at*int64(frameBytes))
		if err != nil && !errors.Is(err, io.EOF) {
			return 0, buf[:start], fmt.Errorf("reading %s: %w", wal.Name(), err)
		}
		ended := n < chunkFrames*frameBytes
		for f := buf[read : read+n]; len(f) >= frameBytes; f = f[frameBytes:] {
			if !bytes.Equal(f[8:16], pos.salts[:]) {
				ended = true // an older generation's frame: the current one ends
				break
			}
			if binary.BigEndian.Uint32(f[4:8]) != 0 {
				committed = read + n - len(f) + frameBytes
			}
		}
		if ended {
			break
		}
	}
	pos.next += int64((committed - start) / frameBytes)
	return pageSize, buf[:committed], nil
}
