package abi

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestEventRecordRoundTrip: a record reads back as written, in the
// documented layout (four little-endian u32s).
func TestEventRecordRoundTrip(t *testing.T) {
	r := EventRecord{Kind: EventAlarm, Event: 7, Object: 0x01020304, Arg: 3}
	var rec [EventRecordSize]byte
	r.Put(rec[:])
	assert.Equal(t, []byte{3, 0, 0, 0, 7, 0, 0, 0, 4, 3, 2, 1, 3, 0, 0, 0}, rec[:])
	assert.Equal(t, r, ParseEventRecord(rec[:]))
}
