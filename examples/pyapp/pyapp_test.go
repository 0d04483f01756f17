package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wharfhq/wharf/internal/testimages"
	"github.com/wharfhq/wharf/internal/testimages/fixture"
	"github.com/wharfhq/wharf/internal/testregistry"
	"github.com/wharfhq/wharf/internal/testutil"
)

// debianCache keeps the Debian base image across tests, benchmarks and CI
// runs on a machine: mmdebstrap takes minutes.
var debianCache = filepath.Join(os.TempDir(), "wharf-debian-base")

// serveApp serves examples/pyapp with its image built FROM the Debian base
// on a loopback registry (this machine reaches no other registry).
func serveApp(t testing.TB) *testutil.Serve {
	testutil.BuildBuildkitd(t)
	archive, err := testimages.DebianPython(debianCache)
	require.NoError(t, err)
	reg := testregistry.Start(t, "", "")
	base := reg.PushArchive(t, archive, testimages.DebianPythonRepo)
	example := filepath.Join(testutil.RepoRoot(), "examples", "pyapp")
	dir := t.TempDir()
	module, err := filepath.Rel(dir, example)
	require.NoError(t, err)
	manifest, err := os.ReadFile(filepath.Join(example, "wharf.toml"))
	require.NoError(t, err)
	text := strings.Replace(string(manifest), `main = "."`, `main = "`+module+`"`, 1)
	text = strings.Replace(text, `image = "./container"`, `image = "`+filepath.Join(example, "container")+`"
build_args = { BASE = "`+base+`" }`, 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "wharf.toml"), []byte(text), 0o644))
	return testutil.StartServe(t, dir, "--listen", "127.0.0.1:0", "--data-dir", testutil.CompiledDataDir(t))
}

func call(t testing.TB, method, url, body string) (int, string) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestPyapp builds the Python API's image from its Dockerfile at load and
// runs it for real: each tenant has its own container, started on the
// first request once /health answers, running as the image's USER.
func TestPyapp(t *testing.T) {
	srv := serveApp(t)
	assert.Contains(t, srv.Logs(), `msg="image built" image=pyapp-api:`)

	code, body := call(t, "POST", srv.URL+"/t/acme/notes", "first note")
	require.Equal(t, 201, code, body)
	assert.JSONEq(t, `{"count": 1}`, body)
	code, body = call(t, "GET", srv.URL+"/t/acme/notes", "")
	require.Equal(t, 200, code, body)
	var got struct {
		Notes []string
		User  int
		Mode  string
	}
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	assert.Equal(t, []string{"first note"}, got.Notes)
	assert.Equal(t, 1000, got.User, "runs as the image's USER")
	assert.Equal(t, "container", got.Mode, "the image's ENV")

	code, body = call(t, "GET", srv.URL+"/t/other/notes", "")
	require.Equal(t, 200, code, body)
	assert.Contains(t, body, `"notes": []`, "another tenant has its own container")
	code, body = call(t, "GET", srv.URL+"/t/acme/missing", "")
	assert.Equal(t, 404, code, body)
}

// BenchmarkPyappColdStart measures the first request to a tenant whose
// container is not running (start, python3 start-up, /health readiness,
// proxy) against the same for examples/webapp's busybox httpd, served side
// by side in the same run.
func BenchmarkPyappColdStart(b *testing.B) {
	py := serveApp(b)
	data := b.TempDir()
	fixture.ImportBusybox(b, data)
	bb := testutil.StartServe(b, filepath.Join(testutil.RepoRoot(), "examples", "webapp"), "--listen", "127.0.0.1:0", "--data-dir", data)
	cold := func(url string) float64 {
		start := time.Now()
		code, body := call(b, "GET", url, "")
		require.Equal(b, 200, code, body)
		return float64(time.Since(start).Microseconds()) / 1000
	}
	cold(py.URL + "/t/warmup/notes") // first activations also warm the pools
	cold(bb.URL + "/s/warmup/index.html")
	var pyMs, bbMs []float64
	for i := range 10 * b.N { // alternating
		pyMs = append(pyMs, cold(py.URL+"/t/cold-"+strconv.Itoa(i)+"/notes"))
		bbMs = append(bbMs, cold(bb.URL+"/s/cold-"+strconv.Itoa(i)+"/index.html"))
	}
	p, q := testutil.Median(pyMs), testutil.Median(bbMs)
	b.ReportMetric(p, "pyapp-cold-p50-ms")
	b.ReportMetric(q, "busybox-httpd-cold-p50-ms")
	b.ReportMetric(p/q, "ratio")
}
