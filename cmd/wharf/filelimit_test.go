package main

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/wharfhq/wharf/internal/testutil"
)

// TestServeUnderALowFileLimit: a wharf serve that may not raise its
// 300-descriptor limit (setpriv drops CAP_SYS_RESOURCE, which needs root)
// says so, keeps few enough object databases open, and answers every
// increment of 400 new counters from 16 clients. With 75 databases open
// (225 descriptors) plus the busy objects' past that cap, accept and open
// failed with "too many open files".
func TestServeUnderALowFileLimit(t *testing.T) {
	lowLimit := []string{"prlimit", "--nofile=300:300", "setpriv", "--inh-caps=-sys_resource", "--bounding-set=-sys_resource", "--"}
	s := testutil.StartServeUnder(t, lowLimit, filepath.Join(testutil.RepoRoot(), "examples", "counter"),
		"--listen", freeAddr(t), "--data-dir", testutil.CompiledDataDir(t))
	assert.Contains(t, s.Logs(), "open-file limit is low")
	assert.Contains(t, s.Logs(), "limit=300 open_databases=50")

	names := make(chan int)
	var mu sync.Mutex
	failed := map[string]int{}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for n := range names {
				resp, err := http.Post(fmt.Sprintf("%s/counter/n%d", s.URL, n), "", nil)
				if err != nil {
					mu.Lock()
					failed[err.Error()]++
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "1" {
					mu.Lock()
					failed[fmt.Sprintf("%d %s", resp.StatusCode, body)]++
					mu.Unlock()
				}
			}
		})
	}
	for n := range 400 {
		names <- n
	}
	close(names)
	wg.Wait()
	assert.Empty(t, failed)
	assert.NotContains(t, s.Logs(), "too many open files")
}
