package cluster_test

import (
	"slices"
	"sync"
	"time"
)

// counterLoad is concurrent clients incrementing counters until ended:
// client i's j-th increment goes to names[(i+j)%len(names)].
type counterLoad struct {
	mu    sync.Mutex
	acked map[string][]int64 // the values increments returned, per counter
	errs  []error
	stop  chan struct{}
	wg    sync.WaitGroup
}

// startLoad runs clients that call increment(client, name) in a loop.
func startLoad(clients int, names []string, increment func(client int, name string) (int64, error)) *counterLoad {
	l := &counterLoad{acked: map[string][]int64{}, stop: make(chan struct{})}
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for j := 0; ; j++ {
				select {
				case <-l.stop:
					return
				default:
				}
				n := names[(i+j)%len(names)]
				v, err := increment(i, n)
				l.mu.Lock()
				if err != nil {
					l.errs = append(l.errs, err)
				} else {
					l.acked[n] = append(l.acked[n], v)
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// done is how many increments were acknowledged so far.
func (l *counterLoad) done() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, vs := range l.acked {
		n += len(vs)
	}
	return n
}

// waitForMore waits until more than n increments were acknowledged, or
// until timeout.
func (l *counterLoad) waitForMore(n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for l.done() <= n && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
}

// end stops the clients and waits for them.
func (l *counterLoad) end() {
	close(l.stop)
	l.wg.Wait()
}

// sortedAcks returns the acknowledged values of counter name, sorted,
// with first (a value acknowledged before the load) among them.
func (l *counterLoad) sortedAcks(name string, first int64) []int64 {
	vs := append([]int64{first}, l.acked[name]...)
	slices.Sort(vs)
	return vs
}
