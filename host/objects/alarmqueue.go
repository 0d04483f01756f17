package objects

import (
	"container/heap"
	"time"
)

// alarmQueue holds the alarms waiting for their time (due, and not
// running), earliest first: a heap, so that setting, removing or firing
// one costs O(log n) and finding the next one O(1), however many wait.
type alarmQueue struct {
	items []queuedAlarm
	// place is where each alarm is in items.
	place map[alarmKey]int
}

type queuedAlarm struct {
	k  alarmKey
	at time.Time
}

// put queues k at at, or moves it there if it is queued.
func (q *alarmQueue) put(k alarmKey, at time.Time) {
	if i, ok := q.place[k]; ok {
		q.items[i].at = at
		heap.Fix(q, i)
		return
	}
	heap.Push(q, queuedAlarm{k, at})
}

// drop takes k out of the queue, if it is there.
func (q *alarmQueue) drop(k alarmKey) {
	if i, ok := q.place[k]; ok {
		heap.Remove(q, i)
	}
}

// first is the earliest alarm queued; ok is false if there is none.
func (q *alarmQueue) first() (k alarmKey, at time.Time, ok bool) {
	if len(q.items) == 0 {
		return alarmKey{}, time.Time{}, false
	}
	return q.items[0].k, q.items[0].at, true
}

// The heap.Interface of the queue; use put, drop and first.

func (q *alarmQueue) Len() int           { return len(q.items) }
func (q *alarmQueue) Less(i, j int) bool { return q.items[i].at.Before(q.items[j].at) }

func (q *alarmQueue) Swap(i, j int) {
	q.items[i], q.items[j] = q.items[j], q.items[i]
	q.place[q.items[i].k] = i
	q.place[q.items[j].k] = j
}

func (q *alarmQueue) Push(x any) {
	a := x.(queuedAlarm)
	if q.place == nil {
		q.place = map[alarmKey]int{}
	}
	q.place[a.k] = len(q.items)
	q.items = append(q.items, a)
}

func (q *alarmQueue) Pop() any {
	last := len(q.items) - 1
	a := q.items[last]
	q.items = q.items[:last]
	delete(q.place, a.k)
	return a
}
