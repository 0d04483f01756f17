// Package web is HTTP at a plugin's edges, the parts that need no guest:
// the ingress server a Worker's requests arrive on (bounded by the
// manifest's [limits]), the client of guests' outbound fetches with dials
// bounded by the event that made them, and the codec between HTTP heads
// and the field lists guests read and write. The request and fetch imports
// in package host are thin adapters over it.
package web
