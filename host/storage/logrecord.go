package storage

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
)

// A segment begins with a header: segmentMagic and the format's version (4
// bytes little-endian), padded to segmentHeaderBytes. A segment without it
// is of the first format (version 1, see parseRecordsV1), which a log
// written before version 2 may still hold after a crash.
//
// Then records. A record (version 2) is its head and the commit's WAL
// frames as they are in the WAL. The head is two CRC-32Cs, 4 bytes
// little-endian each: of the head after them, and of the whole record
// after them; then the segment's number (8 bytes), the record's length
// (4), the database's incarnation (4), the commit's number (8), the page
// size (4), the length of the database's path relative to the log's root
// (2) and the path. All numbers are little-endian.
//
// The segment's number tells a record from those a recycled segment held
// in its use before, past what was written since: the first record whose
// head is whole but names another segment is the end of the segment's
// records, so recovery does not read the rest of the file. (Another, not
// only an earlier: numbers begin at the time a log opens, and a clock set
// back between gives a segment a smaller number than its file's use
// before.) The head's own
// CRC makes its length, and so the next record, known when only the
// frames are damaged, and whose commit was lost (see replayInto).
const (
	segmentMagic       = "wharfLOG"
	segmentVersion     = 2
	segmentHeaderBytes = 16
	recordHeadBytes    = 38 // the head before its path
)

// segmentHeader is the header a segment of this format begins with.
var segmentHeader = func() []byte {
	h := make([]byte, segmentHeaderBytes)
	copy(h, segmentMagic)
	binary.LittleEndian.PutUint32(h[len(segmentMagic):], segmentVersion)
	return h
}()

// appendRecord appends a record to b, its segment's number and CRCs left
// for sealRecords.
func appendRecord(b []byte, rel string, incarnation uint32, seq uint64, pageSize int, frames []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, 20)...) // the CRCs, the segment's number, the length
	b = binary.LittleEndian.AppendUint32(b, incarnation)
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = binary.LittleEndian.AppendUint32(b, uint32(pageSize))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(rel)))
	b = append(b, rel...)
	b = append(b, frames...)
	binary.LittleEndian.PutUint32(b[start+16:], uint32(len(b)-start))
	return b
}

// castagnoli is the CRC of each record.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealRecords sets the segment's number, num, and the CRCs of each record
// in b.
func sealRecords(b []byte, num uint64) {
	for len(b) >= recordHeadBytes {
		n := int(binary.LittleEndian.Uint32(b[16:]))
		headEnd := recordHeadBytes + int(binary.LittleEndian.Uint16(b[36:]))
		binary.LittleEndian.PutUint64(b[8:], num)
		head := crc32.Checksum(b[8:headEnd], castagnoli)
		binary.LittleEndian.PutUint32(b, head)
		binary.LittleEndian.PutUint32(b[4:], crc32.Update(head, castagnoli, b[headEnd:n]))
		b = b[n:]
	}
}

// logRecord is one commit read back from the log.
type logRecord struct {
	rel         string
	incarnation uint32
	seq         uint64
	pageSize    int
	frames      []walFrame
	// damaged: the record's frames are damaged (its head is whole), so
	// its commit is lost; it has no frames.
	damaged bool
}

// parseRecords reads the records of segment num, up to the end of what the
// log's last sync wrote, and says where it stopped reading (end): at the
// first record of another use of a recycled segment, or the end of
// data. What is not a record with a whole head is passed over byte by byte
// up to the next one, so a damaged length does not hide the records after
// it. damaged counts the records passed over that a valid record follows
// (at least one per damaged stretch): damage inside the log, not its torn
// end, whose commits are lost. A record whose head is whole but frames
// damaged is among records (damaged) when a valid record follows, so that
// the database missing its commit is not opened as if it had none.
//
// A segment whose header is damaged is read as of the first format, and if
// it holds none of its records, as of this one past the header, which is
// then one damaged record: a damaged header does not hide whole records.
func parseRecords(num uint64, data []byte) (records []logRecord, damaged, end int) {
	if !bytes.HasPrefix(data, segmentHeader) {
		records, damaged = parseRecordsV1(num, data)
		if len(records) == 0 && len(data) > segmentHeaderBytes {
			if v2, damaged, end := parseRecordsV2(num, data); len(v2) > 0 {
				return v2, damaged + 1, end
			}
		}
		return records, damaged, len(data)
	}
	return parseRecordsV2(num, data)
}

