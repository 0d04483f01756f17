package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

// attackHost is a crashed host's data directory whose log holds two
// synced batches and a last one: a, b, c; a, b; then a, b, a, c.
type attackHost struct {
	after     string
	copies    string // where recoverFrom copies it, in memory
	segment   string // the log's one segment with records
	lastBatch int    // where the last batch begins in it
	end       int    // where its records end
}

// The values of k after all commits, and after the synced batches only.
var (
	attackFull   = map[string]string{"a": "5", "b": "4", "c": "3"}
	attackSynced = map[string]string{"a": "3", "b": "3", "c": "2"}
)

func newAttackHost(t *testing.T) attackHost {
	t.Helper()
	h := newBatchHost(t)
	h.batch(t, "a", "b", "c")
	h.batch(t, "a", "b")
	h.batch(t, "a", "b", "a", "c")
	after := h.crash(t)
	requireLastBatch(t, after, "a", "b", "a", "c")
	written := writtenRecords(t, after)
	last := written[len(written)-1]
	for _, r := range written {
		require.Equal(t, last.segment, r.segment, "the batches are not in one segment")
	}
	copies, err := testutil.MemoryScratchDir("logattack") // a sync costs nothing there: the loop is thousands of recoveries
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(copies) })
	return attackHost{after, copies, last.segment, written[len(written)-4].off, last.off + last.n}
}

// recoverFrom opens the log of a copy of a's data directory, its segment
// changed by damage, and says each database's k, or "refused".
func (a attackHost) recoverFrom(t *testing.T, damage func(segment []byte) []byte) (map[string]string, Recovery) {
	t.Helper()
	dir, err := os.MkdirTemp(a.copies, "")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	require.NoError(t, os.CopyFS(dir, os.DirFS(a.after)))
	segment := filepath.Join(dir, "log", filepath.Base(a.segment))
	data, err := os.ReadFile(segment)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(segment, damage(data), 0o644))
	l, err := OpenLog(filepath.Join(dir, "log"), dir, LogOptions{})
	require.NoError(t, err)
	defer l.Close()
	values := map[string]string{}
	for name := range attackFull {
		d := Lazy(filepath.Join(dir, name+".sqlite"), l)
		v, _, err := d.Get([]byte("k"))
		switch {
		case errors.Is(err, ErrUnreplayed):
			values[name] = "refused"
		case err != nil:
			t.Fatalf("%s: %v", name, err)
		default:
			require.NoError(t, d.Flush())
			values[name] = string(v)
		}
		require.NoError(t, d.Close())
	}
	return values, l.Recovery()
}

// requireTornOnly checks values after damage to the last batch only: each
// database at a value between its synced and its full one, none refused,
// no damage counted inside the log.
func requireTornOnly(t *testing.T, what string, values map[string]string, r Recovery) {
	t.Helper()
	require.Zero(t, r.Damaged, "%s: damage of the last batch counted", what)
	for name, v := range values {
		require.True(t, v >= attackSynced[name] && v <= attackFull[name], "%s: %s=%s, not between %s and %s", what, name, v, attackSynced[name], attackFull[name])
	}
}

// TestLogAttackFlipsAndTruncations flips a bit at byte positions all over
// the segment (every byte of the header and the heads, frame bytes at a
// stride), truncates it every 17 bytes of its last batch and zeroes each
// of that batch's pages (written in any order): damage in the synced
// batches refuses the database whose commit it hit or leaves all at their
// full values; damage in the last batch leaves each database between its
// synced and full values, never refused, and counts no damage.
func TestLogAttackFlipsAndTruncations(t *testing.T) {
	a := newAttackHost(t)
	heads := map[int]bool{}
	for _, r := range writtenRecords(t, a.after) {
		for i := range recordHeadBytes + 2 {
			heads[r.off+i] = true
		}
	}
	for at := 0; at < a.end; at++ {
		if !heads[at] && at >= segmentHeaderBytes && at%401 != 0 {
			continue
		}
		values, r := a.recoverFrom(t, func(b []byte) []byte { b[at] ^= 1 << (at % 8); return b })
		what := fmt.Sprintf("bit flipped at %d", at)
		if at >= a.lastBatch {
			requireTornOnly(t, what, values, r)
			continue
		}
		for name, v := range values {
			require.True(t, v == attackFull[name] || v == "refused", "%s (synced batch): %s=%s, want %s or refused", what, name, v, attackFull[name])
		}
	}
	for at := a.lastBatch; at < a.end; at += 17 {
		values, r := a.recoverFrom(t, func(b []byte) []byte { return b[:at] })
		requireTornOnly(t, fmt.Sprintf("truncated at %d", at), values, r)
	}
	for page := a.lastBatch &^ 4095; page < a.end; page += 4096 { // a page of the last batch never written
		from := max(page, a.lastBatch)
		values, r := a.recoverFrom(t, func(b []byte) []byte { clear(b[from:min(page+4096, len(b))]); return b })
		requireTornOnly(t, fmt.Sprintf("zeroed from %d to the page's end", from), values, r)
	}
}

// TestLogABatchFieldOutOfItsBatchIsNotTrusted: the last record's head,
// whole (its CRCs sealed again), says its batch begins where no batch of
// the records after it could: before the header, inside a record, at the
// start of a batch whose later records say another. Recovery does not
// read the synced batches before its own as unsynced on its word (their
// damage would be dropped, not refused).
func TestLogABatchFieldOutOfItsBatchIsNotTrusted(t *testing.T) {
	b, starts := segmentOfBatches([][]uint64{{1, 2}, {3, 4}})
	last := starts[3]
	for name, batch := range map[string]int{
		"zero":                     0,
		"in the header":            segmentHeaderBytes / 2,
		"the first batch":          starts[0],
		"the first batch's second": starts[1],
		"inside a record":          starts[1] + 10,
		"inside its own batch":     starts[2] + 10,
	} {
		t.Run(name, func(t *testing.T) {
			data := slices.Clone(b)
			sealRecords(data[last:], 9, int64(batch))
			records, _, _ := parseRecords(9, data)
			require.Len(t, records, 4)
			assert.False(t, records[0].unsynced, "a record of the synced batch is read as unsynced")
			assert.False(t, records[1].unsynced, "a record of the synced batch is read as unsynced")
			assert.True(t, records[3].unsynced)
		})
	}
}
