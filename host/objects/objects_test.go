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
	})
	assert.Regexp(t, `msg="commit log replayed after a crash" segments=2 databases=2 commits=4 dropped=3 `, logs.String())
	assert.Regexp(t, `(?s)msg="an object's commits in the commit log's last batch, torn by the crash before it was synced \(none acknowledged\), were dropped from its first damaged or missing one" file=/data/objects/Box/a.sqlite commits=2\n`+
		`.*msg="an object's commits .*" file=/data/objects/Box/b.sqlite commits=1\n`, logs.String())
}