// parseRecordsV2 is parseRecords for a segment of this format, its header
// not checked.
func parseRecordsV2(num uint64, data []byte) (records []logRecord, damaged, end int) {
	passed, stretch := 0, false
	var lost []logRecord // records with a whole head but damaged frames since the last valid one
	off := segmentHeaderBytes
	for ; len(data)-off >= recordHeadBytes; off++ {
		rec, headEnd, shaped := recordAt(data[off:])
		if shaped {
			head := crc32.Checksum(rec[8:headEnd], castagnoli)
			if head == binary.LittleEndian.Uint32(rec) {
				switch n := binary.LittleEndian.Uint64(rec[8:]); {
				case n != num: // the file's use before (earlier, or later if the clock went back): the end
					return records, damaged, off
				default:
					r := decodeRecord(rec[20:headEnd], rec[headEnd:])
					if crc32.Update(head, castagnoli, rec[headEnd:]) == binary.LittleEndian.Uint32(rec[4:]) {
						damaged += passed
						records = append(append(records, lost...), r)
						passed, stretch, lost = 0, false, nil
					} else { // its frames are damaged
						r.frames, r.damaged = nil, true
						lost = append(lost, r)
						passed++
						stretch = false
					}
					off += len(rec) - 1
					continue
				}
			}
		}
		if shaped || !stretch {
			passed++ // a record whose CRC fails, or the start of a damaged stretch
		}
		stretch = true
	}
	return records, damaged, len(data)
}

// recordAt is the record at the start of data and the end of its head, if
// what is there is shaped as one (its CRCs unchecked).
func recordAt(data []byte) (rec []byte, headEnd int, ok bool) {
	n := binary.LittleEndian.Uint32(data[16:])
	headEnd = recordHeadBytes + int(binary.LittleEndian.Uint16(data[36:]))
	if uint64(n) > uint64(len(data)) || int(n) < headEnd || !framesFit(binary.LittleEndian.Uint32(data[32:]), int(n)-headEnd) {
		return nil, 0, false
	}
	return data[:n], headEnd, true
}

// framesFit reports whether a page size is one SQLite has and frames bytes
// are whole frames of it.
func framesFit(pageSize uint32, frames int) bool {
	return pageSize >= 512 && pageSize <= 65536 && pageSize&(pageSize-1) == 0 && frames >= 0 && frames%(walFrameHeaderBytes+int(pageSize)) == 0
}

// decodeRecord reads a record: fixed, its head from the incarnation on
// (shaped as one), and frames.
func decodeRecord(fixed, frames []byte) logRecord {
	r := logRecord{
		incarnation: binary.LittleEndian.Uint32(fixed),
		seq:         binary.LittleEndian.Uint64(fixed[4:]),
		pageSize:    int(binary.LittleEndian.Uint32(fixed[12:])),
		rel:         string(fixed[18:]),
	}
	frameBytes := walFrameHeaderBytes + r.pageSize
	for ; len(frames) > 0; frames = frames[frameBytes:] {
		r.frames = append(r.frames, walFrame{
			pgno:   binary.BigEndian.Uint32(frames),
			dbSize: binary.BigEndian.Uint32(frames[4:]),
			page:   frames[walFrameHeaderBytes:frameBytes],
		})
	}
	return r
}

// The first format (version 1), read from a segment without a header: a
// record is the length of its body and a CRC-32C of the segment's number
// (8 bytes) and the body, both 4 bytes little-endian, then the body: the
// incarnation (4 bytes), the commit's number (8), the page size (4), the
// length of the path (2) and the path, then the frames.
const (
	recordHeaderBytesV1 = 8
	recordFixedBytesV1  = 18
)

// recordCRCV1 is the CRC of a version 1 record's body in segment num.
func recordCRCV1(num uint64, body []byte) uint32 {
	crc := crc32.Update(0, castagnoli, binary.LittleEndian.AppendUint64(nil, num))
	return crc32.Update(crc, castagnoli, body)
}

// parseRecordsV1 is parseRecords for a segment of version 1, which is read
// to its end: past the end of what was written, a recycled segment holds
// its use before, whose CRCs name another number.
func parseRecordsV1(num uint64, data []byte) (records []logRecord, damaged int) {
	passed, stretch := 0, false
	for off := 0; len(data)-off >= recordHeaderBytesV1; {
		body, ok := recordBodyV1(data[off:])
		if ok && recordCRCV1(num, body) == binary.LittleEndian.Uint32(data[off+4:]) {
			damaged += passed
			passed, stretch = 0, false
			pathEnd := recordFixedBytesV1 + int(binary.LittleEndian.Uint16(body[16:]))
			records = append(records, decodeRecord(body[:pathEnd], body[pathEnd:]))
			off += recordHeaderBytesV1 + len(body)
			continue
		}
		if ok || !stretch {
			passed++
		}
		stretch = true
		off++
	}
	return records, damaged
}

// recordBodyV1 is the body of the version 1 record at the start of data,
// if what is there is shaped as one (its CRC unchecked).
func recordBodyV1(data []byte) ([]byte, bool) {
	n := binary.LittleEndian.Uint32(data)
	if n < recordFixedBytesV1 || uint64(n) > uint64(len(data)-recordHeaderBytesV1) {
		return nil, false
	}
	body := data[recordHeaderBytesV1 : recordHeaderBytesV1+int(n)]
	pathLen := int(binary.LittleEndian.Uint16(body[16:]))
	if !framesFit(binary.LittleEndian.Uint32(body[12:]), len(body)-recordFixedBytesV1-pathLen) {
		return nil, false
	}
	return body, true
}
