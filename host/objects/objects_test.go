package objects

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wharfhq/wharf/host/storage"
)

// TestRecoveryLogSaysTheCommitsDroppedFromATornBatch: the start's line on
// the commit log's replay says how many commits of torn batches were
// dropped, and a line per object's database says how many of its.
func TestRecoveryLogSaysTheCommitsDroppedFromATornBatch(t *testing.T) {
	var logs bytes.Buffer
	logRecovery(slog.New(slog.NewTextHandler(&logs, nil)), storage.Recovery{
		Segments: 2, Databases: 2, Commits: 4, Dropped: 3,
		DroppedFrom: map[string]int{"/data/objects/Box/b.sqlite": 1, "/data/objects/Box/a.sqlite": 2},
	}, storage.LogOptions{})
	assert.Regexp(t, `msg="commit log replayed: the last run on this data directory did not stop cleanly \(a crash or a kill\), or the directory was copied while its wharf ran" segments=2 databases=2 commits=4 dropped=3 `, logs.String())
	assert.Regexp(t, `(?s)msg="an object's commits in the commit log's last batch, torn \(by the crash, or by a copy made while it was written\) before it was synced \(none acknowledged\), were dropped from its first damaged or missing one" file=/data/objects/Box/a.sqlite commits=2\n`+
		`.*msg="an object's commits .*" file=/data/objects/Box/b.sqlite commits=1\n`, logs.String())
}

// TestLogRecoveryTellsToLeaveTheAcceptFlagOut: a start with
// --accept-lost-commits, whether it gave commits up or found none lost,
// says to leave the flag out of the next starts: given at every start (a
// unit file keeps it), it gives up a later loss without asking, and the
// start said nothing of it when nothing was lost.
func TestLogRecoveryTellsToLeaveTheAcceptFlagOut(t *testing.T) {
	const leave = "started with --accept-lost-commits: leave it out of the next starts"
	for _, c := range []struct {
		name string
		r    storage.Recovery
		opts storage.LogOptions
		says bool
	}{
		{"nothing lost", storage.Recovery{}, storage.LogOptions{AcceptLostCommits: true}, true},
		{"commits given up", storage.Recovery{Segments: 1, LostFrom: map[string]storage.Lost{"/d/a.sqlite": {From: 3, Through: 5, Why: "damaged"}}},
			storage.LogOptions{AcceptLostCommits: true}, true},
		{"without the flag", storage.Recovery{}, storage.LogOptions{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			logRecovery(slog.New(slog.NewTextHandler(&b, nil)), c.r, c.opts)
			if c.says {
				assert.Contains(t, b.String(), leave)
			} else {
				assert.NotContains(t, b.String(), "accept-lost-commits")
			}
		})
	}
}
