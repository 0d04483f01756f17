package main

import (
	"bytes"
	"database/sql"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testutil"
)

func request(method, url string) (int, string, error) {
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

func serveCounter(t *testing.T, dataDir string) *testutil.Serve {
	dir := filepath.Join(testutil.RepoRoot(), "examples", "counter")
	return testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", dataDir)
}

// TestCounterSurvivesRestart increments through the real wharf binary,
// restarts it, and reads the value back.
func TestCounterSurvivesRestart(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveCounter(t, data)
	for i := 1; i <= 5; i++ {
		code, body, err := request("POST", srv.URL+"/counter/visits")
		require.NoError(t, err)
		require.Equal(t, 200, code, body)
		assert.Equal(t, strconv.Itoa(i), body)
	}
	code, body, err := request("GET", srv.URL+"/counter/other")
	require.NoError(t, err)
	assert.Equal(t, 200, code)
	assert.Equal(t, "0", body, "each name is its own object")
	code, body, _ = request("GET", srv.URL+"/")
	assert.Equal(t, 200, code)
	assert.Contains(t, body, "POST /counter/{name} adds one", "the root lists the routes")
	code, body, _ = request("GET", srv.URL+"/counter/visits/fetch")
	assert.Equal(t, 200, code)
	assert.Regexp(t, `^counter [0-9a-f]{12}… = 5$`, body)
	require.NoError(t, srv.Stop(15*time.Second))

	srv = serveCounter(t, data)
	code, body, err = request("GET", srv.URL+"/counter/visits")
	require.NoError(t, err)
	assert.Equal(t, 200, code)
	assert.Equal(t, "5", body, "the value survived a restart")
}

// TestAcknowledgedIncrementsSurviveKill9 increments from several clients,
// kills the host with SIGKILL in the middle, and checks that every
// increment a client saw acknowledged is still there after a restart.
func TestAcknowledgedIncrementsSurviveKill9(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveCounter(t, data)
	var highest atomic.Int64
	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := request("POST", srv.URL+"/counter/crash")
				if err != nil || code != 200 {
					return // the host is gone
				}
				v, _ := strconv.ParseInt(body, 10, 64)
				acked.Add(1)
				for {
					h := highest.Load()
					if v <= h || highest.CompareAndSwap(h, v) {
						break
					}
				}
			}
		}()
	}
	require.Eventually(t, func() bool { return acked.Load() >= 200 }, 60*time.Second, 5*time.Millisecond)
	srv.Kill()
	close(stop)
	wg.Wait()
	t.Logf("%d increments acknowledged before SIGKILL, highest value %d", acked.Load(), highest.Load())

	srv = serveCounter(t, data)
	code, body, err := request("GET", srv.URL+"/counter/crash")
	require.NoError(t, err)
	require.Equal(t, 200, code)
	got, _ := strconv.ParseInt(body, 10, 64)
	assert.GreaterOrEqual(t, got, highest.Load(), "an acknowledged increment was lost")
	assert.GreaterOrEqual(t, got, acked.Load(), "fewer increments stored than acknowledged")
}

// TestCounterKeepsItsValueThroughAFailedRead: a counter whose stored value
// cannot be read at its activation (another process holds its database
// open: wharf's exclusive lock waits, then gives up) fails the call, and
// goes on from the stored value once it can be read, not from 0.
func TestCounterKeepsItsValueThroughAFailedRead(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	files := countedTo(t, data, "held", 3)
	// A reader of a database in WAL mode keeps a shared lock on its file
	// while its connection is open.
	reader, err := sql.Open("sqlite3", "file:"+files[0])
	require.NoError(t, err)
	defer reader.Close()
	reader.SetMaxOpenConns(1)
	var n int
	require.NoError(t, reader.QueryRow("SELECT count(*) FROM _wharf_kv").Scan(&n))

	srv := serveCounter(t, data)
	code, body, err := request("POST", srv.URL+"/counter/held")
	require.NoError(t, err)
	require.Equal(t, 500, code, body)
	assert.Contains(t, body, "database is locked")
	require.NoError(t, reader.Close())
	code, body, err = request("POST", srv.URL+"/counter/held")
	require.NoError(t, err)
	assert.Equal(t, 200, code, body)
	assert.Equal(t, "4", body, "the increment went on from the stored value")
}

