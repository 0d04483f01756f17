// Package objects runs Durable Objects: their namespaces and ids (the
// codec that makes and checks them, the book of the names they were made
// from), the delivery of their events one at a time in arrival order with
// group commit, their alarms (an index and scheduler over each object's own
// database), their storage (capped in how many databases are open at once,
// an evicted object's parked for its return), and, in a cluster, their
// placement on one host and the forwarding of their events to it. Objects
// live as values in a plugin's long-running guest instances, which this
// package reaches through Runtime; package host implements it, and its
// imports are thin adapters over this package.
package objects
