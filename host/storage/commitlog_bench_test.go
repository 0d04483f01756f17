package storage

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/wharfhq/wharf/internal/testutil"
)

// BenchmarkCommitsOfManyDatabases commits one key at a time to 1,000
// databases from 32 goroutines, each commit durable before the next of its
// goroutine, through the commit log; the baseline, in alternating rounds,
// is the same commits each made durable by an fdatasync of its own WAL (as
// before the log).
func BenchmarkCommitsOfManyDatabases(b *testing.B) {
	root := b.TempDir()
	l, err := OpenLog(filepath.Join(root, "log"), root, LogOptions{})
	require.NoError(b, err)
	defer l.Close()
	dbs := make([]*DB, 1000)
	locks := make([]sync.Mutex, len(dbs))
	for i := range dbs {
		dbs[i] = Lazy(filepath.Join(root, fmt.Sprintf("%d.sqlite", i)), l)
		defer dbs[i].Close()
		require.NoError(b, dbs[i].Put([]byte("k"), []byte("0")))
		require.NoError(b, dbs[i].Flush())
	}
	syncOwnWAL := func(d *DB) error {
		if err := d.Commit(); err != nil {
			return err
		}
		return unix.Fdatasync(int(d.walFile.Fd()))
	}
	rate := func(durable func(*DB) error) float64 {
		var n atomic.Int64
		deadline := time.Now().Add(2 * time.Second)
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Go(func() {
				for i := g; time.Now().Before(deadline); i += 7919 {
					k := i % len(dbs)
					locks[k].Lock()
					err := dbs[k].Put([]byte("k"), []byte(fmt.Sprint(i)))
					if err == nil {
						err = durable(dbs[k])
					}
					locks[k].Unlock()
					if err != nil {
						b.Error(err)
						return
					}
					n.Add(1)
				}
			})
		}
		wg.Wait()
		return float64(n.Load()) / 2
	}
	var logged, own []float64
	for range b.N * testutil.BenchRounds {
		logged = append(logged, rate((*DB).Flush))
		own = append(own, rate(syncOwnWAL))
	}
	b.ReportMetric(testutil.Median(logged), "commits/s")
	b.ReportMetric(testutil.Median(own), "own_wal_sync_commits/s")
	b.ReportMetric(testutil.Median(logged)/testutil.Median(own), "ratio")
}