// TestCounterRefusesAnEmptiedDatabaseAndLogsItsFile: a counter whose file
// was truncated to 0 bytes between runs is not served as a new counter of
// 0: its calls fail saying why, and the host's log names the object and
// its file (the client's message does not), so the operator can restore
// it. Nothing was logged: only the client learnt of it.
func TestCounterRefusesAnEmptiedDatabaseAndLogsItsFile(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	files := countedTo(t, data, "emptied", 7)
	require.NoError(t, os.Truncate(files[0], 0))

	srv := serveCounter(t, data)
	for _, method := range []string{"GET", "POST"} {
		code, body, err := request(method, srv.URL+"/counter/emptied")
		require.NoError(t, err)
		assert.Equal(t, 500, code, body)
		assert.Contains(t, body, "the database file is empty (0 bytes)")
	}
	assert.True(t, srv.WaitLog("file="+files[0], 5*time.Second), "the log does not name the file:\n%s", srv.Logs())
	assert.Contains(t, srv.Logs(), "an object's database could not be opened")
	require.NoError(t, srv.Stop(15*time.Second))
	fi, err := os.Stat(files[0])
	require.NoError(t, err)
	assert.Zero(t, fi.Size(), "the file was written to")
}

// TestCounterRefusesADamagedOrMissingNamespaceKey: the namespace's key,
// which every object's id (and so its file's name) is made from, emptied
// or removed between runs is refused at the start, saying so, and left as
// it is, instead of replaced by a new key that served every counter as
// new: all read 0, and the old key was written over.
func TestCounterRefusesADamagedOrMissingNamespaceKey(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	countedTo(t, data, "keyed", 3)
	keyFile := filepath.Join(data, "objects", "Counter", "namespace.key")
	key, err := os.ReadFile(keyFile)
	require.NoError(t, err)
	dir := filepath.Join(testutil.RepoRoot(), "examples", "counter")

	for damage, want := range map[string]string{
		"emptied": "namespace.key is 0 bytes, not 32",
		"removed": "namespace.key is missing, but the namespace holds 1 object's database",
	} {
		if damage == "emptied" {
			require.NoError(t, os.WriteFile(keyFile, nil, 0o600))
		} else {
			require.NoError(t, os.Remove(keyFile))
		}
		srv := testutil.LaunchServe(t, dir, "--no-build", "--listen", "127.0.0.1:0", "--data-dir", data)
		assert.True(t, srv.WaitLog(want, 30*time.Second), "%s: %s", damage, srv.Logs())
		assert.Error(t, srv.Stop(15*time.Second), "%s: wharf serve went on", damage)
		assert.NotContains(t, srv.Logs(), "msg=serving", damage)
		got, err := os.ReadFile(keyFile)
		if damage == "emptied" {
			require.NoError(t, err)
			assert.Empty(t, got, "the damaged key was written over")
		} else {
			assert.ErrorIs(t, err, os.ErrNotExist, "a new key was made")
		}
	}

	require.NoError(t, os.WriteFile(keyFile, key, 0o600))
	srv := serveCounter(t, data)
	code, body, err := request("GET", srv.URL+"/counter/keyed")
	require.NoError(t, err)
	assert.Equal(t, 200, code)
	assert.Equal(t, "3", body, "the key put back reaches the counter again")
}

