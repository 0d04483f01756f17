package storage

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"slices"
	"sort"
)

// A segment begins with a header: segmentMagic and the format's version (4
// bytes little-endian), padded to segmentHeaderBytes. A segment without it
// is of the first format (version 1, see parseRecordsV1), which a log
// written before version 2 may still hold after a crash, as it may hold
// one of version 2, read as it was written.
//
// Then records. A record (version 3) is its head and the commit's WAL
// frames as they are in the WAL. The head is two CRC-32Cs, 4 bytes
// little-endian each: of the head after them, and of the whole record
// after them; then the segment's number (8 bytes), the record's length
// (4), where its batch begins in the segment (8: the offset of the first
// record of the one write it was written in); then the commit, laid out
// as a version 1 record's body is: the database's incarnation (4), the
// commit's number (8), the page size (4), the length of the database's
// path relative to the log's root (2) and the path. All numbers are
// little-endian. A record of version 2 has no batch.
//
// The segment's number tells a record from those a recycled segment held
// in its use before, past what was written since: the first record whose
// head is whole but names another segment is the end of the segment's
// records, so recovery does not read the rest of the file. (Another, not
// only an earlier: numbers begin at the time a log opens, and a clock set
// back between gives a segment a smaller number than its file's use
// before.) The head's own CRC makes its length, and so the next record,
// known when only the frames are damaged, and whose commit was lost (see
// replayInto).
//
// The batch tells damage a crash did to the last batch written to a
// segment from damage to the batches before: the log writes a batch and
// syncs it before it writes the next, and begins the next segment once
// that ends, so only a segment's last batch may not have been synced
// (its pages reach the disk in any order; none of its commits was
// acknowledged, or its sync failed).
const (
	segmentMagic       = "wharfLOG"
	segmentVersion     = 3
	segmentHeaderBytes = 16
)

// Where each field of a record's head (versions 2 and 3) begins, and of
// the commit in it (or in a version 1 body).
const (
	headCRCAt   = 0
	recordCRCAt = 4
	segmentAt   = 8
	lengthAt    = 16
	batchAt     = 20 // version 3

	incarnationAt = 0
	seqAt         = 4
	pageSizeAt    = 12
	pathLengthAt  = 16
	// commitFixedBytes is the commit before its path.
	commitFixedBytes = 18
)

// recordFormat is how a version of the segments with a header lays out
// its records' heads.
type recordFormat struct {
	header []byte // its segment header
	// commitAt is where the commit begins in a head; batched, whether the
	// head says where its batch begins (at batchAt).
	commitAt int
	batched  bool
}

var (
	formatV2 = recordFormat{header: segmentHeaderOf(2), commitAt: batchAt}
	formatV3 = recordFormat{header: segmentHeaderOf(segmentVersion), commitAt: batchAt + 8, batched: true}
	// formats are the versions with a header, newest first.
	formats = []recordFormat{formatV3, formatV2}
)

// segmentHeader is the header a segment of this format begins with.
var segmentHeader = formatV3.header

// recordHeadBytes is the head of this format before its path.
var recordHeadBytes = formatV3.headBytes()

// segmentHeaderOf is the segment header of version.
func segmentHeaderOf(version uint32) []byte {
	h := make([]byte, segmentHeaderBytes)
	copy(h, segmentMagic)
	binary.LittleEndian.PutUint32(h[len(segmentMagic):], version)
	return h
}

// headBytes is a head of f before its path.
func (f recordFormat) headBytes() int { return f.commitAt + commitFixedBytes }

// headEnd is where the head of f at the start of b ends (b holds at least
// headBytes).
func (f recordFormat) headEnd(b []byte) int {
	return f.headBytes() + int(binary.LittleEndian.Uint16(b[f.commitAt+pathLengthAt:]))
}

// appendRecord appends a record to b, its segment's number, its batch and
// its CRCs left for sealRecords.
func appendRecord(b []byte, rel string, incarnation uint32, seq uint64, pageSize int, frames []byte) []byte {
	start := len(b)
	b = append(b, make([]byte, formatV3.commitAt)...)
	b = binary.LittleEndian.AppendUint32(b, incarnation)
	b = binary.LittleEndian.AppendUint64(b, seq)
	b = binary.LittleEndian.AppendUint32(b, uint32(pageSize))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(rel)))
	b = append(b, rel...)
	b = append(b, frames...)
	binary.LittleEndian.PutUint32(b[start+lengthAt:], uint32(len(b)-start))
	return b
}

