package storage

import (
	"encoding/binary"
	"hash/crc32"
)

// A record of the commit log is the length of its body and a CRC-32C of
// the segment's number (8 bytes) and the body, both 4 bytes little-endian,
// then the body: the database's incarnation (4 bytes), the commit's number
// (8), the page size (4), the length of the database's path relative to
// the log's root (2) and the path, then the commit's WAL frames as they
// are in the WAL. The segment's number in the CRC tells a record from one
// a recycled segment held before.
const recordHeaderBytes = 8

// appendRecord appends a record to b, its CRC left for sealRecords.
func appendRecord(b []byte, rel string, incarnation uint32, seq uint64, pageSize int, frames []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, recordHeaderBytes)...)
	b = binary.LittleEndian.AppendUint32(b, incarnation)
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = binary.LittleEndian.AppendUint32(b, uint32(pageSize))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(rel)))
	b = append(b, rel...)
	b = append(b, frames...)
	binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start-recordHeaderBytes))
	return b
}

// castagnoli is the CRC of each record.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// recordCRC is the CRC of a record's body in segment num.
func recordCRC(num uint64, body []byte) uint32 {
	crc := crc32.Update(0, castagnoli, binary.LittleEndian.AppendUint64(nil, num))
	return crc32.Update(crc, castagnoli, body)
}

// sealRecords sets the CRC of each record in b for segment num.
func sealRecords(b []byte, num uint64) {
	for len(b) >= recordHeaderBytes {
		n := int(binary.LittleEndian.Uint32(b))
		binary.LittleEndian.PutUint32(b[4:], recordCRC(num, b[recordHeaderBytes:recordHeaderBytes+n]))
		b = b[recordHeaderBytes+n:]
	}
}

// logRecord is one commit read back from the log.
type logRecord struct {
	rel         string
	incarnation uint32
	seq         uint64
	pageSize    int
	frames      []walFrame
}

// parseRecords reads the records of segment num, up to the end of what the
// log's last sync wrote. What is not a valid record (its CRC fails, or it
// does not fit) is passed over byte by byte up to the next valid record,
// so a damaged length does not hide the records after it: past the end,
// a recycled segment holds its use before, whose CRCs name another number.
// damaged counts the records passed over that a valid record follows (at
// least one per damaged stretch): damage inside the log, not its torn end,
// whose commits are lost.
func parseRecords(num uint64, data []byte) (records []logRecord, damaged int) {
	passed, stretch := 0, false
	for off := 0; len(data)-off >= recordHeaderBytes; {
		body, ok := recordBody(data[off:])
		if ok && recordCRC(num, body) == binary.LittleEndian.Uint32(data[off+4:]) {
			damaged += passed
			passed, stretch = 0, false
			records = append(records, decodeRecord(body))
			off += recordHeaderBytes + len(body)
			continue
		}
		if ok || !stretch {
			passed++ // a record whose CRC fails, or the start of a damaged stretch
		}
		stretch = true
		off++
	}
	return records, damaged
}

// recordBody is the body of the record at the start of data, if what is
// there is shaped as one (its CRC unchecked).
func recordBody(data []byte) ([]byte, bool) {
	n := binary.LittleEndian.Uint32(data)
	if n < recordFixedBytes || uint64(n) > uint64(len(data)-recordHeaderBytes) {
		return nil, false
	}
	body := data[recordHeaderBytes : recordHeaderBytes+int(n)]
	pageSize := binary.LittleEndian.Uint32(body[12:])
	pathLen := int(binary.LittleEndian.Uint16(body[16:]))
	frames := len(body) - recordFixedBytes - pathLen
	if pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 || frames < 0 || frames%(walFrameHeaderBytes+int(pageSize)) != 0 {
		return nil, false
	}
	return body, true
}

// recordFixedBytes is the part of a record's body before its path.
const recordFixedBytes = 18

// decodeRecord reads a record's body, which recordBody found shaped as one.
func decodeRecord(body []byte) logRecord {
	r := logRecord{
		incarnation: binary.LittleEndian.Uint32(body),
		seq:         binary.LittleEndian.Uint64(body[4:]),
		pageSize:    int(binary.LittleEndian.Uint32(body[12:])),
	}
	pathLen := int(binary.LittleEndian.Uint16(body[16:]))
	rest := body[recordFixedBytes:]
	frameBytes := walFrameHeaderBytes + r.pageSize
	r.rel, rest = string(rest[:pathLen]), rest[pathLen:]
	for ; len(rest) > 0; rest = rest[frameBytes:] {
		r.frames = append(r.frames, walFrame{
			pgno:   binary.BigEndian.Uint32(rest),
			dbSize: binary.BigEndian.Uint32(rest[4:]),
			page:   rest[walFrameHeaderBytes:frameBytes],
		})
	}
	return r
}
