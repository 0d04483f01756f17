package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/admin"
	"github.com/wharfhq/wharf/containerd"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testutil"
)

// TestCrashRecoveryChaos kills wharf serve (SIGKILL) at 20 random moments
// while clients start containers, run scripts in them (exec), end them
// from inside and destroy them, and restarts it each time. After each
// restart every container left is one wharf adopted, with exactly its own
// task, snapshot, shim, network namespace, veth, disk (mount and loop
// device), policy and journal record, and it still works (the same
// container answers); after a clean stop nothing at all is left.
func TestCrashRecoveryChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	// A failure's message comes before the wharf and containerd logs the
	// cleanups print, which can be longer than a CI log keeps: this
	// cleanup, registered first, runs last and says where it first failed.
	phase := "starting"
	at := func(format string, args ...any) {
		if !t.Failed() {
			phase = fmt.Sprintf(format, args...)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d: failed while %s (the failure's message is above the logs)", seed, phase)
		}
	})
	data := testutil.CompiledDataDir(t)
	fixture.ImportBusybox(t, data)
	app := filepath.Join(testutil.RepoRoot(), "examples", "sandbox")
	rng := rand.New(rand.NewPCG(seed, 0))
	sessions := []string{"c0", "c1", "c2", "c3"}
	serve := func() *testutil.Serve {
		return testutil.StartServe(t, app, "--listen", "127.0.0.1:0", "--data-dir", data)
	}
	hc := &http.Client{Timeout: time.Minute}
	run := func(url, session, script string) (string, error) {
		resp, err := hc.Post(url+"/run/"+session, "text/plain", strings.NewReader(script))
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		out, err := io.ReadAll(resp.Body)
		return string(out), err
	}
	adm := admin.NewClient(data)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := os.ReadFile(filepath.Join(data, "containerd", "containerd.log"))
			t.Logf("containerd log:\n%s", logs)
		}
	})
	srv := serve()
	for round := range 20 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 3 {
			r := rand.New(rand.NewPCG(rng.Uint64(), 1))
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					s := sessions[r.IntN(len(sessions))]
					switch r.IntN(4) {
					case 0, 1: // a start if the session has no container, and an exec
						run(srv.URL, s, "echo ok")
					case 2: // the main process ends: the next run destroys and starts
						run(srv.URL, s, "kill 1")
					case 3:
						adm.Destroy(context.Background(), "SANDBOX", s)
					}
				}
			})
		}
		time.Sleep(time.Duration(100+rng.IntN(1400)) * time.Millisecond)
		srv.Kill()
		close(stop)
		wg.Wait()

		at("restarting wharf in round %d", round)
		srv = serve()
		at("checking what the restart in round %d adopted", round)
		pids := onlyAdopted(t, data)
		for _, s := range sessions {
			at("running a script in session %s after the restart in round %d", s, round)
			out, err := run(srv.URL, s, "echo ok")
			require.NoError(t, err)
			require.Equal(t, "ok\n", out, "round %d: session %s works after the restart", round, s)
		}
		at("checking the containers after the scripts in round %d", round)
		after := onlyAdopted(t, data)
		for id, pid := range pids {
			assert.Equal(t, pid, after[id], "round %d: the adopted container %s answered, not a new one", round, id)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	at("stopping wharf after the last round")
	require.NoError(t, srv.Stop(30*time.Second))
	at("checking that the stopped wharf left nothing")
	assertNothingLeft(t, data)
}

// adoptedCounts counts leftovers by kind, and the counts one set of
// resources per container would give.
func adoptedCounts(left []string) (counts, want map[string]int) {
	kinds := []string{"container", "task bundle", "task", "snapshot", "shim process", "network namespace", "link",
		"loop device", "journal record", "egress policy", "nft table", "runc container"} // "task bundle" before "task"
	counts = map[string]int{}
	for _, l := range left {
		if strings.HasPrefix(l, "mount ") {
			if strings.Contains(l, "/containerd/disks/") {
				counts["disk mount"]++
			}
			continue
		}
		for _, k := range kinds {
			if strings.HasPrefix(l, k+" ") {
				counts[k]++
				break
			}
		}
	}
	want = map[string]int{"nft table": 1}
	if n := counts["container"]; n > 0 {
		for _, k := range append(kinds, "disk mount") {
			if k != "nft table" {
				want[k] = n
			}
		}
	}
	return counts, want
}

// onlyAdopted checks that what the running wharf at data holds is exactly
// one set of resources per container, and returns the containers' task
// pids by id.
func onlyAdopted(t *testing.T, data string) map[string]uint32 {
	t.Helper()
	address := containerd.EmbeddedAddress(data)
	c, err := containerd.Connect(context.Background(), address)
	require.NoError(t, err)
	defer c.Close()
	var left []string
	var counts, want map[string]int
	// containerd may still be running a shim's "delete" for a task the
	// restart removed: such a process ends by itself, so it is awaited.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left, err = containerd.Leftovers(context.Background(), c, address, data)
		require.NoError(t, err)
		counts, want = adoptedCounts(left)
		if maps.Equal(want, counts) || time.Now().After(deadline) {
			break
		}
	}
	assert.Equal(t, want, counts, "one of each per adopted container:\n%s", strings.Join(left, "\n"))
	ctx := containerd.WithNamespace(context.Background())
	ctrs, err := c.Containers(ctx)
	require.NoError(t, err)
	pids := map[string]uint32{}
	for _, ctr := range ctrs {
		if task, err := ctr.Task(ctx, nil); err == nil {
			pids[ctr.ID()] = task.Pid()
		}
	}
	return pids
}