// castagnoli is the CRC of each record.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealRecords sets the segment's number, num, where the batch begins in
// it, batch, and the CRCs of each record in b, the batch.
func sealRecords(b []byte, num uint64, batch int64) {
	for len(b) >= recordHeadBytes {
		n := int(binary.LittleEndian.Uint32(b[lengthAt:]))
		headEnd := formatV3.headEnd(b)
		binary.LittleEndian.PutUint64(b[segmentAt:], num)
		binary.LittleEndian.PutUint64(b[batchAt:], uint64(batch))
		head := crc32.Checksum(b[segmentAt:headEnd], castagnoli)
		binary.LittleEndian.PutUint32(b[headCRCAt:], head)
		binary.LittleEndian.PutUint32(b[recordCRCAt:], crc32.Update(head, castagnoli, b[headEnd:n]))
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
	// segment is the number of its segment; unsynced, that it is of the
	// segment's last batch, which may not have been synced.
	segment  uint64
	unsynced bool
	// damageBefore counts the damaged stretches of synced batches before
	// it in the log that hold no readable record: a commit missing before
	// it may have been in one.
	damageBefore int
}

// parseRecords reads the records of segment num, up to the end of what the
// log's last sync wrote, and says where it stopped reading (end): at the
// first record of another use of a recycled segment, or the end of
// data. What is not a record with a whole head is passed over byte by byte
// up to the next one, so a damaged length does not hide the records after
// it.
//
// What follows the last valid record is the torn end: none of it is a
// record or damage. The batch of that record is the segment's last
// (version 3): its records are unsynced, and its damage may be the
// crash's. damaged counts the damage before it (at least one per damaged
// stretch): damage inside the log, whose commits are lost. A record whose head is whole but frames damaged
// is among records (damaged) when a valid record follows, so that the
// database missing its commit is not opened as if it had none. (A segment
// of version 2 says no batch: its damage is counted up to its last valid
// record.)
//
// A segment whose header is damaged is read as of the first format, and if
// it holds none of its records, as of each later one past the header,
// which is then damaged too, unless the records are all of the last batch
// (the header is synced with the first): a damaged header does not hide
// whole records. So is a segment whose header names a version (one bit
// tells 2 from 3) but which holds none of its records to its end.
func parseRecords(num uint64, data []byte) (records []logRecord, damaged, end int) {
	others := formats
	if i := slices.IndexFunc(formats, func(f recordFormat) bool { return bytes.HasPrefix(data, f.header) }); i >= 0 {
		if records, damaged, end = formats[i].parse(num, data); len(records) > 0 || end < len(data) {
			return records, damaged, end
		}
		others = slices.Delete(slices.Clone(formats), i, i+1)
	} else if records, damaged = parseRecordsV1(num, data); len(records) > 0 || len(data) <= segmentHeaderBytes {
		return records, damaged, len(data)
	}
	for _, f := range others {
		if records, damaged, end := f.parse(num, data); len(records) > 0 {
			if !records[0].unsynced {
				damaged++
			}
			return records, damaged, end
		}
	}
	return nil, 0, len(data)
}

// parse is parseRecords for a segment of format f, its header not checked.
func (f recordFormat) parse(num uint64, data []byte) (records []logRecord, damaged, end int) {
	var (
		starts    []int // where each of records begins
		stretches []int // where each damaged stretch begins, and each record shaped but with a damaged head in one
		stretch   bool
	)
	end = len(data)
	for off := segmentHeaderBytes; len(data)-off >= f.headBytes(); off++ {
		rec, headEnd, shaped := f.recordAt(data[off:])
		if shaped {
			head := crc32.Checksum(rec[segmentAt:headEnd], castagnoli)
			if head == binary.LittleEndian.Uint32(rec[headCRCAt:]) {
				if binary.LittleEndian.Uint64(rec[segmentAt:]) != num { // the file's use before (earlier, or later if the clock went back): the end
					end = off
					break
				}
				r := decodeRecord(rec[f.commitAt:headEnd], rec[headEnd:])
				r.segment = num
				if crc32.Update(head, castagnoli, rec[headEnd:]) != binary.LittleEndian.Uint32(rec[recordCRCAt:]) {
					r.frames, r.damaged = nil, true // its frames are damaged
				}
				records, starts = append(records, r), append(starts, off)
				stretch = false
				off += len(rec) - 1
				continue
			}
		}
		if shaped || !stretch {
			stretches = append(stretches, off)
		}
		stretch = true
	}
	last := len(records) - 1
	for last >= 0 && records[last].damaged {
		last--
	}
	if last < 0 {
		return nil, 0, end
	}
	records = records[:last+1]
	unsynced := starts[last] // where the last batch begins
	if f.batched {
		unsynced = lastBatch(data, starts[:last+1])
	}
	stretches = stretches[:sort.SearchInts(stretches, unsynced)] // those of synced batches
	damaged = len(stretches)
	for i := range records {
		r := &records[i]
		r.unsynced = f.batched && starts[i] >= unsynced
		r.damageBefore = sort.SearchInts(stretches, starts[i])
		if r.damaged && !r.unsynced {
			damaged++
		}
	}
	return records, damaged, end
}

// lastBatch is where the batch of the last of the version 3 records that
// begin at starts in data begins, as its head says, if the records agree:
// those from there say the same, and none before runs into it. Else (a
// head whole but wrong) only the last record is read as unsynced, so that
// damage in batches synced before is not dropped on its word.
func lastBatch(data []byte, starts []int) int {
	batchOf := func(start int) int64 { return int64(binary.LittleEndian.Uint64(data[start+batchAt:])) }
	last := starts[len(starts)-1]
	batch := batchOf(last)
	if batch < segmentHeaderBytes || batch > int64(last) {
		return last
	}
	for _, start := range starts {
		end := int64(start) + int64(binary.LittleEndian.Uint32(data[start+lengthAt:]))
		if int64(start) < batch && end > batch || int64(start) >= batch && batchOf(start) != batch {
			return last
		}
	}
	return int(batch)
}

// recordAt is the record of f at the start of data and the end of its
// head, if what is there is shaped as one (its CRCs unchecked).
func (f recordFormat) recordAt(data []byte) (rec []byte, headEnd int, ok bool) {
	n := binary.LittleEndian.Uint32(data[lengthAt:])
	headEnd = f.headEnd(data)
	if uint64(n) > uint64(len(data)) || int(n) < headEnd || !framesFit(binary.LittleEndian.Uint32(data[f.commitAt+pageSizeAt:]), int(n)-headEnd) {
		return nil, 0, false
	}
	return data[:n], headEnd, true
}

// framesFit reports whether a page size is one SQLite has and frames bytes
// are whole frames of it.
func framesFit(pageSize uint32, frames int) bool {
	return pageSize >= 512 && pageSize <= 65536 && pageSize&(pageSize-1) == 0 && frames >= 0 && frames%(walFrameHeaderBytes+int(pageSize)) == 0
}

// decodeRecord reads a record: commit, its commit with its path (shaped as
// one), and frames.
func decodeRecord(commit, frames []byte) logRecord {
	r := logRecord{
		incarnation: binary.LittleEndian.Uint32(commit[incarnationAt:]),
		seq:         binary.LittleEndian.Uint64(commit[seqAt:]),
		pageSize:    int(binary.LittleEndian.Uint32(commit[pageSizeAt:])),
		rel:         string(commit[commitFixedBytes:]),
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
// commit (incarnationAt and on), then the frames.
const recordHeaderBytesV1 = 8

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
			pathEnd := commitFixedBytes + int(binary.LittleEndian.Uint16(body[pathLengthAt:]))
			r := decodeRecord(body[:pathEnd], body[pathEnd:])
			r.segment, r.damageBefore = num, damaged
			records = append(records, r)
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
	if n < commitFixedBytes || uint64(n) > uint64(len(data)-recordHeaderBytesV1) {
		return nil, false
	}
	body := data[recordHeaderBytesV1 : recordHeaderBytesV1+int(n)]
	pathLen := int(binary.LittleEndian.Uint16(body[pathLengthAt:]))
	if !framesFit(binary.LittleEndian.Uint32(body[pageSizeAt:]), len(body)-commitFixedBytes-pathLen) {
		return nil, false
	}
	return body, true
}