// TestCounterWithALostCommitIsRefusedUntilTheLossIsAccepted: a power cut
// (here: kill -9, then the database's WAL removed, which the host leaves
// unsynced, its commit log holding the commits) with a record of the
// commit log damaged inside it leaves a counter that cannot be brought up
// to date: its calls fail, the start's log says which file and how to go
// on, and another counter serves. Started with --accept-lost-commits, the
// host opens it at its commit before the damaged one, logs what it gave
// up, and the counter goes on from there; the next plain start serves it
// too. Before, nothing could bring such a counter back but deleting it.
func TestCounterWithALostCommitIsRefusedUntilTheLossIsAccepted(t *testing.T) {
	data := testutil.CompiledDataDir(t)
	srv := serveCounter(t, data)
	for i := range 4 {
		code, body, err := request("POST", srv.URL+"/counter/torn")
		require.NoError(t, err)
		require.Equal(t, strconv.Itoa(i+1), body, code)
	}
	code, body, err := request("POST", srv.URL+"/counter/whole")
	require.NoError(t, err)
	require.Equal(t, "1", body, code)
	srv.Kill()
	torn := damageLastButOne(t, data)

	srv = serveCounter(t, data)
	code, body, err = request("GET", srv.URL+"/counter/torn")
	require.NoError(t, err)
	assert.Equal(t, 500, code)
	assert.Contains(t, body, "could not be brought up to date from the commit log")
	assert.Contains(t, srv.Logs(), "file="+torn)
	assert.Contains(t, srv.Logs(), "or the host is started once with --accept-lost-commits")
	code, body, err = request("GET", srv.URL+"/counter/whole")
	require.NoError(t, err)
	assert.Equal(t, "1", body, code)
	require.NoError(t, srv.Stop(15*time.Second))

	dir := filepath.Join(testutil.RepoRoot(), "examples", "counter")
	srv = testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", data, "--accept-lost-commits")
	assert.Contains(t, srv.Logs(), "was opened without its commits the commit log has no whole record of")
	assert.Contains(t, srv.Logs(), "file="+torn)
	code, body, err = request("POST", srv.URL+"/counter/torn")
	require.NoError(t, err)
	assert.Equal(t, "3", body, "the counter did not go on from its commit before the damaged one (2)")
	require.NoError(t, srv.Stop(15*time.Second))

	srv = serveCounter(t, data)
	code, body, err = request("GET", srv.URL+"/counter/torn")
	require.NoError(t, err)
	assert.Equal(t, 200, code)
	assert.Equal(t, "3", body)
	assert.NotContains(t, srv.Logs(), "commit log")
}

// damageLastButOne undoes, as a power cut would, what the WAL of the
// counter at 4 (in data) held that its file did not, and damages the
// commit log's record of its last commit but one; it returns the file.
// Each record names its database's path before its pages (about 8 KB): a
// byte 100 after the path is in the record's pages.
func damageLastButOne(t *testing.T, data string) string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(data, "objects", "Counter", "*.sqlite"))
	require.NoError(t, err)
	var file string
	for _, f := range files {
		db, err := sql.Open("sqlite3", "file:"+f+"?mode=ro")
		require.NoError(t, err)
		var n int
		err = db.QueryRow("SELECT count(*) FROM _wharf_kv WHERE CAST(value AS TEXT) = '4'").Scan(&n)
		require.NoError(t, errors.Join(err, db.Close()))
		if n > 0 {
			file = f
		}
	}
	require.NotEmpty(t, file, "no counter holds 4")
	for _, suffix := range []string{"-wal", "-shm"} {
		require.NoError(t, os.Remove(file+suffix))
	}
	rel, err := filepath.Rel(filepath.Join(data, "objects"), file)
	require.NoError(t, err)
	segments, err := filepath.Glob(filepath.Join(data, "objects", "commit-log", "[0-9a-f]*"))
	require.NoError(t, err)
	var at []int
	var in string
	for _, seg := range segments {
		b, err := os.ReadFile(seg)
		require.NoError(t, err)
		for off := 0; ; {
			i := bytes.Index(b[off:], []byte(rel))
			if i < 0 {
				break
			}
			if in != seg {
				in, at = seg, nil
			}
			at = append(at, off+i)
			off += i + 1
		}
	}
	require.GreaterOrEqual(t, len(at), 2, "the log holds fewer than two records of %s", rel)
	b, err := os.ReadFile(in)
	require.NoError(t, err)
	b[at[len(at)-2]+len(rel)+100] ^= 1
	require.NoError(t, os.WriteFile(in, b, 0o644))
	return file
}

// countedTo serves the counter name on data, increments it n times, stops
// the server and returns the counter's database file, the only one.
func countedTo(t *testing.T, data, name string, n int) (files []string) {
	t.Helper()
	srv := serveCounter(t, data)
	for range n {
		code, body, err := request("POST", srv.URL+"/counter/"+name)
		require.NoError(t, err)
		require.Equal(t, 200, code, body)
	}
	require.NoError(t, srv.Stop(15*time.Second))
	files, err := filepath.Glob(filepath.Join(data, "objects", "Counter", "*.sqlite"))
	require.NoError(t, err)
	require.Len(t, files, 1)
	return files
}
