package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"
)

// SQLite's WAL format (https://sqlite.org/fileformat.html#the_write_ahead_log):
// a 32-byte header, whose bytes 0–3 are a magic number that says the byte
// order of the checksums, 8–11 the page size, 16–23 the salts of the WAL's
// current generation and 24–31 the header's checksum; then frames of a
// 24-byte header (the page number, the database's size in pages after a
// commit frame or 0, the salts, the checksum) and the page. Each frame's
// checksum goes on from the one before (the header's for the first), over
// its header's first 8 bytes and its page. Each checkpoint that empties the
// WAL begins a new generation, with new salts, written over the old frames
// from the start; what follows the last valid frame (a frame of an older
// generation, or one torn by a crash) fails the salts or the checksum.
const (
	walHeaderBytes      = 32
	walFrameHeaderBytes = 24
	walMagicBigEndian   = 0x377f0683
)

// walFrame is one page a commit wrote, read back from the log.
type walFrame struct {
	pgno, dbSize uint32
	page         []byte
}

// walPosition is where a database's next commit begins in its WAL: frame
// next (from 0) of the generation with these salts, whose frames before it
// end with checksum sum.
type walPosition struct {
	salts [8]byte
	next  int64
	sum   walChecksum
}

// walChecksum is SQLite's running WAL checksum.
type walChecksum struct{ s0, s1 uint32 }

// add goes on over data, whose 32-bit words are in order's byte order.
// Each order has a loop of its own: through the interface, every word
// cost a call (2% of wharf's CPU with 1,000 objects committing).
func (c walChecksum) add(order binary.ByteOrder, data []byte) walChecksum {
	if order == binary.BigEndian {
		for i := 0; i+8 <= len(data); i += 8 {
			c.s0 += binary.BigEndian.Uint32(data[i:]) + c.s1
			c.s1 += binary.BigEndian.Uint32(data[i+4:]) + c.s0
		}
		return c
	}
	for i := 0; i+8 <= len(data); i += 8 {
		c.s0 += binary.LittleEndian.Uint32(data[i:]) + c.s1
		c.s1 += binary.LittleEndian.Uint32(data[i+4:]) + c.s0
	}
	return c
}

// pread is one pread(2): one syscall, not os.File.ReadAt, which reads
// again after a short read to be told of the end (see readCommits).
var pread = unix.Pread

// readsShort reports whether reads of f may end short of its end before
// they reach it (network and FUSE filesystems do): true of every
// filesystem but the local ones known to read a regular file whole.
func readsShort(f *os.File) bool {
	var st unix.Statfs_t
	if unix.Fstatfs(int(f.Fd()), &st) != nil {
		return true
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.TMPFS_MAGIC, unix.OVERLAYFS_SUPER_MAGIC, unix.F2FS_SUPER_MAGIC:
		return false
	}
	return true
}

// readCommits appends to buf the frames of the commits made in the WAL
// since pos, as they are in the WAL, and moves pos past them: every valid
// frame of the current generation from pos to its last commit frame. When
// the generation has changed since, the frames are the whole of the new
// one. A read short of what it asked is the WAL's end unless short reads
// come sooner there (readsShort): then only a read of nothing is.
func readCommits(wal *os.File, short bool, pos *walPosition, buf []byte) (pageSize int, frames []byte, err error) {
	var hdr [walHeaderBytes]byte
	if _, err := wal.ReadAt(hdr[:], 0); err != nil {
		return 0, buf, fmt.Errorf("reading %s: %w", wal.Name(), err)
	}
	pageSize = int(binary.BigEndian.Uint32(hdr[8:12]))
	if pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return 0, buf, fmt.Errorf("reading %s: page size %d", wal.Name(), pageSize)
	}
	var order binary.ByteOrder = binary.LittleEndian
	if binary.BigEndian.Uint32(hdr[0:4]) == walMagicBigEndian {
		order = binary.BigEndian
	}
	if !bytes.Equal(hdr[16:24], pos.salts[:]) {
		copy(pos.salts[:], hdr[16:24])
		pos.next = 0
		pos.sum = walChecksum{binary.BigEndian.Uint32(hdr[24:28]), binary.BigEndian.Uint32(hdr[28:32])}
	}
	frameBytes := walFrameHeaderBytes + pageSize
	const chunk = 4 * 4096
	start, committed := len(buf), len(buf) // committed: the end of the last commit frame
	checked := start                       // the end of the frames checked
	sum, committedSum := pos.sum, pos.sum
	for at := walHeaderBytes + pos.next*int64(frameBytes); ; {
		read := len(buf)
		buf = slices.Grow(buf, chunk+frameBytes)[:read+chunk+frameBytes]
		n, err := pread(int(wal.Fd()), buf[read:], at)
		if err != nil {
			return 0, buf[:start], fmt.Errorf("reading %s: %w", wal.Name(), err)
		}
		buf, at = buf[:read+n], at+int64(n)
		ended := n == 0
		for ; !ended && len(buf)-checked >= frameBytes; checked += frameBytes {
			f := buf[checked : checked+frameBytes]
			sum = sum.add(order, f[:8]).add(order, f[walFrameHeaderBytes:])
			if !bytes.Equal(f[8:16], pos.salts[:]) || sum.s0 != binary.BigEndian.Uint32(f[16:20]) || sum.s1 != binary.BigEndian.Uint32(f[20:24]) {
				ended = true // the current generation's valid frames end
				break
			}
			if binary.BigEndian.Uint32(f[4:8]) != 0 {
				committed, committedSum = checked+frameBytes, sum
			}
		}
		if ended || n < chunk+frameBytes && !short {
			break
		}
	}
	pos.next += int64((committed - start) / frameBytes)
	pos.sum = committedSum
	return pageSize, buf[:committed], nil
}
