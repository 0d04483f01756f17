// Package guestio holds the I/O primitives a guest's handles refer to:
// byte streams that move data between guests and the outside in bounded
// memory (ReadStream, WriteStream, Forward), results that arrive later
// (Pending), wake-ups (Signal) and the handle table that maps the u32
// handles a guest sees to these objects (Table); and how the events a guest
// serves are named (EventID) and how their failures read outside it
// (Failure, StatusOf), for the Worker's events and the objects' alike.
package guestio
