package abi

import "encoding/binary"

// EventRecord is one record of the event descriptor (also what
// object_call hands back for an event its caller runs).
type EventRecord struct {
	Kind   EventKind
	Event  Handle // 0 for EventDrop
	Object Handle // 0 for a Worker event
	Arg    uint32 // a handle, or the retry count of an alarm
}

// Put writes r to rec, which holds at least EventRecordSize bytes: four
// little-endian u32s in field order.
func (r EventRecord) Put(rec []byte) {
	binary.LittleEndian.PutUint32(rec[0:], uint32(r.Kind))
	binary.LittleEndian.PutUint32(rec[4:], uint32(r.Event))
	binary.LittleEndian.PutUint32(rec[8:], uint32(r.Object))
	binary.LittleEndian.PutUint32(rec[12:], r.Arg)
}

// ParseEventRecord reads the record Put wrote to rec.
func ParseEventRecord(rec []byte) EventRecord {
	return EventRecord{
		Kind:   EventKind(binary.LittleEndian.Uint32(rec[0:])),
		Event:  Handle(binary.LittleEndian.Uint32(rec[4:])),
		Object: Handle(binary.LittleEndian.Uint32(rec[8:])),
		Arg:    binary.LittleEndian.Uint32(rec[12:]),
	}
}
